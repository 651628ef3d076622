//! Waiting on a condition, shared by the stack and e2e tiers.

use std::time::Duration;

/// Polls `check` every 10 ms until it gives `Some`, for at most `within`, and
/// panics naming `what` if it never does: a test waits on conditions,
/// never on a fixed sleep that hopes something happened.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
