//! The Encore doc's integrator rules, carried by offergate for every platform
//! at once: whether a message should get an offer at all (`eligibility`),
//! counting the offers a thread has shown (`links`), and composing the text
//! to send (`compose`). Pure logic: the edge serves the eligibility endpoint,
//! the thread-cap layer enforces the cap on the offers route.

pub mod compose;
pub mod eligibility;
pub mod links;
pub mod time;
