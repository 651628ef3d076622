//! The Encore doc's integrator rules, carried by offergate for every platform
//! at once: whether a message may get an offer (`rules`), the endpoints'
//! requests read and checked (`eligibility`, `messages`), and message times
//! (`time`). Counting a thread's offer links is Encore's
//! (`partners/encore/links.rs`), composing the text too
//! (`partners/encore/compose.rs`). Pure logic: the edge serves the
//! endpoints, `conversation/` keeps the threads.

pub mod eligibility;
pub mod messages;
pub mod rules;
pub mod time;
