//! Timeouts for whole blocks of green code (eventlet's `Timeout`).
//!
//! While a [`Timeout`] guard lives, every blocking operation of the green
//! thread that started it fails once its deadline passes:
//!
//! - green I/O returns an `io::Error` of kind `TimedOut` whose inner error
//!   is the [`Elapsed`];
//! - waits that have a deadline of their own (`park_deadline`, the
//!   `*_timeout` methods of the coordination types) return their timeout
//!   error;
//! - waits without one (`join`, `sleep`, `park`, a pool's `spawn`, a
//!   queue's `get`) unwind with an [`Elapsed`] payload, as eventlet raises
//!   its `Timeout` exception; [`with_timeout`] catches its own and turns it
//!   into `Err`.
//!
//! Timeouts nest: the earliest deadline wins, and the [`Elapsed`] says which
//! timeout fired, so an inner [`with_timeout`] lets an outer one's pass on.
//! A loop that computes without blocking is not interrupted.
//!
//! A wait whose outcome arrives together with the deadline keeps it: a
//! `put` whose item a getter took, a `join` whose green thread finished, a
//! lock or permit granted, a message handed over, all return success, and
//! the expired timeout fires at the next blocking call instead. Nothing is
//! delivered and then reported as timed out.
//!
//! # While unwinding
//!
//! A green thread never switches away while it panics (being killed, or
//! unwinding from a panic or an [`Elapsed`]): std keeps the panic state per
//! OS thread, so every other green thread would see it as its own (see
//! `DESIGN.md`). A blocking call made then, from a destructor, does not
//! wait: it behaves as under a timeout that has already expired. I/O fails
//! with `TimedOut`, `*_timeout` waits return their timeout error, `sleep`
//! and `yield_now` return at once, `join` returns `Err` with a refusal
//! payload, `tpool::execute` runs its job on the calling OS thread, and a
//! wait that has no way to report failure (`Lock::lock`, `Queue::get`, ...)
//! unwinds with an [`Elapsed`] for which [`Elapsed::is_refusal`] is true.
//! In a destructor running during unwinding, Rust aborts the process if
//! such a panic escapes it, so a destructor that must block wraps the call
//! in [`with_timeout`] (which returns the refusal as `Err`) or uses its
//! `try_`/`_timeout` form. The root context follows the same rule.
//!
//! ```
//! use std::time::Duration;
//!
//! let r = eventlet::with_timeout(Duration::from_millis(10), || {
//!     eventlet::sleep(Duration::from_secs(60));
//!     "finished"
//! });
//! assert!(r.is_err());
//! assert_eq!(eventlet::hub::stats().timers, 0);
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::hub::{with_hub, TaskRef};

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
}

/// The error (and unwinding payload) of an expired [`Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    pub(crate) id: u64,
    pub(crate) duration: Duration,
}

impl Elapsed {
    /// The `Elapsed` of a wait that was refused because its green thread
    /// could not switch away (it was panicking); see
    /// [`is_refusal`](Self::is_refusal).
    pub(crate) const fn refusal() -> Elapsed {
        Elapsed { id: 0, duration: Duration::ZERO }
    }

    /// Whether no timeout fired, but a wait could not happen: its green
    /// thread was unwinding (from a panic or a kill), and a green thread
    /// never switches away while it panics (see the [module docs](self)).
    /// Its [`id`](Self::id) is 0 and its duration zero.
    pub fn is_refusal(&self) -> bool {
        self.id == 0
    }

    /// How long the timeout that fired was.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Which timeout fired (the [`Timeout::id`] of its guard).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_refusal() {
            f.write_str("cannot wait while unwinding (a green thread never switches away while it panics)")
        } else {
            write!(f, "timed out after {:?} (eventlet timeout #{})", self.duration, self.id)
        }
    }
}

impl std::error::Error for Elapsed {}

/// A deadline for every blocking operation of the current green thread,
/// until the guard is dropped. See the [module docs](self).
///
/// It belongs to the green thread that started it, so it is not `Send`:
///
/// ```compile_fail
/// let t = eventlet::Timeout::start(std::time::Duration::from_secs(1));
/// std::thread::spawn(move || drop(t));
/// ```
pub struct Timeout {
    id: u64,
    deadline: Option<Instant>,
    duration: Duration,
    task: TaskRef,
    _not_send: PhantomData<*const ()>,
}

impl Timeout {
    /// Starts a timeout of `dur` for the current green thread (or root).
    ///
    /// A duration too long to represent as an [`Instant`] (such as
    /// `Duration::MAX`) never fires.
    pub fn start(dur: Duration) -> Timeout {
        let id = NEXT_ID.with(|n| n.replace(n.get() + 1));
        let deadline = crate::time::deadline_after(dur);
        let task = with_hub(|h| h.current());
        if let Some(at) = deadline {
            task.add_timeout((at, id, dur));
        }
        Timeout { id, deadline, duration: dur, task, _not_send: PhantomData }
    }

    /// This timeout's number, as in [`Elapsed::id`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When it fires (`None`: never, its duration being too long to
    /// represent).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        crate::time::expired(self.deadline)
    }

    /// Stops the timeout (same as dropping it).
    pub fn cancel(self) {}
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.task.remove_timeout(self.id);
        #[cfg(all(feature = "monkey-patch", target_os = "linux"))]
        if !std::thread::panicking() {
            // Not asked for through `with_timeout`: forget it.
            let _ = crate::patcher::take_cut_short(self.id);
        }
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout").field("id", &self.id).field("duration", &self.duration).finish()
    }
}

/// Runs `f` with a [`Timeout`] of `dur`; returns `Err(Elapsed)` if that
/// timeout unwound it, or if a wait in `f` was refused because the green
/// thread is unwinding ([`Elapsed::is_refusal`]). Another timeout's expiry
/// (an outer one) passes on through; so do panics.
pub fn with_timeout<R>(dur: Duration, f: impl FnOnce() -> R) -> Result<R, Elapsed> {
    let t = Timeout::start(dur);
    let id = t.id;
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    // A patched call that this timeout cut short failed instead of
    // unwinding (it was inside C), and the closure returned afterwards.
    #[cfg(all(feature = "monkey-patch", target_os = "linux"))]
    let cut = crate::patcher::take_cut_short(id);
    #[cfg(not(all(feature = "monkey-patch", target_os = "linux")))]
    let cut = false;
    drop(t);
    match r {
        Ok(_) if cut => Err(Elapsed { id, duration: dur }),
        Ok(v) => Ok(v),
        Err(p) => match p.downcast::<Elapsed>() {
            Ok(e) if e.id == id || e.is_refusal() => Err(*e),
            Ok(e) => panic::resume_unwind(e),
            Err(p) => panic::resume_unwind(p),
        },
    }
}

/// The live [`Timeout`]s of one green thread: (deadline, id, duration).
/// Kept in its task, where the hub reads the earliest on every park that
/// has any (a flag beside it says whether it has any).
#[derive(Default)]
pub(crate) struct Deadlines(RefCell<Vec<(Instant, u64, Duration)>>);

impl Deadlines {
    /// Whether the `Timeout` numbered `id` is among them.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.0.borrow().iter().any(|t| t.1 == id)
    }

    /// The earliest.
    pub(crate) fn earliest(&self) -> Option<(Instant, u64, Duration)> {
        self.0.borrow().iter().copied().min_by_key(|t| t.0)
    }

    /// Adds one; returns whether any is live (yes).
    pub(crate) fn add(&self, t: (Instant, u64, Duration)) -> bool {
        self.0.borrow_mut().push(t);
        true
    }

    /// Removes the one numbered `id`; returns whether any is left.
    pub(crate) fn remove(&self, id: u64) -> bool {
        let mut ts = self.0.borrow_mut();
        ts.retain(|t| t.1 != id);
        !ts.is_empty()
    }

    /// Takes them all away (to hold them back a while).
    pub(crate) fn take(&self) -> Deadlines {
        Deadlines(RefCell::new(std::mem::take(&mut *self.0.borrow_mut())))
    }

    /// Gives back what [`take`](Self::take) took; returns whether any is live.
    pub(crate) fn restore(&self, held_back: Deadlines) -> bool {
        let mut ts = self.0.borrow_mut();
        ts.extend(held_back.0.into_inner());
        !ts.is_empty()
    }
}
