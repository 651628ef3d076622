//! The core of a call, with no dependency on the rest of offergate: what a
//! request and an answer are, which route they take, what a partner's answer
//! means, how offergate's own failures are told apart, the request fingerprint,
//! JSON, header hygiene and the clock. Everything else builds on these types.

pub mod ahead;
pub mod base_url;
pub mod body;
pub mod clock;
pub mod error;
pub mod fingerprint;
pub mod headers;
pub mod json;
pub mod meaning;
pub mod problem;
pub mod request;
pub mod route;
pub mod service;
pub mod spans;
pub mod thread;
