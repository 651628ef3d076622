//! The same calls over both backends give the same decisions. A call asks
//! its questions in one order on either (claim, thread slot, the partner's
//! pause and the caller's bucket, circuit, partner quota); on Redis several
//! are answered by the claim's one script, in memory each by its layer.
//! Here one scenario runs over memory and over a real redis-server, and
//! every answer, every partner call and every refusal's scope must match.
//! Real time, not the paused clock: Redis keeps its own.

use std::time::Duration;

use offergate::call::route::Route;
use offergate::config::{Config, Rate};

#[allow(dead_code)]
#[path = "../common/redis_server.rs"]
mod redis_server;

use super::support::{Stack, Step, ENCORE_PATH};

/// Tight limits, a small cap and a quick circuit, the same on both.
fn tune(c: &mut Config) {
    c.encore.integrator.thread_cap = 2;
    let r = &mut c.encore.resilience;
    // No refill within the test: every permit counts.
    r.rate_limit.client = Rate {
        per_second: 0.001,
        burst: 3,
    };
    r.rate_limit.partner = Rate {
        per_second: 0.001,
        burst: 6,
    };
    r.rate_limit.max_wait = Duration::ZERO;
    r.circuit.failure_threshold = 2;
    r.circuit.cooldown = Duration::from_millis(300);
    r.retry.max_retries = 0;
}

fn body(client: &str, chat: &str) -> String {
    format!(
        r#"{{"clientId":"{client}","chatId":"{chat}","attributes":{{"countryCode":"US","language":"en","platform":"ios"}}}}"#
    )
}

/// One call: `(client, chat, key)`, and what the partner does if reached.
struct Call(&'static str, &'static str, &'static str, Option<Step>);

/// The scenario, each step's decision as one line.
async fn run(stack: &Stack) -> Vec<String> {
    let calls = [
        // A new offer: claim, slot 1 of chat a, caller 1 of 3, quota 1 of 6.
        Call("c-42", "a", "k1", None),
        // The same key: replayed, nothing spent.
        Call("c-42", "a", "k1", None),
        // Slot 2 of chat a, caller 2, quota 2.
        Call("c-42", "a", "k2", None),
        // Chat a at its cap: skipped before the caller's bucket is asked.
        Call("c-42", "a", "k3", None),
        // Another key reused with another body: refused.
        Call("c-42", "b", "k2", None),
        // Another caller: its own bucket; quota 3.
        Call("c-7", "x", "k5", None),
        // Two failures open the circuit (quota 4, 5).
        Call("c-9", "y1", "k6", Some(Step::Status(503))),
        Call("c-9", "y2", "k7", Some(Step::Status(503))),
        // Refused by the open circuit (another caller, whose bucket is
        // full): no quota spent on either backend.
        Call("c-10", "y3", "k8", None),
        Call("c-10", "y4", "k9", None),
    ];
    let mut said = Vec::new();
    for call in &calls {
        said.push(one(stack, call).await);
    }
    // The cooldown over, the probe takes the quota's last permit (6): had
    // the open circuit's refusals spent any, it would be refused here.
    tokio::time::sleep(Duration::from_millis(400)).await;
    said.push(one(stack, &Call("c-11", "y5", "k10", None)).await);
    // The quota spent: refused by it (scope partner).
    said.push(one(stack, &Call("c-7", "z", "k11", None)).await);
    // Caller c-42's third permit (the cap skip spent none), quota still
    // empty; then its bucket is empty too (scope client, asked first).
    said.push(one(stack, &Call("c-42", "c", "k12", None)).await);
    said.push(one(stack, &Call("c-42", "d", "k13", None)).await);
    said.push(format!(
        "partner calls {}; refused by scope: partner {}, client {}",
        stack.calls(Route::EncoreOffers),
        stack.sample(
            r#"offergate_rate_limited_total{mode="enforced",route="encore_offers",scope="partner"}"#
        ),
        stack.sample(
            r#"offergate_rate_limited_total{mode="enforced",route="encore_offers",scope="client"}"#
        ),
    ));
    said
}

async fn one(stack: &Stack, Call(client, chat, key, step): &Call) -> String {
    if let Some(step) = step {
        stack.plan(&[*step]);
    }
    let a = stack
        .post(ENCORE_PATH, &[("idempotency-key", key)], body(client, chat))
        .await;
    let header = |name: &str| {
        a.headers
            .get(name)
            .map_or("-", |v| v.to_str().unwrap_or("?"))
            .to_string()
    };
    format!(
        "{key} {client}/{chat}: {} skipped={} fallback={} replayed={} calls={}",
        a.status.as_u16(),
        header("x-offergate-skipped"),
        a.fallback().unwrap_or("-"),
        a.replayed(),
        stack.calls(Route::EncoreOffers),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_decide_every_call_alike() {
    let in_memory = run(&Stack::with(tune)).await;
    let redis = redis_server::RedisServer::start().await;
    let on_redis = run(&Stack::on_redis(&redis.url(), tune).await).await;
    for (m, r) in in_memory.iter().zip(&on_redis) {
        println!("memory: {m}\nredis:  {r}");
    }
    assert_eq!(in_memory, on_redis, "the backends decided differently");
    // And what they agree on is what the scenario means.
    let expected_in = |step: usize, what: &str| {
        assert!(
            in_memory[step].contains(what),
            "step {step}: {} lacks {what}",
            in_memory[step]
        );
    };
    expected_in(0, "200 skipped=- fallback=- replayed=false calls=1");
    expected_in(1, "replayed=true calls=1");
    expected_in(3, "skipped=thread_cap");
    expected_in(4, "422");
    expected_in(8, "fallback=circuit_open");
    expected_in(9, "fallback=circuit_open replayed=false calls=5");
    expected_in(10, "fallback=- replayed=false calls=6");
    expected_in(11, "fallback=rate_limited");
    expected_in(13, "fallback=rate_limited");
    expected_in(14, "partner calls 6; refused by scope: partner 2, client 1");
}
