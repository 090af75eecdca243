//! How the running green thread (or the root) waits: the park family,
//! yielding, and the rule that a context never switches away while it
//! panics (see [`Hub::cannot_switch`] and the [guide](crate::guide::rules)).

use std::panic;
use std::time::Instant;

use super::{Hub, Kill, Killed, State, Task, Wakeup, BUDGET};
use crate::report;
use crate::timeout::Elapsed;

impl Hub {
    /// Parks the current green thread (or the root) until unparked or until
    /// `deadline`. If a [`Timeout`](crate::Timeout) of the green thread
    /// expires first: with no `deadline` the wait unwinds with its
    /// [`Elapsed`](crate::timeout::Elapsed) payload (as eventlet raises its
    /// `Timeout`); with a `deadline` it returns `TimedOut`, and the caller
    /// reports its own timeout error.
    #[inline]
    pub(crate) fn park(&self, deadline: Option<Instant>) -> Wakeup {
        if deadline.is_none() {
            if let Some(w) = self.park_plain() {
                return w;
            }
        }
        self.park_slow(deadline)
    }

    /// The common park, inlined into its caller: a green thread with no
    /// deadline and no live `Timeout` suspends right here. Returns `None`
    /// (having done nothing) when that does not apply.
    ///
    /// Why inline: the switch into the hub and back leaves the CPU's
    /// return-address predictor holding the hub's return addresses, so
    /// every frame the green thread returns through after it is resumed
    /// costs a mispredicted return. Suspending in the caller's own frame
    /// saves those.
    #[inline(always)]
    pub(super) fn park_plain(&self) -> Option<Wakeup> {
        let cur = self.cur();
        if cur.is_root() || cur.timed.get() || cur.spared.get() || std::thread::panicking() {
            return None;
        }
        if !cur.notified.replace(false) {
            cur.state.set(State::Parked);
            self.suspend(cur);
            Self::check_kill(cur);
        }
        Some(Wakeup::Unparked)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn park_slow(&self, deadline: Option<Instant>) -> Wakeup {
        match self.park_inner(deadline) {
            Ok(w) => w,
            Err(e) if deadline.is_none() => panic::resume_unwind(Box::new(e)),
            Err(_) => Wakeup::TimedOut,
        }
    }

    /// Like [`park`](Self::park), but an expired `Timeout` (or a refused
    /// wait) comes back as `Err` whatever the deadline; the common case
    /// parks in the caller's frame, as `park` does.
    #[inline(always)]
    pub(crate) fn park_result(&self, deadline: Option<Instant>) -> Result<Wakeup, Elapsed> {
        if deadline.is_none() {
            if let Some(w) = self.park_plain() {
                return Ok(w);
            }
        }
        self.park_inner(deadline)
    }

    /// Like [`park`](Self::park), but an expired `Timeout` comes back as
    /// `Err` whatever the deadline.
    pub(crate) fn park_inner(&self, deadline: Option<Instant>) -> Result<Wakeup, Elapsed> {
        let cur = self.cur();
        // Async code the loop runs inside its tokio runtime (a tokio task)
        // must not block: said clearly, before anything changes.
        #[cfg(feature = "tokio")]
        if cur.is_root() {
            self.tokio.refuse_blocking_in_async();
        }
        // Before the wake-up token: user code the hub loop runs as the root
        // must not take the root's token.
        if self.cannot_switch(cur) {
            return Self::refuse(cur, deadline);
        }
        self.drop_spare(cur);
        // A kill left pending by `yield_keeping_kill` lands here, at the
        // next blocking call (its wake-up token would only end this park).
        Self::check_kill(cur);
        if cur.notified.replace(false) {
            return Ok(Wakeup::Unparked);
        }
        let tmo = cur.earliest_timeout();
        let (deadline, by_timeout) = match (deadline, tmo) {
            (d, None) => (d, false),
            (Some(d), Some((at, ..))) if d <= at => (Some(d), false),
            (_, Some((at, ..))) => (Some(at), true),
        };
        if let (true, Some((at, id, duration))) = (by_timeout, tmo) {
            if at <= Instant::now() {
                return Err(Elapsed { id, duration });
            }
        }
        cur.state.set(State::Parked);
        if let Some(d) = deadline {
            let key = self.timers.borrow_mut().insert(d, self.current());
            cur.timer.set(Some(key));
        }
        self.switch_out(cur);
        if let Some(key) = cur.timer.take() {
            self.timers.borrow_mut().cancel(key);
        }
        Self::check_kill(cur);
        match (cur.wake.get(), tmo) {
            (Wakeup::TimedOut, Some((_, id, duration))) if by_timeout => Err(Elapsed { id, duration }),
            (w, _) => Ok(w),
        }
    }

    /// [`park_inner`](Self::park_inner) for a socket wait.
    ///
    /// A server waits on each connection's socket with a deadline once per
    /// request (the keep-alive timeout, say), and the data nearly always
    /// comes first. Arming a timer for each wait and cancelling it after
    /// cost a heap insert and, later, a heap pop per request. Instead a
    /// socket wait woken before its deadline leaves its timer armed as the
    /// green thread's spare, and the next socket wait moves that timer to
    /// its own deadline ([`Timers::rearm`], O(1)). Any other park drops the
    /// spare, and so does the end of the green thread: a spare exists only
    /// while its green thread runs or is ready, never while the hub is
    /// idle, so it cannot hold off the deadlock check; if it comes due
    /// first it fires at nobody and is gone.
    pub(crate) fn park_io(&self, deadline: Option<Instant>) -> Result<Wakeup, Elapsed> {
        let cur = self.cur();
        let Some(d) = deadline else { return self.park_inner(None) };
        if cur.is_root() || cur.timed.get() {
            return self.park_inner(deadline);
        }
        if std::thread::panicking() {
            return Self::refuse(cur, deadline);
        }
        Self::check_kill(cur);
        if cur.notified.replace(false) {
            return Ok(Wakeup::Unparked);
        }
        let reused = cur.spared.replace(false) && {
            self.spares.set(self.spares.get() - 1);
            cur.timer.get().is_some_and(|key| self.timers.borrow_mut().rearm(key, d))
        };
        if !reused {
            cur.timer.set(Some(self.timers.borrow_mut().insert(d, self.current())));
        }
        cur.state.set(State::Parked);
        self.switch_out(cur);
        if cur.timer.get().is_some() {
            // Woken before its deadline: keep the timer for the next wait.
            cur.spared.set(true);
            self.spares.set(self.spares.get() + 1);
        }
        Self::check_kill(cur);
        Ok(cur.wake.get())
    }

    /// Whether the running context may not switch away now:
    ///
    /// 1. It is panicking. std keeps its panic state (`thread::panicking`,
    ///    the panic count that poisons mutexes and aborts a panic inside a
    ///    panic hook) per OS thread, not per stack, so any green thread
    ///    run meanwhile would see this one's unwinding as its own. A green
    ///    thread therefore never switches away while it panics, and no
    ///    suspended green thread is ever panicking.
    /// 2. It is the root, and the hub loop is running on the root's stack
    ///    (the root is not `Running`): user code run by the loop itself,
    ///    such as a destructor of a closure the loop failed to spawn, must
    ///    not start the loop again inside itself.
    #[inline]
    pub(super) fn cannot_switch(&self, cur: &Task) -> bool {
        std::thread::panicking() || (cur.is_root() && cur.state.get() != State::Running)
    }

    /// The end of a wait that [`cannot_switch`](Self::cannot_switch): as if
    /// its deadline had passed. A wait with no deadline gets the refusal
    /// `Elapsed` (see [`Elapsed::is_refusal`]), which callers without an
    /// error to return unwind with, as under an expired `Timeout`.
    #[cold]
    pub(super) fn refuse(cur: &Task, deadline: Option<Instant>) -> Result<Wakeup, Elapsed> {
        if deadline.is_some() {
            return Ok(Wakeup::TimedOut);
        }
        if std::thread::panicking() && !cur.timed.get() {
            let name = cur.name.as_deref().unwrap_or("<unnamed>");
            report::stderr_line(format_args!(
                "green thread '{name}' (id {}) cannot wait while it unwinds (a green thread never switches away \
                 while it panics): the wait fails as under an expired Timeout",
                cur.id
            ));
        }
        Err(Elapsed::refusal())
    }

    /// Cancels the green thread's spare timer, if it has one.
    #[inline]
    pub(super) fn drop_spare(&self, t: &Task) {
        if t.spared.replace(false) {
            self.spares.set(self.spares.get() - 1);
            if let Some(key) = t.timer.take() {
                self.timers.borrow_mut().cancel(key);
            }
        }
    }

    /// Puts the current green thread (or the root) at the back of the run
    /// queue and lets every other ready green thread, and due I/O, run first.
    pub(crate) fn yield_now(&self) {
        if self.yield_turn() {
            Self::check_kill(self.cur());
        }
    }

    /// Yields as [`yield_now`](Self::yield_now) does, but a kill that
    /// comes meanwhile is not delivered here: it stays pending for the
    /// next blocking call. For a yield made after an operation that
    /// cannot be undone, whose result the caller must get (an item taken
    /// from a queue's waiting putter): a kill unwinding from the yield
    /// would drop it.
    pub(crate) fn yield_keeping_kill(&self) {
        self.yield_turn();
    }

    /// The turn given up by a yield; whether the caller switched away.
    fn yield_turn(&self) -> bool {
        let cur = self.cur();
        if self.cannot_switch(cur) {
            return false;
        }
        if cur.is_root() {
            // The root's turn comes straight back to it when nothing else is
            // ready, so the loop would never reach its timers and I/O: look
            // at them first, and what they wake runs before the root.
            self.tick();
        }
        cur.state.set(State::Ready);
        if self.reactor.waiters() > 0 {
            // As eventlet's `sleep(0)`: the hub polls before this one runs
            // again, and what the poll (or a due timer) wakes goes ahead.
            self.yielded.push_back(self.current());
            self.io_requested.set(true);
        } else {
            self.queue.push_back(self.current());
        }
        self.switch_out(cur);
        true
    }

    /// Spends one unit of the running green thread's I/O budget, yielding
    /// first when it is used up.
    #[inline]
    pub(crate) fn consume_budget(&self) {
        let b = self.budget.get();
        if b == 0 {
            self.yield_now();
        } else {
            self.budget.set(b - 1);
        }
    }

    /// Spends one unit of the running green thread's I/O budget if any is
    /// left; `false` (nothing spent) when it is used up, and the caller
    /// should yield. (The patcher's.)
    #[cfg(feature = "monkey-patch")]
    #[inline]
    pub(crate) fn try_consume_budget(&self) -> bool {
        let b = self.budget.get();
        if b == 0 {
            return false;
        }
        self.budget.set(b - 1);
        true
    }

    /// Leaves the current context until the hub switches back to it.
    pub(super) fn switch_out(&self, cur: &Task) {
        if cur.is_root() {
            // The loop may unwind into the root (its deadlock panic; tokio
            // refusing to start inside another runtime): the root is then
            // the one unwinding, and running again, so that its later waits
            // are not refused as if the loop still ran on its stack.
            let running = Running(cur);
            self.run();
            drop(running);
            self.budget.set(BUDGET);
        } else {
            self.suspend(cur);
        }
    }
}

/// Marks the root running again when dropped, however the loop ended.
struct Running<'a>(&'a Task);

impl Drop for Running<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.state.set(State::Running);
    }
}

impl Hub {
    /// Switches from the running green thread `cur` (not the root) to the
    /// hub loop until the loop resumes it.
    #[inline(always)]
    pub(super) fn suspend(&self, cur: &Task) {
        let y = cur.yielder.get();
        // Near where this stack is resumed (the switch saves registers
        // just below this frame), for the hub to prefetch.
        let here = 0u8;
        cur.stack_hint.set(std::ptr::addr_of!(here) as usize);
        // SAFETY: `y` was set by this green thread's body at its start and
        // points into its own stack, which lives until the body returns;
        // we are running on that stack now, inside the body.
        unsafe { (*y).suspend(()) };
    }

    #[inline]
    pub(super) fn check_kill(cur: &Task) {
        if cur.kill.get() == Kill::Pending {
            Self::deliver_kill(cur);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn deliver_kill(cur: &Task) -> ! {
        cur.kill.set(Kill::Delivered);
        panic::resume_unwind(Box::new(Killed))
    }
}
