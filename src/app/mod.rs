//! The application: the one place the request path is composed (`stack`), the
//! running gateway with its listeners (`gateway`), the admin listener and its
//! console, config reloads and log setup. It depends on every module below it; none depends on it but `cli`.

pub mod admin;
pub mod console;
pub mod gateway;
pub mod reload;
pub mod stack;
pub mod telemetry;
pub mod traces;
