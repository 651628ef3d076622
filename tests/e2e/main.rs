//! End-to-end tests: the real gateway (or the real binary) in front of the real
//! simulator, over loopback. Every test asserts on what reached the partner
//! (the simulator's counts and recorded requests), not only on what the caller saw.

// This tier runs real sockets on real time: wall-clock readings are the point.
#![allow(clippy::disallowed_methods)]

mod support;

mod admin;
mod binary;
mod console;
mod conversation;
mod faults;
mod fleet;
mod forward;
mod hostile;
mod idempotency;
mod load_faults;
mod logs;
mod observability;
mod operations;
mod partner_answers;
mod rate_limit;
mod readme;
mod redis;
mod redis_cluster;
mod redis_sentinel;
#[path = "../common/redis_server.rs"]
mod redis_server;
mod refuse;
mod reload;
mod resilience;
mod rogue;
mod round_trips;
mod secrets;
mod signals;
mod tls;
mod traces;
