//! A thread's offers on Redis, one sorted set per thread shared by every
//! replica and expiring with the window; this replica's count behind it
//! when Redis cannot answer (`layers/fleet.rs`).

use std::future::Future;

use super::local::LocalThreads;
use super::{Held, Slot, ThreadOffers};
use crate::call::fingerprint::hex;
use crate::call::request::ThreadId;
use crate::call::route::Route;
use crate::layers::fleet::{fleet_first, Unavailable};
use crate::state::Redis;

pub struct FleetThreads {
    pub redis: Redis,
    pub local: LocalThreads,
    pub cap: u32,
    pub window: std::time::Duration,
}

impl ThreadOffers for FleetThreads {
    fn reserve(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Option<Held>, Unavailable>> + Send + '_ {
        async move {
            let key = self.redis.key(Route::EncoreOffers, "thread", &hex(&thread));
            let member = uuid::Uuid::new_v4().simple().to_string();
            let ask = async {
                let taken = self
                    .redis
                    .thread(&key, self.window, self.cap, &member, false)
                    .await?;
                Ok::<_, crate::state::StateError>(taken.then(|| {
                    Held(Some(Slot::Shared {
                        redis: self.redis.clone(),
                        key: key.clone(),
                        member: member.clone(),
                        window: self.window,
                        cap: self.cap,
                    }))
                }))
            };
            fleet_first(&self.redis, ask, || self.local.reserve_now(thread)).await
        }
    }
}
