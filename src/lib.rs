//! offergate: a sidecar gateway in front of the Encore offers and Besitos goals
//! partner APIs. It injects credentials, validates locally, forwards over a
//! pooled keep-alive client and exports Prometheus metrics; see README.md for
//! the request's life and `stack.rs` for where each piece sits.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod cli;
pub mod config;
pub mod edge;
pub mod error;
pub mod gateway;
pub mod headers;
pub mod idempotency;
pub mod json;
pub mod layers;
pub mod metrics;
pub mod outcome;
pub mod partner_body;
pub mod partner_client;
pub mod proxy;
pub mod route;
pub mod server;
pub mod simulator;
pub mod stack;
pub mod telemetry;
pub mod upstream;
pub mod validate;

pub use config::Config;
pub use gateway::Gateway;
pub use simulator::{SimConfig, Simulator};
