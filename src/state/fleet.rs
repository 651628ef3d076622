//! "The fleet first, then this replica", written once: shared state asks
//! Redis when `[state] backend = "redis"`, and when Redis cannot answer,
//! `[state] on_error` decides: `fail_open` goes on with this replica's own
//! state, `fail_closed` refuses (`state_unavailable`). The rate limits, the
//! partner pause and the conversations all decide through [`fleet_first`];
//! the idempotency store has the same rule in its Redis store.

use std::future::Future;

use super::{Redis, StateError};
use crate::config::OnStateError;

/// Redis could not decide, and `fail_closed` refuses to decide without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// `ask`'s answer from the fleet; when Redis cannot give one, `local`'s
/// under `fail_open`, [`Unavailable`] under `fail_closed`. A late reply
/// while Redis is not declared down is [`Unavailable`] whatever `on_error`
/// says: what was asked may have been done there (a permit spent, a slot
/// taken), and this replica does not decide alone on the guess that it was
/// not.
pub async fn fleet_first<T>(
    redis: &Redis,
    ask: impl Future<Output = Result<T, StateError>>,
    local: impl FnOnce() -> T,
) -> Result<T, Unavailable> {
    // Boxed: a Redis wait's state stays out of the in-memory path's futures.
    match Box::pin(ask).await {
        Ok(answer) => Ok(answer),
        Err(StateError::Timeout) if !redis.degraded() => Err(Unavailable),
        Err(_) => match redis.on_error() {
            OnStateError::FailOpen => Ok(local()),
            OnStateError::FailClosed => Err(Unavailable),
        },
    }
}
