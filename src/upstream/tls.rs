//! TLS for partner connections: rustls with the webpki (Mozilla) roots plus
//! any extra CA files from config.

use crate::call::problem::Problem;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The TLS settings every partner connection uses: webpki roots plus any
/// extra CA files from config (a partner sandbox, a test simulator).
pub fn tls_config(extra_ca_files: &[std::path::PathBuf]) -> Result<rustls::ClientConfig, Problem> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_ca_files {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| Problem(format!("tls.extra_ca_files: {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(format!(
                "tls.extra_ca_files: {} holds no PEM certificate",
                path.display()
            )
            .into());
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| Problem(format!("tls.extra_ca_files: {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Problem(format!("tls: {e}")))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}
