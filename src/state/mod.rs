//! Shared state for a fleet of replicas: where idempotent answers and
//! in-flight locks, rate-limit buckets and partner pauses live when they must
//! hold across processes. `[state] backend = "memory"` (the default) needs
//! none of this; `"redis"` builds one [`Redis`] handle that the idempotency
//! store, the rate limits and the partner pause use.
//!
//! Redis trouble never takes a call down: every call has `timeout_ms`, errors
//! are counted (`offergate_state_errors_total{backend,op}`), and `on_error`
//! says what the caller gets (`fail_open`: go on without the shared state;
//! `fail_closed`: the soft fallback `state_unavailable`).

mod admission;
mod connect;
mod conversation;
mod decisions;
pub mod fleet;
mod health;
mod notices;
mod reconnecting;
mod redis;
mod scripts;
mod tls;

pub use admission::{AlsoAsk, AlsoSaid, KeepAsk, LimitAsk, SlotAsk};
pub use conversation::{Conversation, ConversationOp, NoSlot, ThreadOp};
pub use decisions::{ClaimReply, Limit};
pub use notices::Notice;
pub use redis::{Redis, StateError, StateMetrics};
