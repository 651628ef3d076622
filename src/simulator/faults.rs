//! Scripted partner faults: a plan per route, consumed one item per call, then
//! back to `ok`. The items: `ok`, a status code (`"500"`),
//! `"429:S"` (429 with `Retry-After: S`), `hang`, `reset`, `slow`, `malformed`.

use crate::call::problem::Problem;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Ok,
    Status(u16),
    TooMany {
        retry_after_secs: u64,
    },
    /// No answer for 30 s, then the connection closes.
    Hang,
    /// The connection closes without an answer.
    Reset,
    /// A 200 whose body trickles over 5 s.
    Slow,
    /// A 200 whose body is not JSON.
    Malformed,
    /// The normal answer, late.
    Delay(Duration),
}

/// How long `hang` holds the connection.
pub const HANG: Duration = Duration::from_secs(30);
/// How long `slow` takes to send its body.
pub const SLOW: Duration = Duration::from_secs(5);

impl Fault {
    pub fn parse(item: &str) -> Result<Fault, Problem> {
        Ok(match item {
            "ok" => Fault::Ok,
            "hang" => Fault::Hang,
            "reset" => Fault::Reset,
            "slow" => Fault::Slow,
            "malformed" => Fault::Malformed,
            _ => {
                if let Some(ms) = item.strip_prefix("delay:") {
                    let ms = ms.parse().map_err(|_| {
                        format!("`{item}`: delay must be whole milliseconds, e.g. delay:250")
                    })?;
                    Fault::Delay(Duration::from_millis(ms))
                } else if let Some(secs) = item.strip_prefix("429:") {
                    let retry_after_secs = secs.parse().map_err(|_| {
                        format!("`{item}`: Retry-After must be whole seconds, e.g. 429:2")
                    })?;
                    Fault::TooMany { retry_after_secs }
                } else {
                    let code: u16 = item.parse().map_err(|_| {
                        format!("`{item}` is not ok, a status code, 429:S, hang, reset, slow or malformed")
                    })?;
                    if !(200..=599).contains(&code) {
                        return Err(format!("`{item}`: status must be 200 to 599").into());
                    }
                    Fault::Status(code)
                }
            }
        })
    }
}

/// A queue of faults for one route.
#[derive(Default)]
pub struct Plan(VecDeque<Fault>);

impl Plan {
    pub fn take_next(&mut self) -> Fault {
        self.0.pop_front().unwrap_or(Fault::Ok)
    }
    pub fn replace(&mut self, items: Vec<Fault>) {
        self.0 = items.into();
    }
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// A body sent in pieces with pauses between them (the `slow` fault).
pub struct SlowBody {
    chunks: VecDeque<Bytes>,
    pause: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl SlowBody {
    pub fn new(body: Bytes, total: Duration, pieces: usize) -> SlowBody {
        let pieces = pieces.max(1);
        let size = body.len().div_ceil(pieces).max(1);
        let chunks = (0..body.len())
            .step_by(size)
            .map(|i| body.slice(i..(i + size).min(body.len())))
            .collect();
        let pause = total / pieces as u32;
        SlowBody {
            chunks,
            pause,
            sleep: Box::pin(tokio::time::sleep(pause)),
        }
    }
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.chunks.is_empty() {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let pause = self.pause;
        let deadline = tokio::time::Instant::now() + pause;
        self.sleep.as_mut().reset(deadline);
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_plan_items() {
        assert_eq!(Fault::parse("ok"), Ok(Fault::Ok));
        assert_eq!(Fault::parse("503"), Ok(Fault::Status(503)));
        assert_eq!(
            Fault::parse("429:2"),
            Ok(Fault::TooMany {
                retry_after_secs: 2
            })
        );
        for item in ["hang", "reset", "slow", "malformed"] {
            assert!(Fault::parse(item).is_ok());
        }
        for bad in ["", "OK", "99", "600", "429:x", "boom", "delay:", "delay:-1"] {
            assert!(Fault::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plans_run_in_order_then_ok() {
        let mut p = Plan::default();
        p.replace(vec![Fault::Status(503), Fault::Reset]);
        assert_eq!(p.take_next(), Fault::Status(503));
        assert_eq!(p.take_next(), Fault::Reset);
        assert_eq!(p.take_next(), Fault::Ok);
    }
}
