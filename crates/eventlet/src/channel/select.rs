//! [`Select`]: wait on several channel operations and perform the first
//! that can go.

use std::fmt;
use std::time::{Duration, Instant};

use super::wait::{block, Case, RecvCase, SendCase};
use super::*;
use crate::greenthread::park_deadline;
use crate::hub::Wakeup;
use crate::time::deadline_after;

// ---------------------------------------------------------------------------
// Select

/// A case of a [`Select`]: an operation plus what to do with its outcome.
pub(super) trait Arm<R>: Case {
    fn as_case(&mut self) -> &mut dyn Case;
    fn fire(self: Box<Self>) -> R;
}

pub(super) struct RecvArm<'c, T, F> {
    pub(super) case: RecvCase<'c, T>,
    pub(super) f: F,
}

pub(super) struct SendArm<'c, T, F> {
    pub(super) case: SendCase<'c, T>,
    pub(super) f: F,
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
    pub(super) arms: Vec<Box<dyn Arm<R> + 'a>>,
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
    pub(super) fn run(mut self, wait: Option<Option<Instant>>) -> Option<R> {
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
pub(super) fn random_below(n: usize) -> usize {
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
