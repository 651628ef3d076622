//! Answers another replica stored, heard when they are stored: a replica
//! whose duplicate is in flight elsewhere subscribes to the key's channel on
//! a connection of its own for pub/sub (Redis's pub/sub reaches every node
//! of a cluster), and the finish script publishes there. So the waiter asks
//! again as soon as the answer is there, instead of on its next poll; a
//! notice lost (a reconnect, a subscription that failed) costs at most the
//! fallback poll, never the answer. Messages arrive as RESP3 pushes on a
//! multiplexed connection made as the calls' connection is (the same
//! `server_name` resolver and TLS), so Redis 6 or later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{PushKind, Value};
use tokio::sync::oneshot;

use super::connect::Connector;

/// The subscriptions of one replica, shared by every waiting call.
#[derive(Clone, Default)]
pub(super) struct Notices {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// The pub/sub connection, while connected.
    sink: Mutex<Option<MultiplexedConnection>>,
    /// Calls waiting, by channel.
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

/// A notice to wait for: resolves when the channel hears one (an error
/// when the connection went away meanwhile: ask again then).
pub type Notice = oneshot::Receiver<()>;

impl Notices {
    /// Starts listening through `connector`'s Redis, reconnecting for as
    /// long as these notices are used.
    pub(super) fn start(connector: Arc<Connector>) -> Notices {
        let notices = Notices::default();
        tokio::spawn(listen(connector, Arc::downgrade(&notices.shared)));
        notices
    }

    /// Subscribes to `channel` for one notice; `None` when no subscription
    /// could be made (not connected, refused): the caller polls instead.
    pub(super) async fn listen(&self, channel: &str, timeout: Duration) -> Option<Notice> {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut waiting = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let waiters = waiting.entry(channel.to_string()).or_default();
            waiters.push(tx);
            waiters.len() == 1
        };
        if !first {
            return Some(rx);
        }
        let sink = self
            .shared
            .sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let subscribed = match sink {
            Some(mut sink) => matches!(
                tokio::time::timeout(timeout, sink.subscribe(channel)).await,
                Ok(Ok(()))
            ),
            None => false,
        };
        if subscribed {
            return Some(rx);
        }
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel);
        None
    }
}

/// The listening task: connect, subscribe to what is waited for, hand each
/// message to its waiters; again after a second when the connection ends.
async fn listen(connector: Arc<Connector>, shared: Weak<Shared>) {
    // A connection's own limits; a subscription waits for its reply.
    const TIMEOUT: Duration = Duration::from_secs(2);
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        let (pushed, mut heard) = tokio::sync::mpsc::unbounded_channel();
        if let Ok(mut conn) = connector.notices(TIMEOUT, pushed).await {
            let Some(s) = shared.upgrade() else { return };
            let channels: Vec<String> = s
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            if channels.is_empty() || conn.subscribe(&channels).await.is_ok() {
                *s.sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
                drop(s);
                while let Some(push) = heard.recv().await {
                    let channel = match (push.kind, push.data.first()) {
                        (PushKind::Message, Some(Value::BulkString(name))) => {
                            String::from_utf8_lossy(name).into_owned()
                        }
                        (PushKind::Disconnection, _) => break,
                        _ => continue,
                    };
                    let Some(s) = shared.upgrade() else { return };
                    let waiters = s
                        .waiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&channel);
                    for waiter in waiters.into_iter().flatten() {
                        let _ = waiter.send(());
                    }
                    // Heard: no one waits on it now (a later waiter
                    // subscribes again).
                    let mut unsubscribe = conn.clone();
                    tokio::spawn(async move {
                        let _ = unsubscribe.unsubscribe(channel).await;
                    });
                }
                if let Some(s) = shared.upgrade() {
                    *s.sink.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    // Those waiting hear the loss and ask again.
                    s.waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
