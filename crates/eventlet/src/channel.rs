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
//! registers a *signal* (an [`Unparker`] and an atomic state) and parks.
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
//! A green thread blocked on a channel holds an [`Unparker`], so its hub's
//! deadlock detector assumes another OS thread may wake it: a wait that no
//! one can end hangs instead of panicking. Values of the send cases of a
//! [`Select`] that were not chosen are dropped (as in Go).

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::greenthread::{current, park_deadline};
use crate::hub::{Unparker, Wakeup};
use crate::time::{deadline_after, expired};

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
// Waiters

/// The signal's state while its owner waits.
const WAITING: usize = 0;
/// The owner gave up (timed out, was killed, or found a case ready while
/// registering).
const ABORTED: usize = 1;

/// How a wait ended: the state of a signal that is no longer `WAITING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Aborted,
    /// Case `op` was served, or its channel was disconnected.
    Selected {
        op: usize,
        disconnected: bool,
    },
}

fn decode(state: usize) -> Outcome {
    match state {
        WAITING => unreachable!("decode of a waiting signal"),
        ABORTED => Outcome::Aborted,
        s => Outcome::Selected { op: (s - 2) / 2, disconnected: (s - 2) % 2 == 1 },
    }
}

/// One waiting green thread (or root), registered on one or more channels.
struct Signal {
    state: AtomicUsize,
    unparker: Unparker,
}

impl Signal {
    fn new() -> Arc<Signal> {
        Arc::new(Signal { state: AtomicUsize::new(WAITING), unparker: current().unparker() })
    }

    /// Marks case `op` as the one that completed. Fails if the waiter was
    /// already served elsewhere or gave up. Called under the lock of the
    /// channel the waiter is registered on.
    fn claim(&self, op: usize, disconnected: bool) -> bool {
        let to = 2 + 2 * op + usize::from(disconnected);
        self.state.compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The owner gives up; fails with the outcome if someone claimed first.
    fn abort(&self) -> Result<(), Outcome> {
        self.state.compare_exchange(WAITING, ABORTED, Ordering::AcqRel, Ordering::Acquire).map(drop).map_err(decode)
    }

    fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }
}

/// Unparks a claimed waiter (after the channel's lock is released).
fn wake(s: Option<Arc<Signal>>) {
    if let Some(s) = s {
        s.unparker.unpark();
    }
}

struct RecvEntry {
    signal: Arc<Signal>,
    op: usize,
}

/// A sender waiting with its message.
struct SendEntry<T> {
    signal: Arc<Signal>,
    op: usize,
    value: T,
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

// ---------------------------------------------------------------------------
// Waiting on one or more operations

/// One operation a waiter may register for.
trait Case {
    /// Completes the operation if it needs no wait; the outcome is kept.
    fn try_now(&mut self) -> bool;
    /// Under one lock: returns false if the operation could complete now
    /// (ignoring `me`'s own registrations), else registers `me` as case
    /// `op`.
    fn register(&mut self, me: &Arc<Signal>, op: usize) -> bool;
    /// Removes `me`'s registration as case `op`, if it is still there.
    fn deregister(&mut self, me: &Arc<Signal>, op: usize);
    /// `me` was claimed for this case: collect the outcome.
    fn complete(&mut self, me: &Arc<Signal>, op: usize, disconnected: bool);
    /// `me` was claimed for this case, but the wait unwinds (a kill): pass
    /// on what was handed over.
    fn abandon(&mut self, me: &Arc<Signal>, op: usize, disconnected: bool);
}

struct RecvCase<'c, T> {
    chan: &'c Chan<T>,
    outcome: Option<Result<T, RecvError>>,
}

impl<T> Case for RecvCase<'_, T> {
    fn try_now(&mut self) -> bool {
        let mut g = self.chan.lock();
        if let Some((v, w)) = g.take() {
            drop(g);
            wake(w);
            self.outcome = Some(Ok(v));
            true
        } else if g.senders_gone {
            self.outcome = Some(Err(RecvError));
            true
        } else {
            false
        }
    }

    fn register(&mut self, me: &Arc<Signal>, op: usize) -> bool {
        let mut g = self.chan.lock();
        if g.recv_ready(me) {
            return false;
        }
        g.receivers_waiting.push_back(RecvEntry { signal: me.clone(), op });
        true
    }

    fn deregister(&mut self, me: &Arc<Signal>, op: usize) {
        self.chan.lock().remove_receiver(me, op);
    }

    fn complete(&mut self, _me: &Arc<Signal>, _op: usize, disconnected: bool) {
        let v = if disconnected { None } else { self.chan.lock().take_reserved() };
        self.outcome = Some(v.ok_or(RecvError));
    }

    fn abandon(&mut self, _me: &Arc<Signal>, _op: usize, disconnected: bool) {
        if !disconnected {
            let w = self.chan.lock().unreserve();
            wake(w);
        }
    }
}

struct SendCase<'c, T> {
    chan: &'c Chan<T>,
    /// The message while it is neither sent nor in the channel's list of
    /// waiting senders.
    value: Option<T>,
    /// `Ok` once sent, `Err` with the message on disconnection.
    outcome: Option<Result<(), T>>,
}

impl<T> Case for SendCase<'_, T> {
    fn try_now(&mut self) -> bool {
        let Some(v) = self.value.take() else { return false };
        let mut g = self.chan.lock();
        match g.put(v) {
            Put::Sent(w) => {
                drop(g);
                wake(w);
                self.outcome = Some(Ok(()));
                true
            }
            Put::Disconnected(v) => {
                self.outcome = Some(Err(v));
                true
            }
            Put::Full(v) => {
                self.value = Some(v);
                false
            }
        }
    }

    fn register(&mut self, me: &Arc<Signal>, op: usize) -> bool {
        let mut g = self.chan.lock();
        if g.send_ready(me) {
            return false;
        }
        let Some(value) = self.value.take() else { return false };
        g.senders_waiting.push_back(SendEntry { signal: me.clone(), op, value });
        true
    }

    fn deregister(&mut self, me: &Arc<Signal>, op: usize) {
        let v = self.chan.lock().remove_sender(me, op);
        if v.is_some() {
            self.value = v;
        }
    }

    fn complete(&mut self, me: &Arc<Signal>, op: usize, disconnected: bool) {
        // Claimed to send: a receiver took the message out of our entry.
        // Claimed as disconnected: the entry (and message) is still there.
        self.outcome = Some(if disconnected {
            self.deregister(me, op);
            self.value.take().map_or(Ok(()), Err)
        } else {
            Ok(())
        });
    }

    fn abandon(&mut self, me: &Arc<Signal>, op: usize, disconnected: bool) {
        if disconnected {
            self.deregister(me, op);
        }
    }
}

/// The registrations of one wait; dropping it (a kill unwinding through
/// the park) removes them and passes on anything handed over.
struct Registered<'r, 'c> {
    cases: &'r mut [&'c mut dyn Case],
    signal: &'r Arc<Signal>,
    live: bool,
}

impl Registered<'_, '_> {
    fn deregister_except(&mut self, keep: Option<usize>) {
        for (i, c) in self.cases.iter_mut().enumerate() {
            if Some(i) != keep {
                c.deregister(self.signal, i);
            }
        }
    }

    fn finish(&mut self, outcome: Outcome) -> Option<usize> {
        self.live = false;
        match outcome {
            Outcome::Aborted => {
                self.deregister_except(None);
                None
            }
            Outcome::Selected { op, disconnected } => {
                self.deregister_except(Some(op));
                self.cases[op].complete(self.signal, op, disconnected);
                Some(op)
            }
        }
    }
}

impl Drop for Registered<'_, '_> {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        match self.signal.abort() {
            Ok(()) => self.deregister_except(None),
            Err(Outcome::Selected { op, disconnected }) => {
                self.deregister_except(Some(op));
                self.cases[op].abandon(self.signal, op, disconnected);
            }
            Err(Outcome::Aborted) => self.deregister_except(None),
        }
    }
}

/// Waits until one of `cases` completes (its index) or `deadline` passes
/// (`None`). Tries every case first when `try_first`, in turn from `start`;
/// spins briefly (see [`SPIN_TRIES`]) before it registers and parks.
fn block(cases: &mut [&mut dyn Case], deadline: Option<Instant>, try_first: bool, start: usize) -> Option<usize> {
    let n = cases.len();
    let order = move |k: usize| (start + k) % n;
    let mut try_now = try_first;
    let mut signal: Option<Arc<Signal>> = None;
    // Spin a little first, but only while no other green thread of this
    // hub is ready to run (it would be held up).
    if !crate::hub::others_ready() {
        let mut spins = 1u32;
        for _ in 0..SPIN_TRIES {
            for _ in 0..spins {
                std::hint::spin_loop();
            }
            spins *= 2;
            if let Some(i) = (0..n).map(order).find(|&i| cases[i].try_now()) {
                return Some(i);
            }
        }
    }
    loop {
        if try_now {
            if let Some(i) = (0..n).map(order).find(|&i| cases[i].try_now()) {
                return Some(i);
            }
            if expired(deadline) {
                return None;
            }
        }
        try_now = true;
        let signal = signal.get_or_insert_with(Signal::new);
        let mut reg = Registered { cases: &mut *cases, signal, live: true };
        let ready = (0..n).map(order).any(|i| !reg.cases[i].register(signal, i));
        if ready {
            // Something became ready while we registered: give up the
            // registrations and try again, unless a channel claimed us.
            if signal.abort().is_ok() {
                reg.finish(Outcome::Aborted);
                // No channel lists the signal any more: it can be reused.
                signal.state.store(WAITING, Ordering::Release);
                continue;
            }
        }
        let state = wait_signal(signal, deadline);
        return reg.finish(state);
    }
}

/// Parks until `signal` is claimed, or aborts it at `deadline`.
fn wait_signal(signal: &Signal, deadline: Option<Instant>) -> Outcome {
    loop {
        let s = signal.state.load(Ordering::Acquire);
        if s != WAITING {
            return decode(s);
        }
        let woke = match deadline {
            Some(d) if Instant::now() >= d => Ok(Wakeup::TimedOut),
            _ => crate::hub::with_hub(|h| h.park_result(deadline)),
        };
        match woke {
            Ok(Wakeup::Unparked) => {}
            // Without a deadline, a timeout or refusal: unless the other
            // side claimed the signal meanwhile (then that wins), abort it
            // and unwind.
            Err(e) if deadline.is_none() => match signal.abort() {
                Ok(()) => std::panic::resume_unwind(Box::new(e)),
                Err(o) => return o,
            },
            // The deadline, or an expired `Timeout` that ends the wait as
            // its own deadline would.
            _ => {
                return match signal.abort() {
                    Ok(()) => Outcome::Aborted,
                    Err(o) => o,
                };
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Select

/// A case of a [`Select`]: an operation plus what to do with its outcome.
trait Arm<R>: Case {
    fn as_case(&mut self) -> &mut dyn Case;
    fn fire(self: Box<Self>) -> R;
}

struct RecvArm<'c, T, F> {
    case: RecvCase<'c, T>,
    f: F,
}

struct SendArm<'c, T, F> {
    case: SendCase<'c, T>,
    f: F,
}

macro_rules! delegate_case {
    ($arm:ident) => {
        impl<T, F> Case for $arm<'_, T, F> {
            fn try_now(&mut self) -> bool {
                self.case.try_now()
            }
            fn register(&mut self, me: &Arc<Signal>, op: usize) -> bool {
                self.case.register(me, op)
            }
            fn deregister(&mut self, me: &Arc<Signal>, op: usize) {
                self.case.deregister(me, op)
            }
            fn complete(&mut self, me: &Arc<Signal>, op: usize, disconnected: bool) {
                self.case.complete(me, op, disconnected)
            }
            fn abandon(&mut self, me: &Arc<Signal>, op: usize, disconnected: bool) {
                self.case.abandon(me, op, disconnected)
            }
        }
    };
}
delegate_case!(RecvArm);
delegate_case!(SendArm);

impl<R, T, F: FnOnce(Result<T, RecvError>) -> R> Arm<R> for RecvArm<'_, T, F> {
    fn as_case(&mut self) -> &mut dyn Case {
        self
    }
    fn fire(self: Box<Self>) -> R {
        let this = *self;
        (this.f)(this.case.outcome.expect("fired case has an outcome"))
    }
}

impl<R, T, F: FnOnce(Result<(), SendError<T>>) -> R> Arm<R> for SendArm<'_, T, F> {
    fn as_case(&mut self) -> &mut dyn Case {
        self
    }
    fn fire(self: Box<Self>) -> R {
        let this = *self;
        (this.f)(this.case.outcome.expect("fired case has an outcome").map_err(SendError))
    }
}

/// Waits on several channel operations at once and runs the handler of the
/// one that completes — Go's `select`.
///
/// Add receive cases with [`recv`](Select::recv) and send cases with
/// [`send`](Select::send) (each with a handler for its outcome), then
/// [`wait`](Select::wait), [`wait_timeout`](Select::wait_timeout) or
/// [`try_wait`](Select::try_wait). Exactly one operation is performed.
/// When several are ready at once, one is picked at random, so no case
/// starves. A receive on a channel whose senders are all gone, or a send on
/// one whose receivers are all gone, counts as ready (its handler gets the
/// error). The values of send cases not chosen are dropped.
///
/// ```
/// use std::time::Duration;
/// use eventlet::channel::{self, Select};
///
/// let (tx_a, rx_a) = channel::unbounded::<i32>();
/// let (_tx_b, rx_b) = channel::unbounded::<String>();
/// let tx = tx_a.clone();
/// eventlet::spawn(move || tx.send(7).unwrap());
///
/// let got = Select::new()
///     .recv(&rx_a, |r| format!("a: {}", r.unwrap()))
///     .recv(&rx_b, |r| format!("b: {}", r.unwrap()))
///     .wait_timeout(Duration::from_secs(1));
/// assert_eq!(got.as_deref(), Ok("a: 7"));
///
/// // Nothing is ready now (and `tx_a`, `_tx_b` are alive): it times out.
/// let got = Select::new().recv(&rx_a, |_| "a").recv(&rx_b, |_| "b").wait_timeout(Duration::from_millis(5));
/// assert!(got.is_err());
/// ```
pub struct Select<'a, R> {
    arms: Vec<Box<dyn Arm<R> + 'a>>,
}

impl<'a, R> Select<'a, R> {
    /// A select with no case yet.
    pub fn new() -> Select<'a, R> {
        Select { arms: Vec::new() }
    }

    /// Adds a case receiving from `rx`; `f` gets the message, or
    /// [`RecvError`] when the channel is empty and disconnected.
    #[must_use]
    pub fn recv<T: 'a>(mut self, rx: &'a Receiver<T>, f: impl FnOnce(Result<T, RecvError>) -> R + 'a) -> Self {
        self.arms.push(Box::new(RecvArm { case: RecvCase { chan: &rx.chan, outcome: None }, f }));
        self
    }

    /// Adds a case sending `msg` on `tx`; `f` gets `Ok(())` once it is
    /// sent, or the message back in a [`SendError`] when all receivers are
    /// gone.
    #[must_use]
    pub fn send<T: 'a>(
        mut self,
        tx: &'a Sender<T>,
        msg: T,
        f: impl FnOnce(Result<(), SendError<T>>) -> R + 'a,
    ) -> Self {
        self.arms.push(Box::new(SendArm { case: SendCase { chan: &tx.chan, value: Some(msg), outcome: None }, f }));
        self
    }

    /// Waits until one case completes and returns what its handler
    /// returns.
    ///
    /// # Panics
    ///
    /// Panics if there is no case (it would wait forever).
    pub fn wait(self) -> R {
        assert!(!self.arms.is_empty(), "eventlet: Select::wait with no case would wait forever");
        self.run(Some(None)).expect("a select without deadline completes")
    }

    /// Completes a case that is ready now, if any.
    ///
    /// # Errors
    ///
    /// [`TrySelectError`] if no case is ready.
    pub fn try_wait(self) -> Result<R, TrySelectError> {
        self.run(None).ok_or(TrySelectError)
    }

    /// Waits at most `timeout` for a case to complete.
    ///
    /// # Errors
    ///
    /// [`SelectTimeoutError`] if none did in time (no operation was then
    /// performed).
    pub fn wait_timeout(self, timeout: Duration) -> Result<R, SelectTimeoutError> {
        self.run(Some(deadline_after(timeout))).ok_or(SelectTimeoutError)
    }

    /// Waits until `deadline` at most for a case to complete.
    ///
    /// # Errors
    ///
    /// As [`Select::wait_timeout`].
    pub fn wait_deadline(self, deadline: Instant) -> Result<R, SelectTimeoutError> {
        self.run(Some(Some(deadline))).ok_or(SelectTimeoutError)
    }

    /// `wait`: `None` does not wait; `Some(None)` waits forever.
    fn run(mut self, wait: Option<Option<Instant>>) -> Option<R> {
        if self.arms.is_empty() {
            if let Some(Some(d)) = wait {
                while Instant::now() < d && park_deadline(d) == Wakeup::Unparked {}
            }
            return None;
        }
        let start = random_below(self.arms.len());
        let chosen = {
            let mut cases: Vec<&mut dyn Case> = self.arms.iter_mut().map(|a| a.as_case()).collect();
            let n = cases.len();
            match wait {
                None => (0..n).map(|k| (start + k) % n).find(|&i| cases[i].try_now()),
                Some(deadline) => block(&mut cases, deadline, true, start),
            }
        }?;
        Some(self.arms.swap_remove(chosen).fire())
    }
}

impl<R> Default for Select<'_, R> {
    fn default() -> Self {
        Select::new()
    }
}

impl<R> fmt::Debug for Select<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select").field("cases", &self.arms.len()).finish()
    }
}

/// A number below `n` (> 0), from a per-thread xorshift generator.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            // std's per-process random hash keys make the seed.
            x = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 1u8) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % n as u64) as usize
    })
}

// ---------------------------------------------------------------------------
// Errors

/// The message could not be sent: all receivers are gone. Holds the
/// message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Why [`Sender::try_send`] did not send; holds the message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The channel is full (with capacity 0: no receiver is waiting).
    Full(T),
    /// All receivers are gone.
    Disconnected(T),
}

impl<T> TrySendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Disconnected(v) => v,
        }
    }

    /// Whether the channel was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    /// Whether all receivers were gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TrySendError::Disconnected(_))
    }
}

/// Why [`Sender::send_timeout`] did not send; holds the message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// No room came in time.
    Timeout(T),
    /// All receivers are gone.
    Disconnected(T),
}

impl<T> SendTimeoutError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v) | SendTimeoutError::Disconnected(v) => v,
        }
    }

    /// Whether the wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }

    /// Whether all receivers were gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendTimeoutError::Disconnected(_))
    }
}

/// The channel is empty and all senders are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

/// Why [`Receiver::try_recv`] got no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// No message is there now.
    Empty,
    /// The channel is empty and all senders are gone.
    Disconnected,
}

/// Why [`Receiver::recv_timeout`] got no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// No message came in time.
    Timeout,
    /// The channel is empty and all senders are gone.
    Disconnected,
}

/// No case of a [`Select::try_wait`] was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrySelectError;

/// No case of a [`Select::wait_timeout`] completed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectTimeoutError;

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a disconnected channel")
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full channel"),
            TrySendError::Disconnected(_) => f.write_str("sending on a disconnected channel"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("timed out waiting on send operation"),
            SendTimeoutError::Disconnected(_) => f.write_str("sending on a disconnected channel"),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on an empty and disconnected channel")
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => f.write_str("receiving on an empty and disconnected channel"),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting on receive operation"),
            RecvTimeoutError::Disconnected => f.write_str("receiving on an empty and disconnected channel"),
        }
    }
}

impl fmt::Display for TrySelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no select case was ready")
    }
}

impl fmt::Display for SelectTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting on select")
    }
}

impl<T> std::error::Error for SendError<T> {}
impl<T> std::error::Error for TrySendError<T> {}
impl<T> std::error::Error for SendTimeoutError<T> {}
impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}
impl std::error::Error for TrySelectError {}
impl std::error::Error for SelectTimeoutError {}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> TrySendError<T> {
        TrySendError::Disconnected(e.0)
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> SendTimeoutError<T> {
        SendTimeoutError::Disconnected(e.0)
    }
}

impl From<RecvError> for TryRecvError {
    fn from(_: RecvError) -> TryRecvError {
        TryRecvError::Disconnected
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(_: RecvError) -> RecvTimeoutError {
        RecvTimeoutError::Disconnected
    }
}
