//! A conversation's id, as the thread cap and the conversations key it.

/// A conversation's id: XXH3-128 of `clientId` and `chatId` (the collision
/// odds are the fingerprint's, `fingerprint.rs`). Stable across replicas, and
/// no caller id is kept in the clear.
pub type ThreadId = [u8; 16];

/// The NUL between the two cannot be part of either: ids with control
/// characters are refused at admission (`partners/fields.rs`), so no two
/// threads share an id.
pub fn thread_id(client_id: &str, chat_id: &str) -> ThreadId {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(client_id.as_bytes());
    h.update(b"\0");
    h.update(chat_id.as_bytes());
    h.digest128().to_be_bytes()
}
