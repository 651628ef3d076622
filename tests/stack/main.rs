//! The stack tier: the real tower stack in-process, in front of an in-memory
//! partner, on tokio's paused clock. Admission, fallback, idempotency, retry,
//! the circuit, rate limits and the edge's own safety, where time is the point,
//! without sleeping. The e2e tier (tests/e2e) drives the real binary and
//! sockets; unit tests sit beside each module.

mod support;

mod admission;
mod backends;
mod conversation;
mod idempotency;
mod integrator;
mod limits;
mod resilience;
mod safety;
