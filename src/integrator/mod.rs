//! The Encore doc's integrator rules, carried by offergate for every platform
//! at once: whether a message should get an offer at all (`eligibility`),
//! and counting the offers a thread has shown (`links`). Composing the text
//! to send is Encore's (`partners/encore/compose.rs`). Pure logic: the edge
//! serves the eligibility endpoint, the thread-cap layer enforces the cap on
//! the offers route.

pub mod eligibility;
pub mod links;
pub mod time;
