//! The open connections of one listener, so a cap can be kept: when it is
//! reached, the connection idle the longest is asked to close (an idle
//! HTTP/1.1 keep-alive connection closes at once); if none is idle, the
//! listener accepts nothing until one is (callers wait in the kernel's
//! listen backlog, never accepted only to be closed). Busy connections are
//! never cut.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One connection: whether a request is being answered, since when it is
/// idle, and how to ask it to close.
pub struct Conn {
    busy: AtomicUsize,
    /// Asked to close: no longer counted, never picked again.
    closing: AtomicBool,
    /// Milliseconds after the listener's start.
    idle_since_ms: AtomicU64,
    /// The connection's task, woken when it is asked to close.
    waker: AtomicWaker,
}

impl Conn {
    /// Asks the connection to close once the request in hand is answered.
    fn ask_to_close(&self) {
        self.closing.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Resolves once the connection is asked to close. It is polled at every
    /// wake of the connection's task, so it costs a load and a waker
    /// registration, where a `Notify` took a lock.
    pub(super) fn asked_to_close(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.closing.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            match self.closing.load(Ordering::Acquire) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
    }
}

/// Every open connection of a listener.
pub struct Conns {
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    born: Instant,
    /// Notified when the last connection goes (the drain waits on it).
    pub(super) emptied: Notify,
    /// Notified when a connection goes or turns idle: room for the next.
    pub(super) room: Notify,
}

/// What to do with a newly accepted connection.
pub enum Admit {
    Serve(u64, Arc<Conn>),
    /// At the cap with every connection busy.
    Refuse,
}

impl Conns {
    pub fn new() -> Conns {
        Conns {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            born: Instant::now(),
            emptied: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Registers a new connection, making room under `cap` first.
    pub fn admit(&self, cap: usize) -> Admit {
        let mut open = self.lock();
        match room(&open, cap) {
            Room::Free => {}
            Room::ByClosing(idle) => idle.ask_to_close(),
            Room::None => return Admit::Refuse,
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            waker: AtomicWaker::new(),
        });
        open.insert(id, conn.clone());
        Admit::Serve(id, conn)
    }

    pub fn remove(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        if open.is_empty() {
            self.emptied.notify_waiters();
        }
        drop(open);
        self.room.notify_one();
    }

    /// Whether a new connection could be served under `cap` now: below it,
    /// or with one idle to make room.
    pub fn has_room(&self, cap: usize) -> bool {
        !matches!(room(&self.lock(), cap), Room::None)
    }

    /// Asks every open connection to close (shutdown has begun).
    pub fn close_all(&self) {
        for conn in self.lock().values() {
            conn.ask_to_close();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wraps a request's future so the connection counts as busy until it is
    /// answered, and idle from then on.
    pub fn track<F>(self: &Arc<Self>, conn: &Arc<Conn>, fut: F) -> Tracked<F> {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Tracked {
            fut,
            guard: BusyGuard {
                conns: self.clone(),
                conn: conn.clone(),
            },
        }
    }
}

/// Room for one more connection under a cap.
enum Room<'a> {
    Free,
    /// By closing this one, idle the longest.
    ByClosing(&'a Arc<Conn>),
    /// Every connection busy.
    None,
}

fn room(open: &HashMap<u64, Arc<Conn>>, cap: usize) -> Room<'_> {
    // Below the cap nothing is scanned; at it, connections already asked to
    // close do not count (they leave as soon as their task runs).
    let live = || {
        open.values()
            .filter(|c| !c.closing.load(Ordering::Relaxed))
            .count()
    };
    if open.len() < cap || live() < cap {
        return Room::Free;
    }
    let oldest_idle = open
        .values()
        .filter(|c| c.busy.load(Ordering::Acquire) == 0 && !c.closing.load(Ordering::Relaxed))
        .min_by_key(|c| c.idle_since_ms.load(Ordering::Relaxed));
    oldest_idle.map_or(Room::None, Room::ByClosing)
}

impl Default for Conns {
    fn default() -> Self {
        Conns::new()
    }
}

struct BusyGuard {
    conns: Arc<Conns>,
    conn: Arc<Conn>,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.conn
            .idle_since_ms
            .store(self.conns.now_ms(), Ordering::Relaxed);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
        self.conns.room.notify_one();
    }
}

/// A request's future that keeps its connection busy while it runs.
pub struct Tracked<F> {
    fut: F,
    #[allow(dead_code)] // held for its Drop
    guard: BusyGuard,
}

impl<F: Future + Unpin> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.fut).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_is_asked_to_close() {
        let conns = Arc::new(Conns::new());
        let Admit::Serve(_, first) = conns.admit(2) else {
            panic!("room")
        };
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        let Admit::Serve(_, second) = conns.admit(2) else {
            panic!("room")
        };
        // The first is busy: the second, idle, is the one asked to close.
        let busy = conns.track(&first, std::future::ready(()));
        assert!(matches!(conns.admit(2), Admit::Serve(..)));
        // The request is kept: the connection sees it at its next poll.
        tokio::time::timeout(std::time::Duration::from_millis(1), second.asked_to_close())
            .await
            .expect("the idle connection was asked to close");
        drop(busy);
        assert_eq!(conns.len(), 3, "over the cap until the idle one leaves");
    }

    #[test]
    fn with_every_connection_busy_a_new_one_is_refused() {
        let conns = Arc::new(Conns::new());
        let Admit::Serve(id, only) = conns.admit(1) else {
            panic!("room")
        };
        let _busy = conns.track(&only, std::future::ready(()));
        assert!(matches!(conns.admit(1), Admit::Refuse));
        drop(_busy);
        assert!(matches!(conns.admit(1), Admit::Serve(..)));
        conns.remove(id);
    }
}
