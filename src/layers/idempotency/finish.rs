//! The idempotency leader's call runs in its caller's own task, and if the
//! caller goes away first (a disconnect drops its future), what is left of
//! the call moves to a task of its own and still completes: its answer is
//! stored for the duplicates waiting on it and for the caller's retry, so a
//! disconnect never causes a second partner call. A task per call would do
//! the same at the cost of a spawn, a join handle and a hop between tasks on
//! every forwarded call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `call`, polled in place; handed to a new task if dropped unfinished.
pub struct FinishAnyway<F: Future + Send + 'static>
where
    F::Output: Send,
{
    /// Boxed so it can move to a task after it has been polled here.
    call: Option<Pin<Box<F>>>,
}

impl<F: Future + Send + 'static> FinishAnyway<F>
where
    F::Output: Send,
{
    pub fn new(call: F) -> Self {
        FinishAnyway {
            call: Some(Box::pin(call)),
        }
    }
}

impl<F: Future + Send + 'static> Future for FinishAnyway<F>
where
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(call) = self.call.as_mut() else {
            // Polled again after it finished: a bug of the caller's; never
            // finishing is the one answer that loses nothing.
            return Poll::Pending;
        };
        let out = std::task::ready!(call.as_mut().poll(cx));
        self.call = None;
        Poll::Ready(out)
    }
}

impl<F: Future + Send + 'static> Drop for FinishAnyway<F>
where
    F::Output: Send,
{
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            // Outside a runtime (it is shutting down) there is nothing to
            // finish on; the call is dropped as any other would be.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(call);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_finished_call_gives_its_output_in_place() {
        let out = FinishAnyway::new(async { 7 }).await;
        assert_eq!(out, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_dropped_midway_still_completes() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let call = FinishAnyway::new(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        // The caller gives up after 10 ms, as a disconnect would.
        assert!(tokio::time::timeout(Duration::from_millis(10), call)
            .await
            .is_err());
        assert!(!done.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(done.load(Ordering::SeqCst), "finished in its own task");
    }
}
