//! Channels between green threads on any hub and plain OS threads, with a
//! Go-style [`Select`].
//!
//! ```
//! use eventlet::channel;
//!
//! let (tx, rx) = channel::bounded(16);
//! // A plain OS thread: while it waits, its own hub runs.
//! let producer = std::thread::spawn(move || {
//!     for i in 0..100 {
//!         tx.send(i).unwrap();
//!     }
//! });
//! // A green thread on this thread's hub.
//! let consumer = eventlet::spawn(move || rx.iter().sum::<i32>());
//! assert_eq!(consumer.join().unwrap(), 4950);
//! producer.join().unwrap();
//! ```
//!
//! [`Sender`] and [`Receiver`] are `Clone + Send + Sync` (for `T: Send`):
//! many producers, many consumers, on any OS threads. Their API follows
//! `crossbeam-channel`: [`unbounded`], [`bounded`] (`bounded(0)` is a
//! rendezvous: a send waits for a receiver), `send`/`try_send`/
//! `send_timeout`, `recv`/`try_recv`/`recv_timeout`, and errors that hand
//! the unsent value back. A channel is disconnected when all senders (or
//! all receivers) are gone: receivers then drain what is left and get
//! [`RecvError`]; senders get their value back in a [`SendError`].
//!
//! Unlike the single-hub [`Queue`](crate::Queue), a channel may be shared
//! with other OS threads; use a `Queue` when everything stays on one hub
//! (it is cheaper and the deadlock detector can see through it).
//!
//! # How it works
//!
//! A channel is one `Mutex` around the buffer and two FIFO lists of
//! waiters. A waiter is a green thread (or the root context) of any hub: it
//! registers a *signal* (an [`Unparker`](crate::Unparker) and an atomic state) and parks.
//! Whoever makes the wait good — a sender when a receiver waits, a receiver
//! when a sender waits on a full channel — *claims* the longest waiter's
//! signal (compare-and-swap, under the channel's lock), hands it the item
//! (the item is reserved for it, or moved out of the waiting sender) and
//! unparks it. A claimed waiter knows it was served, so no wake-up is lost
//! and nobody barges in between; a waiter that times out or is killed
//! claims its own signal as aborted and removes its registrations.
//! Operations that need not wait take the lock once.
//!
//! [`Select`] registers the same signal on every channel it waits on; the
//! first channel to claim it wins, and the select removes itself from the
//! others.
//!
//! # Caveats
//!
//! A green thread blocked on a channel holds an [`Unparker`](crate::Unparker), so its hub's
//! deadlock detector assumes another OS thread may wake it: a wait that no
//! one can end hangs instead of panicking. Values of the send cases of a
//! [`Select`] that were not chosen are dropped (as in Go).

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::greenthread::current;
use crate::time::{deadline_after, expired};

mod error;
mod select;
mod wait;

pub use error::{
    RecvError, RecvTimeoutError, SelectTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySelectError,
    TrySendError,
};
pub use select::Select;
use wait::{block, wake, RecvCase, RecvEntry, SendCase, SendEntry, Signal};

/// Creates a channel of unbounded capacity.
///
/// ```
/// let (tx, rx) = eventlet::channel::unbounded();
/// tx.send("hi").unwrap();
/// assert_eq!(rx.recv(), Ok("hi"));
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new_channel(None)
}

/// Creates a channel holding at most `cap` messages; a send to a full
/// channel waits. `bounded(0)` is a rendezvous channel: every send waits
/// until a receiver takes the message.
///
/// ```
/// use eventlet::channel::{self, TrySendError};
///
/// let (tx, rx) = channel::bounded(1);
/// tx.send(1).unwrap();
/// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
/// assert_eq!(rx.recv(), Ok(1));
/// ```
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    new_channel(Some(cap))
}

fn new_channel<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        inner: Mutex::new(Inner {
            queue: VecDeque::new(),
            reserved: 0,
            cap: cap.unwrap_or(usize::MAX),
            receivers_waiting: VecDeque::new(),
            senders_waiting: VecDeque::new(),
            senders_gone: false,
            receivers_gone: false,
        }),
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
        cap,
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

// ---------------------------------------------------------------------------
// The channel

struct Chan<T> {
    inner: Mutex<Inner<T>>,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    cap: Option<usize>,
}

impl<T> Chan<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // No user code runs under the lock (messages are dropped after it is
        // released), so poisoning cannot leave the state half-changed.
        for step in 0..LOCK_SPINS {
            match self.inner.try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    for _ in 0..1u32 << step {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Tries of `try_lock`, with exponential backoff, before [`Chan::lock`]
/// blocks on the lock. The sections under the lock are a few dozen
/// instructions; a thread that goes to sleep in the lock's futex instead
/// marks it contended, and then every unlock is a `futex_wake` syscall
/// (measured: half the throughput between two busy threads).
const LOCK_SPINS: u32 = 8;

/// Tries, with exponential backoff, of an operation that would block
/// before its green thread registers and parks, when nothing else is
/// ready on the hub. Parking on one side means a cross-thread wake-up (an
/// `eventfd` write and an `epoll_wait` return, microseconds) that a short
/// spin often saves when the other side is busy on another core.
const SPIN_TRIES: u32 = 8;

/// The state behind the lock.
///
/// Invariant: while a receiver waits (with a claimable signal), every
/// message in `queue` is reserved; a receiver that is claimed gets one
/// message reserved for it and takes the front one when it runs.
struct Inner<T> {
    queue: VecDeque<T>,
    /// Messages in `queue` promised to claimed receivers that have not
    /// taken them yet. They do not count against `cap`.
    reserved: usize,
    cap: usize,
    receivers_waiting: VecDeque<RecvEntry>,
    /// Senders waiting for room (or, with capacity 0, for a receiver).
    /// Entries whose signal is no longer waiting stay until their owner
    /// removes them (taking its message back).
    senders_waiting: VecDeque<SendEntry<T>>,
    senders_gone: bool,
    receivers_gone: bool,
}

enum Put<T> {
    /// Sent; the receiver to wake, if one was waiting.
    Sent(Option<Arc<Signal>>),
    Full(T),
    Disconnected(T),
}

impl<T> Inner<T> {
    fn unreserved(&self) -> usize {
        self.queue.len() - self.reserved
    }

    /// Claims the longest-waiting receiver for one new message; entries
    /// whose owner is served elsewhere or gone are dropped on the way.
    fn claim_receiver(&mut self) -> Option<Arc<Signal>> {
        while let Some(e) = self.receivers_waiting.pop_front() {
            if e.signal.claim(e.op, false) {
                self.reserved += 1;
                return Some(e.signal);
            }
        }
        None
    }

    /// Claims the longest-waiting sender and takes its message.
    fn claim_sender(&mut self) -> Option<(T, Arc<Signal>)> {
        let i = self.senders_waiting.iter().position(|e| e.signal.claim(e.op, false))?;
        let e = self.senders_waiting.remove(i).expect("index from position");
        Some((e.value, e.signal))
    }

    /// Sends without waiting.
    fn put(&mut self, value: T) -> Put<T> {
        if self.receivers_gone {
            return Put::Disconnected(value);
        }
        if !self.receivers_waiting.is_empty() {
            if let Some(s) = self.claim_receiver() {
                self.queue.push_back(value);
                return Put::Sent(Some(s));
            }
        }
        if self.unreserved() < self.cap {
            self.queue.push_back(value);
            Put::Sent(None)
        } else {
            Put::Full(value)
        }
    }

    /// Receives without waiting: an unreserved message (letting in the
    /// longest-waiting sender if that made room), or straight from a
    /// waiting sender (capacity 0). Returns the sender to wake.
    fn take(&mut self) -> Option<(T, Option<Arc<Signal>>)> {
        if self.unreserved() > 0 {
            let value = self.queue.pop_front().expect("unreserved > 0");
            let mut woken = None;
            if !self.senders_waiting.is_empty() && self.unreserved() < self.cap {
                if let Some((v, s)) = self.claim_sender() {
                    self.queue.push_back(v);
                    woken = Some(s);
                }
            }
            return Some((value, woken));
        }
        if self.senders_waiting.is_empty() {
            return None;
        }
        self.claim_sender().map(|(v, s)| (v, Some(s)))
    }

    /// Takes the message reserved for a claimed receiver.
    fn take_reserved(&mut self) -> Option<T> {
        self.reserved = self.reserved.checked_sub(1)?;
        self.queue.pop_front()
    }

    /// A claimed receiver will not take its message after all: passes it
    /// to the next waiting receiver. Returns who to wake.
    fn unreserve(&mut self) -> Option<Arc<Signal>> {
        self.reserved = self.reserved.checked_sub(1)?;
        if self.receivers_waiting.is_empty() {
            None
        } else {
            self.claim_receiver()
        }
    }

    /// Whether a receive could complete now, not counting `me`'s own
    /// registrations.
    fn recv_ready(&self, me: &Arc<Signal>) -> bool {
        self.unreserved() > 0
            || self.senders_gone
            || self.senders_waiting.iter().any(|e| !Arc::ptr_eq(&e.signal, me) && e.signal.is_waiting())
    }

    /// Whether a send could complete now, not counting `me`'s own
    /// registrations.
    fn send_ready(&self, me: &Arc<Signal>) -> bool {
        self.receivers_gone
            || self.unreserved() < self.cap
            || self.receivers_waiting.iter().any(|e| !Arc::ptr_eq(&e.signal, me) && e.signal.is_waiting())
    }

    fn remove_receiver(&mut self, me: &Arc<Signal>, op: usize) {
        if let Some(i) = self.receivers_waiting.iter().position(|e| e.op == op && Arc::ptr_eq(&e.signal, me)) {
            self.receivers_waiting.remove(i);
        }
    }

    fn remove_sender(&mut self, me: &Arc<Signal>, op: usize) -> Option<T> {
        let i = self.senders_waiting.iter().position(|e| e.op == op && Arc::ptr_eq(&e.signal, me))?;
        self.senders_waiting.remove(i).map(|e| e.value)
    }
}

// ---------------------------------------------------------------------------
// Sender

/// The sending half of a channel, from [`unbounded`] or [`bounded`].
/// Clone it for more producers; the channel is disconnected for receivers
/// when the last clone is dropped.
///
/// ```
/// let (tx, rx) = eventlet::channel::unbounded();
/// let producers: Vec<_> = (0..4)
///     .map(|i| {
///         let tx = tx.clone();
///         std::thread::spawn(move || tx.send(i).unwrap())
///     })
///     .collect();
/// drop(tx);
/// for p in producers {
///     p.join().unwrap();
/// }
/// let mut got: Vec<i32> = rx.iter().collect();
/// got.sort();
/// assert_eq!(got, [0, 1, 2, 3]);
/// ```
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends `msg`, waiting while the channel is full (with capacity 0,
    /// until a receiver takes it).
    ///
    /// # Errors
    ///
    /// The message comes back in a [`SendError`] when all receivers are
    /// gone.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.send_deadline_inner(msg, None).map_err(|e| SendError(e.into_inner()))
    }

    /// Sends `msg` if that needs no wait.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] or [`TrySendError::Disconnected`], with the
    /// message.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        let mut g = self.chan.lock();
        match g.put(msg) {
            Put::Sent(w) => {
                drop(g);
                wake(w);
                Ok(())
            }
            Put::Full(v) => Err(TrySendError::Full(v)),
            Put::Disconnected(v) => Err(TrySendError::Disconnected(v)),
        }
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`],
    /// with the message.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline_inner(msg, deadline_after(timeout))
    }

    /// Sends `msg`, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_timeout`].
    pub fn send_deadline(&self, msg: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline_inner(msg, Some(deadline))
    }

    /// `deadline`: `None` waits forever.
    fn send_deadline_inner(&self, msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let msg = match self.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(v)) => return Err(SendTimeoutError::Disconnected(v)),
            Err(TrySendError::Full(v)) => v,
        };
        if expired(deadline) {
            return Err(SendTimeoutError::Timeout(msg));
        }
        let mut case = SendCase { chan: &self.chan, value: Some(msg), outcome: None };
        match block(&mut [&mut case], deadline, false, 0) {
            Some(_) => match case.outcome.take().expect("completed send has an outcome") {
                Ok(()) => Ok(()),
                Err(v) => Err(SendTimeoutError::Disconnected(v)),
            },
            None => Err(SendTimeoutError::Timeout(case.value.take().expect("timed-out send keeps its value"))),
        }
    }

    /// Messages in the channel (not counting those already handed to a
    /// waiting receiver).
    pub fn len(&self) -> usize {
        self.chan.lock().unreserved()
    }

    /// Whether the channel holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a send would wait for room.
    pub fn is_full(&self) -> bool {
        let g = self.chan.lock();
        g.unreserved() >= g.cap
    }

    /// The capacity: `None` for an unbounded channel.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.cap
    }

    /// Green threads (or OS threads) waiting on the channel, as
    /// [`Waiting`] counts of registered receivers and senders (a
    /// [`Select`] counts on every channel it waits on).
    pub fn waiting(&self) -> Waiting {
        waiting(&self.chan)
    }

    /// Whether two handles belong to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender { chan: self.chan.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let woken: Vec<Arc<Signal>> = {
            let mut g = self.chan.lock();
            g.senders_gone = true;
            // Waiting receivers hold no unreserved message (the invariant):
            // they get the disconnection.
            std::mem::take(&mut g.receivers_waiting)
                .into_iter()
                .filter(|e| e.signal.claim(e.op, true))
                .map(|e| e.signal)
                .collect()
        };
        for s in woken {
            s.unparker.unpark();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("len", &self.len()).field("capacity", &self.chan.cap).finish()
    }
}

// ---------------------------------------------------------------------------
// Receiver

/// The receiving half of a channel, from [`unbounded`] or [`bounded`].
/// Clone it for more consumers (each message goes to one of them); when
/// the last clone is dropped, senders get their messages back and what was
/// left in the channel is dropped.
///
/// ```
/// use std::time::Duration;
/// use eventlet::channel::{self, RecvTimeoutError};
///
/// let (tx, rx) = channel::unbounded::<u32>();
/// assert_eq!(rx.recv_timeout(Duration::from_millis(5)), Err(RecvTimeoutError::Timeout));
/// eventlet::spawn_after(Duration::from_millis(5), move || tx.send(7).unwrap());
/// assert_eq!(rx.recv(), Ok(7));
/// // The sender is gone now.
/// assert!(rx.recv().is_err());
/// ```
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Receiver<T> {
    /// Receives a message, waiting for one.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is empty and all senders are gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_deadline_inner(None).map_err(|_| RecvError)
    }

    /// Receives a message if one is there.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] once the
    /// channel is empty and all senders are gone.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut g = self.chan.lock();
        if let Some((v, w)) = g.take() {
            drop(g);
            wake(w);
            return Ok(v);
        }
        if g.senders_gone {
            Err(TryRecvError::Disconnected)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], or [`RecvTimeoutError::Disconnected`]
    /// once the channel is empty and all senders are gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline_inner(deadline_after(timeout))
    }

    /// Receives a message, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv_timeout`].
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_deadline_inner(Some(deadline))
    }

    /// `deadline`: `None` waits forever.
    fn recv_deadline_inner(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        match self.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        if expired(deadline) {
            return Err(RecvTimeoutError::Timeout);
        }
        let mut case = RecvCase { chan: &self.chan, outcome: None };
        match block(&mut [&mut case], deadline, false, 0) {
            Some(_) => case
                .outcome
                .take()
                .expect("completed receive has an outcome")
                .map_err(|_| RecvTimeoutError::Disconnected),
            None => Err(RecvTimeoutError::Timeout),
        }
    }

    /// A blocking iterator of messages; it ends when the channel is empty
    /// and all senders are gone.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator of the messages there now; it never waits.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Messages in the channel (not counting those already handed to a
    /// waiting receiver).
    pub fn len(&self) -> usize {
        self.chan.lock().unreserved()
    }

    /// Whether the channel holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a send would wait for room.
    pub fn is_full(&self) -> bool {
        let g = self.chan.lock();
        g.unreserved() >= g.cap
    }

    /// The capacity: `None` for an unbounded channel.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.cap
    }

    /// Waiters registered on the channel; see [`Sender::waiting`].
    pub fn waiting(&self) -> Waiting {
        waiting(&self.chan)
    }

    /// Whether two handles belong to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    /// Whether every sender is gone.
    pub(crate) fn is_disconnected(&self) -> bool {
        self.chan.lock().senders_gone
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver { chan: self.chan.clone() }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let (left, woken): (VecDeque<T>, Vec<Arc<Signal>>) = {
            let mut g = self.chan.lock();
            g.receivers_gone = true;
            g.reserved = 0;
            // Waiting senders keep their entries: each takes its message
            // back when it wakes.
            let woken =
                g.senders_waiting.iter().filter(|e| e.signal.claim(e.op, true)).map(|e| e.signal.clone()).collect();
            (std::mem::take(&mut g.queue), woken)
        };
        for s in woken {
            s.unparker.unpark();
        }
        drop(left);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("len", &self.len()).field("capacity", &self.chan.cap).finish()
    }
}

/// How many receivers and senders wait on a channel, from
/// [`Sender::waiting`] or [`Receiver::waiting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Waiting {
    /// Receivers registered, waiting for a message.
    pub receivers: usize,
    /// Senders registered, waiting for room or for a receiver.
    pub senders: usize,
}

fn waiting<T>(chan: &Chan<T>) -> Waiting {
    let g = chan.lock();
    Waiting { receivers: g.receivers_waiting.len(), senders: g.senders_waiting.len() }
}

/// A blocking iterator over received messages, from [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// A non-blocking iterator over the messages there now, from
/// [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// An owning blocking iterator over received messages.
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
