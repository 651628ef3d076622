//! HTTPS to a partner whose certificate is trusted only through config.

use offergate::call::route::Route;
use offergate::simulator;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_partner_with_a_ca_from_config() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("partner-ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let acceptor = simulator::tls_acceptor(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let sim = offergate::SimConfig {
        tls: Some(acceptor),
        ..strict_sim()
    };

    // Trusted through tls.extra_ca_files: both routes work over https.
    let h = Harness::with_sim(sim.clone(), |origin| {
        assert!(origin.starts_with("https://"));
        config_for(origin, "", &format!("[tls]\nextra_ca_files = [{:?}]\n", ca))
    })
    .await;
    let a = h.post(ENCORE_PATH, &[], ENCORE_BODY).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        a.body,
        h.sim.state.last(Route::EncoreOffers).unwrap().answered
    );
    let b = h.post(&besitos_path(PARTNER), &[], "{}").await;
    assert_eq!(b.status, 200, "{:?}", b.body);
    h.stop().await;

    // Without it the certificate is refused: nothing is sent, 502.
    let h = Harness::with_sim(sim, config_bare).await;
    let a = h.post(ENCORE_PATH, &[], ENCORE_BODY).await;
    assert_eq!(
        (a.status.as_u16(), a.code().as_str()),
        (502, "upstream_unreachable")
    );
    assert!(
        a.message().to_lowercase().contains("certificate"),
        "{}",
        a.message()
    );
    assert_eq!(h.total_calls(), 0);
    h.stop().await;
}
