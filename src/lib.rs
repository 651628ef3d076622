//! offergate: a sidecar gateway in front of the Encore offers and Besitos goals
//! partner APIs. It injects credentials, validates locally, forwards over a
//! pooled keep-alive client and exports Prometheus metrics; see README.md for
//! the request's life and `app/stack.rs` for where each piece sits.
//!
//! Modules, each depending only on those listed before it (`src/tests/mod.rs`
//! checks it): `call` (core types) → `config` → `metrics` → `state` (the
//! shared-state backend) → `layers`, `upstream`, `integrator` (the Encore
//! doc's rules for integrators) → `edge` → `app` (composition, listeners) →
//! `cli`. `server` (the accept loop) depends on nothing; `simulator` on
//! `call` and `server` only.
#![forbid(unsafe_code)]

pub mod app;
pub mod call;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod edge;
pub mod integrator;
pub mod layers;
pub mod metrics;
pub mod partners;
pub mod server;
pub mod simulator;
pub mod state;
pub mod upstream;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use app::gateway::Gateway;
pub use config::Config;
pub use simulator::{SimConfig, Simulator};
