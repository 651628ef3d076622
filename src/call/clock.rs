//! offergate's one clock. Every deadline, TTL, token bucket, cooldown and
//! pause reads time here, and this reads tokio's clock: a test on tokio's
//! paused clock (`start_paused = true`, `time::advance`) moves all of them
//! together, without sleeping. `clippy.toml` bans `std::time::Instant::now`,
//! so nothing on the request path reads around it.

pub use tokio::time::Instant;

/// Now, on tokio's clock (the real monotonic clock outside paused tests).
pub fn now() -> Instant {
    Instant::now()
}

/// The same clock, for governor's rate limiters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

impl governor::clock::Clock for Clock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        now().into_std()
    }
}

impl governor::clock::ReasonablyRealtime for Clock {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn governor_reads_the_paused_clock() {
        use governor::clock::Clock as _;
        let before = Clock.now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(Clock.now() - before, Duration::from_secs(3));
    }
}
