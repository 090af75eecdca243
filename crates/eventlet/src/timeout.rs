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

use std::cell::Cell;
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
        write!(f, "timed out after {:?} (eventlet timeout #{})", self.duration, self.id)
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
    deadline: Instant,
    duration: Duration,
    task: TaskRef,
    _not_send: PhantomData<*const ()>,
}

impl Timeout {
    /// Starts a timeout of `dur` for the current green thread (or root).
    pub fn start(dur: Duration) -> Timeout {
        let id = NEXT_ID.with(|n| n.replace(n.get() + 1));
        let deadline =
            Instant::now().checked_add(dur).unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
        let task = with_hub(|h| h.current());
        task.add_timeout((deadline, id, dur));
        Timeout { id, deadline, duration: dur, task, _not_send: PhantomData }
    }

    /// This timeout's number, as in [`Elapsed::id`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When it fires.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Stops the timeout (same as dropping it).
    pub fn cancel(self) {}
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.task.remove_timeout(self.id);
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout").field("id", &self.id).field("duration", &self.duration).finish()
    }
}

/// Runs `f` with a [`Timeout`] of `dur`; returns `Err(Elapsed)` if that
/// timeout unwound it. Another timeout's expiry (an outer one) passes on
/// through; so do panics.
pub fn with_timeout<R>(dur: Duration, f: impl FnOnce() -> R) -> Result<R, Elapsed> {
    let t = Timeout::start(dur);
    let id = t.id;
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    drop(t);
    match r {
        Ok(v) => Ok(v),
        Err(p) => match p.downcast::<Elapsed>() {
            Ok(e) if e.id == id => Err(*e),
            Ok(e) => panic::resume_unwind(e),
            Err(p) => panic::resume_unwind(p),
        },
    }
}
