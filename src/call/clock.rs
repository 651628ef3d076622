//! offergate's one clock. Every deadline, TTL, token bucket, cooldown and
//! pause reads time here, and this reads tokio's clock: a test on tokio's
//! paused clock (`start_paused = true`, `time::advance`) moves all of them
//! together, without sleeping. Dates (a `Retry-After` date, a message's RFC
//! 3339 time, a reload's stamp) are calendar time, read by [`wall`] and never
//! used to time a wait. `clippy.toml` bans `Instant::now` and
//! `SystemTime::now` elsewhere, so nothing reads around it.

pub use tokio::time::Instant;

/// Now, on tokio's clock (the real monotonic clock outside paused tests).
pub fn now() -> Instant {
    Instant::now()
}

/// Calendar time, for what is compared with a date.
#[allow(clippy::disallowed_methods)] // the one place calendar time is read
pub fn wall() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

/// Calendar time as Unix milliseconds (0 before 1970, which a clock is not).
pub fn wall_ms() -> i64 {
    wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Calendar time that moves with [`now`]: read from the wall once, then
/// advanced by tokio's clock. What is kept across restarts (a thread's
/// offers) needs dates, and tests on the paused clock move them too.
#[derive(Clone, Copy, Debug)]
pub struct Calendar {
    born: Instant,
    born_ms: i64,
}

impl Calendar {
    pub fn new() -> Calendar {
        Calendar {
            born: now(),
            born_ms: wall_ms(),
        }
    }

    /// Now, as Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        let since = now().saturating_duration_since(self.born).as_millis();
        self.born_ms
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::new()
    }
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
