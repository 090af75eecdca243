//! Wake-ups from other OS threads: the part of a hub they may touch
//! ([`HubShared`]), the messages they send it ([`Remote`]), and
//! [`Unparker`], which wakes one green thread from anywhere.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::peek_hub;

/// A wake-up sent to a hub from another OS thread.
pub(crate) enum Remote {
    /// Unpark the green thread at `key` if it is still the one with `id`.
    Unpark {
        key: usize,
        id: u64,
    },
    /// A wake of the `block_on` waker of the green thread at `key` with
    /// `id`: counted, then the green thread is unparked (see
    /// [`crate::future::wake_here`]).
    WakeFuture {
        key: usize,
        id: u64,
    },
    FreeSlot(usize),
    /// Kill the green thread at `key` if it is still the one with `id`.
    Kill {
        key: usize,
        id: u64,
    },
    /// Spawn a green thread running this (from [`Handle::spawn`]).
    Spawn(Box<dyn FnOnce() + Send>),
    /// Nothing: look again whether anything is left to do.
    Wake,
}

/// The part of a hub other OS threads may touch.
pub(crate) struct HubShared {
    pub(crate) id: u64,
    pub(crate) registry: mio::Registry,
    pub(super) waker: mio::Waker,
    pub(super) queue: Mutex<Vec<Remote>>,
    pub(super) pending: AtomicBool,
    /// Where the hub's thread waits, if it does: [`AWAKE`], [`IN_EPOLL`]
    /// or [`IN_TOKIO`]. The sender that finds it waiting sets it back to
    /// `AWAKE` and wakes it: one wake per wait, however many senders.
    pub(super) sleeping: AtomicU8,
    /// Live `Unparker`s: while any exists, something outside may wake us.
    pub(crate) handles: AtomicUsize,
    /// Green threads switched to so far (written by the hub only; read by
    /// its watchdog).
    pub(super) switches: AtomicU64,
    /// The id of the green thread running now (0: the hub loop or root).
    pub(super) running: AtomicU64,
    /// Green threads alive (written by the hub only; read by a [`Group`]
    /// to find its least loaded hub).
    pub(crate) live: AtomicUsize,
    /// Cleared (under `queue`'s lock) when the hub's thread exits: nothing
    /// sent after that would ever be received.
    pub(super) alive: AtomicBool,
    /// The waker of the hub's loop inside its tokio runtime, for a wake
    /// while it waits there ([`IN_TOKIO`]): tokio's own cross-thread wake
    /// (one `eventfd` write) rather than one through the hub's `epoll`,
    /// nested in tokio's (which costs the loop an extra `epoll_wait`).
    /// Set when the loop's waker changes (once per runtime in practice),
    /// not per wait.
    #[cfg(feature = "tokio")]
    pub(super) loop_waker: Mutex<Option<std::task::Waker>>,
}

/// The hub's thread is not waiting (it runs, or is about to look at its
/// messages).
pub(super) const AWAKE: u8 = 0;
/// The hub's thread waits in its own `epoll`: its `mio::Waker` wakes it.
pub(super) const IN_EPOLL: u8 = 1;
/// The hub's loop waits inside its tokio runtime: the loop's waker wakes it.
#[cfg(feature = "tokio")]
pub(super) const IN_TOKIO: u8 = 2;

impl HubShared {
    pub(crate) fn send(&self, msg: Remote) {
        self.send_with(|| msg);
    }

    /// Makes a message with `make` and sends it, unless the hub's thread has
    /// exited: then `make` is not called. Returns whether it was sent.
    pub(crate) fn send_with(&self, make: impl FnOnce() -> Remote) -> bool {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !self.alive.load(Ordering::SeqCst) {
                return false;
            }
            q.push(make());
        }
        self.pending.store(true, Ordering::SeqCst);
        // A load first: while the hub runs, senders only read the line
        // the hub writes.
        if self.sleeping.load(Ordering::SeqCst) != AWAKE {
            self.wake_waiting();
        }
        true
    }

    /// Wakes the hub's thread if it still waits (and no other sender woke
    /// it first).
    #[cold]
    fn wake_waiting(&self) {
        match self.sleeping.swap(AWAKE, Ordering::SeqCst) {
            AWAKE => {}
            #[cfg(feature = "tokio")]
            IN_TOKIO => {
                // Cloned, and woken once the lock is released: the wake
                // is a syscall, and the hub may want the lock meanwhile.
                let w = self.loop_waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(w) = w {
                    w.wake();
                }
            }
            _ => {
                let _ = self.waker.wake();
            }
        }
    }
}

/// A handle that wakes a parked green thread from any OS thread.
///
/// Made by [`GreenThread::unparker`](crate::GreenThread::unparker). It is
/// `Send + Sync`; while one exists the hub does not consider itself
/// deadlocked.
pub struct Unparker {
    pub(super) shared: Arc<HubShared>,
    pub(super) key: usize,
    pub(super) id: u64,
}

impl Unparker {
    pub(crate) fn new(shared: Arc<HubShared>, key: usize, id: u64) -> Unparker {
        shared.handles.fetch_add(1, Ordering::SeqCst);
        Unparker { shared, key, id }
    }

    /// Wakes the green thread (or leaves a token for its next park).
    ///
    /// Called from an OS thread without a hub (a plain thread, a `tpool`
    /// worker), it makes none there: the wake-up goes through the target
    /// hub's queue, and cannot fail once sent.
    pub fn unpark(&self) {
        let local = peek_hub(|h| {
            if h.id == self.shared.id {
                h.unpark_key(self.key, self.id);
                true
            } else {
                false
            }
        });
        if local != Some(true) {
            self.shared.send(Remote::Unpark { key: self.key, id: self.id });
        }
    }
}

impl Clone for Unparker {
    fn clone(&self) -> Unparker {
        Unparker::new(self.shared.clone(), self.key, self.id)
    }
}

impl Drop for Unparker {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::SeqCst) == 1 && peek_hub(|h| h.id == self.shared.id) != Some(true)
        {
            // The last handle, dropped on another OS thread: the hub may be
            // waiting only because of it (a hub thread that could end, a
            // deadlock to report), so it looks again. On its own thread
            // the hub looks anyway before it next waits.
            self.shared.send(Remote::Wake);
        }
    }
}

impl fmt::Debug for Unparker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unparker").field("hub", &self.shared.id).field("green_thread", &self.id).finish()
    }
}
