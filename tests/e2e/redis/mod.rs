//! Two replicas over one Redis, in front of one simulator: what holds for a
//! fleet (`behaviours.rs`), on each topology (`topologies.rs`), through
//! Redis trouble (`outages.rs`), a stalling Redis and callers who hang up
//! (`stalls.rs`). Here: the replicas and the requests they share.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use offergate::call::route::Route;
use offergate::{Config, Gateway};

use crate::redis_cluster::RedisCluster;
use crate::redis_sentinel::RedisSentinel;
use crate::redis_server::{RedisServer, SecureRedis};
use crate::support::*;

mod behaviours;
mod outages;
mod stalls;
mod topologies;

use behaviours::{
    conversation_is_the_fleets, duplicates_cost_one_partner_call,
    quota_and_pause_hold_for_the_fleet, thread_cap_counted_across_replicas,
};

/// Where the replicas share their state: the `[state]` lines of one Redis
/// or of a cluster.
pub trait Shared {
    fn state(&self) -> String;
    /// Clears every key between two behaviours (where they could meet).
    fn clear(&self) {}
}

/// Every fleet behaviour on `redis`, one after another (the quota last:
/// the partner's pause it leaves would refuse the others' calls).
async fn every_fleet_behaviour(redis: &dyn Shared) {
    duplicates_cost_one_partner_call(redis).await;
    redis.clear();
    thread_cap_counted_across_replicas(redis).await;
    redis.clear();
    conversation_is_the_fleets(redis).await;
    redis.clear();
    quota_and_pause_hold_for_the_fleet(redis).await;
    redis.clear();
}

impl Shared for RedisServer {
    fn state(&self) -> String {
        format!(
            "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\ntimeout_ms = 250\n",
            self.url()
        )
    }
}

impl Shared for SecureRedis {
    fn state(&self) -> String {
        SecureRedis::state(self)
    }
}

impl Shared for RedisSentinel {
    fn state(&self) -> String {
        RedisSentinel::state(self)
    }

    fn clear(&self) {
        self.flush();
    }
}

impl Shared for RedisCluster {
    fn state(&self) -> String {
        RedisCluster::state(self)
    }

    fn clear(&self) {
        self.flush();
    }
}

/// A replica's config: the test config, on `redis`.
fn replica(origin: &str, redis: &dyn Shared, extra: &str) -> Config {
    let state = format!("{}{extra}", redis.state());
    let mut c = config_for(origin, "", &state);
    for r in [&mut c.encore.resilience, &mut c.besitos.resilience] {
        r.rate_limit.client.per_second = 10_000.0;
        r.rate_limit.client.burst = 10_000;
        r.rate_limit.partner.per_second = 10_000.0;
        r.rate_limit.partner.burst = 10_000;
    }
    c
}

/// A second replica beside the harness's, same simulator, same Redis.
async fn second(_beside: &Harness, config: Config) -> Harness2 {
    Harness2(Gateway::start(config).await.expect("second replica"))
}

struct Harness2(Gateway);

async fn post_to(gw: &Gateway, headers: &[(&str, &str)], body: &str) -> Answer {
    post_to_gateway(gw, ENCORE_PATH, headers, body).await
}

/// Two replicas of the test config on `redis`, each connected to it.
async fn connected_pair(redis: &dyn Shared) -> (Harness, Harness2) {
    let a = Harness::with_config(|o| replica(o, redis, "")).await;
    let b = second(&a, replica(a.sim.origin(), redis, "")).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    (a, b)
}

/// Waits until `gw` reaches Redis (its `/readyz` says so).
async fn until_connected(gw: &Gateway) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    eventually(
        Duration::from_secs(20),
        "the replica reaches Redis",
        || async {
            let req = http::Request::get(format!("http://{}/readyz", gw.admin_addr))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            String::from_utf8_lossy(&send_with(&client, req).await.body)
                .contains("redis ok")
                .then_some(())
        },
    )
    .await;
}

async fn post_path(gw: &Gateway, path: &str, body: &serde_json::Value) -> Answer {
    post_to_gateway(gw, path, &[], &body.to_string()).await
}

fn message(id: &str, at: i64) -> serde_json::Value {
    serde_json::json!({
        "clientId": "client-42", "chatId": "wa:15550001111:15551234567",
        "messageId": id, "sentAt": at, "text": "hi",
        "attributes": {"countryCode": "US", "language": "en", "platform": "ios"},
    })
}

/// `[state]` lines as they are.
struct StateLines(String);

impl Shared for StateLines {
    fn state(&self) -> String {
        self.0.clone()
    }
}
