//! How a channel operation waits: the signal a waiter parks on, which one
//! channel claims (or the waiter aborts at its deadline), and the cases a
//! waiter registers with each channel it waits on (one for a plain `send`
//! or `recv`, several for a [`Select`](super::Select)).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::hub::{Unparker, Wakeup};
use crate::time::expired;

// ---------------------------------------------------------------------------
// Waiters

/// The signal's state while its owner waits.
pub(super) const WAITING: usize = 0;
/// The owner gave up (timed out, was killed, or found a case ready while
/// registering).
pub(super) const ABORTED: usize = 1;

/// How a wait ended: the state of a signal that is no longer `WAITING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Aborted,
    /// Case `op` was served, or its channel was disconnected.
    Selected {
        op: usize,
        disconnected: bool,
    },
}

pub(super) fn decode(state: usize) -> Outcome {
    match state {
        WAITING => unreachable!("decode of a waiting signal"),
        ABORTED => Outcome::Aborted,
        s => Outcome::Selected { op: (s - 2) / 2, disconnected: (s - 2) % 2 == 1 },
    }
}

/// One waiting green thread (or root), registered on one or more channels.
pub(super) struct Signal {
    pub(super) state: AtomicUsize,
    pub(super) unparker: Unparker,
}

impl Signal {
    pub(super) fn new() -> Arc<Signal> {
        Arc::new(Signal { state: AtomicUsize::new(WAITING), unparker: current().unparker() })
    }

    /// Marks case `op` as the one that completed. Fails if the waiter was
    /// already served elsewhere or gave up. Called under the lock of the
    /// channel the waiter is registered on.
    pub(super) fn claim(&self, op: usize, disconnected: bool) -> bool {
        let to = 2 + 2 * op + usize::from(disconnected);
        self.state.compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The owner gives up; fails with the outcome if someone claimed first.
    pub(super) fn abort(&self) -> Result<(), Outcome> {
        self.state.compare_exchange(WAITING, ABORTED, Ordering::AcqRel, Ordering::Acquire).map(drop).map_err(decode)
    }

    pub(super) fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }
}

/// Unparks a claimed waiter (after the channel's lock is released).
pub(super) fn wake(s: Option<Arc<Signal>>) {
    if let Some(s) = s {
        s.unparker.unpark();
    }
}

pub(super) struct RecvEntry {
    pub(super) signal: Arc<Signal>,
    pub(super) op: usize,
}

/// A sender waiting with its message.
pub(super) struct SendEntry<T> {
    pub(super) signal: Arc<Signal>,
    pub(super) op: usize,
    pub(super) value: T,
}

// ---------------------------------------------------------------------------
// Waiting on one or more operations

/// One operation a waiter may register for.
pub(super) trait Case {
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

pub(super) struct RecvCase<'c, T> {
    pub(super) chan: &'c Chan<T>,
    pub(super) outcome: Option<Result<T, RecvError>>,
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

pub(super) struct SendCase<'c, T> {
    pub(super) chan: &'c Chan<T>,
    /// The message while it is neither sent nor in the channel's list of
    /// waiting senders.
    pub(super) value: Option<T>,
    /// `Ok` once sent, `Err` with the message on disconnection.
    pub(super) outcome: Option<Result<(), T>>,
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
pub(super) struct Registered<'r, 'c> {
    pub(super) cases: &'r mut [&'c mut dyn Case],
    pub(super) signal: &'r Arc<Signal>,
    pub(super) live: bool,
}

impl Registered<'_, '_> {
    pub(super) fn deregister_except(&mut self, keep: Option<usize>) {
        for (i, c) in self.cases.iter_mut().enumerate() {
            if Some(i) != keep {
                c.deregister(self.signal, i);
            }
        }
    }

    pub(super) fn finish(&mut self, outcome: Outcome) -> Option<usize> {
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
pub(super) fn block(
    cases: &mut [&mut dyn Case],
    deadline: Option<Instant>,
    try_first: bool,
    start: usize,
) -> Option<usize> {
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
pub(super) fn wait_signal(signal: &Signal, deadline: Option<Instant>) -> Outcome {
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
