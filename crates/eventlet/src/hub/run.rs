//! The hub's loop, on the root's stack: it runs a batch of ready green
//! threads, then looks at wake-ups from other OS threads, I/O and timers
//! (blocking in `epoll_wait` only when nothing is ready).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corosensei::CoroutineResult;

use super::{remote, Hub, Remote, State, Task, TaskRef, Wakeup, BATCH, BUDGET, IO_INTERVAL};
use crate::report;
use crate::sys;

impl Hub {
    /// The loop: runs until the root is popped from the run queue. Once
    /// this hub drives its tokio runtime, that runtime runs it
    /// ([`tokio::drive`](super::tokio::drive)).
    pub(super) fn run(&self) {
        loop {
            #[cfg(feature = "tokio")]
            if self.tokio.active() {
                return super::tokio::drive(self);
            }
            if self.run_batch() {
                return;
            }
            // A green thread of the batch may have started to use tokio.
            #[cfg(feature = "tokio")]
            if self.tokio.active() {
                return super::tokio::drive(self);
            }
            self.maintain();
        }
    }

    /// Runs up to a batch of ready green threads; returns `true` when it
    /// popped the root (the loop's caller goes on).
    #[inline]
    pub(super) fn run_batch(&self) -> bool {
        for _ in 0..BATCH {
            let t = self.queue.pop_front();
            let Some(t) = t else { break };
            if t.is_root() {
                return true;
            }
            if t.state.get() == State::Ready {
                self.queue.prefetch_ahead();
                self.run_task(t);
            }
            // A yield asks for I/O to be polled before it runs again;
            // that matters only if someone waits for I/O.
            if self.io_requested.get() && self.reactor.waiters() > 0 {
                break;
            }
        }
        false
    }

    #[inline(always)]
    pub(super) fn run_task(&self, t: TaskRef) {
        t.state.set(State::Running);
        self.budget.set(BUDGET);
        self.ticks.set(self.ticks.get() + 1);
        // Only this thread writes these: plain load and store, no locked add.
        let shared = &*self.shared;
        shared.switches.store(shared.switches.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        shared.running.store(t.id, Ordering::Relaxed);
        sys::set_running(t.info.as_ptr());
        let prev = self.current.replace(t.as_ptr());
        // The body catches everything its user code throws, so the resume
        // does not unwind; if it ever did, the hub must not be left pointing
        // at a green thread that is not running.
        let restore = Restore { hub: self, prev };
        // SAFETY: only this function touches the coroutine cell mutably, from
        // the hub loop (never re-entered: it runs on the root's stack, and a
        // park there while the loop runs is refused, see `cannot_switch`) or
        // from `Hub::drop`; the `&mut` lives for the resume only.
        let res = unsafe { (*t.coro.get()).as_mut().map(|c| c.resume(())) };
        drop(restore);
        if let Some(CoroutineResult::Return(())) = res {
            t.state.set(State::Done);
            // SAFETY: the coroutine returned; nothing runs on its stack.
            if let Some(coro) = unsafe { (*t.coro.get()).take() } {
                self.stacks.borrow_mut().put(coro.into_stack());
            }
            self.retire(&t);
        }
    }

    /// Between batches: remote wake-ups, I/O, timers.
    ///
    /// Everything here is the hub's own code except the logger (through
    /// [`report::log_error`], which catches its panics) and the drop of a
    /// closure another OS thread sent that could not be spawned (caught
    /// in [`drain_remote`](Self::drain_remote)); a wait in either is
    /// refused (see [`cannot_switch`](Self::cannot_switch)).
    pub(super) fn maintain(&self) {
        if self.shared.pending.load(Ordering::Acquire) {
            self.drain_remote();
        }
        let idle = self.queue.is_empty() && self.yielded.is_empty();
        if idle {
            let timeout = self.timers.borrow_mut().next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            if timeout.is_none() && self.nothing_can_wake() {
                if self.serving.get() {
                    // A hub thread (`hub::start`): its root decides what now.
                    let root = self.tasks.borrow()[0].clone();
                    self.unpark(&root);
                    return;
                }
                // Leave the root runnable for whoever catches this.
                self.cur().state.set(State::Running);
                panic!(
                    "eventlet: deadlock: the main context of this thread is parked, and no green \
                     thread, timer, I/O wait or wake-up from another thread is left to wake it"
                );
            }
            self.shared.sleeping.store(remote::IN_EPOLL, Ordering::SeqCst);
            let timeout = if self.shared.pending.load(Ordering::SeqCst) { Some(Duration::ZERO) } else { timeout };
            self.poll_io(timeout);
            self.shared.sleeping.store(remote::AWAKE, Ordering::SeqCst);
            if self.shared.pending.load(Ordering::Acquire) {
                self.drain_remote();
            }
        } else if (self.io_requested.get() && self.reactor.waiters() > 0) || self.ticks.get() >= IO_INTERVAL {
            self.poll_io(Some(Duration::ZERO));
        }
        if self.timers.borrow().len() > 0 {
            self.fire_timers();
        }
        self.queue.append(&self.yielded);
    }

    /// One look at everything that can wake green threads, without
    /// blocking: wake-ups from other threads, I/O if anyone waits for it,
    /// due timers (for a yielding root, see [`yield_now`](Self::yield_now)).
    pub(super) fn tick(&self) {
        if self.shared.pending.load(Ordering::Acquire) {
            self.drain_remote();
        }
        if self.reactor.waiters() > 0 {
            self.poll_io(Some(Duration::ZERO));
        }
        if self.timers.borrow().len() > 0 {
            self.fire_timers();
        }
        self.queue.append(&self.yielded);
    }

    /// Whether this hub's tokio runtime has tasks alive (they may still
    /// wake green threads).
    pub(super) fn tokio_tasks_alive(&self) -> bool {
        #[cfg(feature = "tokio")]
        return self.tokio.tasks_alive();
        #[cfg(not(feature = "tokio"))]
        false
    }

    pub(super) fn nothing_can_wake(&self) -> bool {
        // Order matters: an `Unparker` sends its wake-up before it is
        // dropped, so once the drop shows in `handles`, `pending` read after
        // it shows the wake-up too.
        self.reactor.waiters() == 0
            && self.futures_waiting.get() == 0
            && self.shared.handles.load(Ordering::SeqCst) == 0
            && !self.shared.pending.load(Ordering::SeqCst)
    }

    /// Polls the reactor; returns whether the event buffer came back full.
    pub(super) fn poll_io(&self, timeout: Option<Duration>) -> bool {
        self.ticks.set(0);
        self.io_requested.set(false);
        self.reactor.poll(timeout, |t| self.unpark(&t))
    }

    pub(super) fn fire_timers(&self) {
        let now = Instant::now();
        loop {
            let due = self.timers.borrow_mut().pop_due(now);
            let Some((key, t)) = due else { break };
            if t.timer.get() != Some(key) {
                continue;
            }
            t.timer.set(None);
            if t.spared.replace(false) {
                // A spare came due: nobody waits on it.
                self.spares.set(self.spares.get() - 1);
                continue;
            }
            match t.state.get() {
                State::Parked => {
                    t.state.set(State::Ready);
                    t.wake.set(Wakeup::TimedOut);
                    self.queue.push_back(t);
                }
                State::Delayed => {
                    t.state.set(State::Ready);
                    self.queue.push_back(t);
                }
                _ => {}
            }
        }
    }

    pub(super) fn drain_remote(&self) {
        self.shared.pending.store(false, Ordering::SeqCst);
        // Swapped with the spare buffer, which goes back emptied: the
        // queue keeps its capacity, and a message costs no allocation.
        let mut msgs = self.remote_spare.take();
        std::mem::swap(&mut msgs, &mut *self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()));
        for m in msgs.drain(..) {
            match m {
                Remote::Unpark { key, id } => self.unpark_key(key, id),
                Remote::WakeFuture { key, id } => crate::future::wake_here(self, key, id),
                Remote::FreeSlot(token) => self.reactor.free_slot(token),
                Remote::Kill { key, id } => self.kill_key(key, id),
                Remote::Spawn(f) => {
                    // On failure the closure is dropped unrun, here: contained.
                    let spawned = report::contain(|| self.spawn(f, None, None, None, true));
                    if let Some(Err(e)) = spawned {
                        report::log_error(format_args!("cannot start a green thread sent from another OS thread: {e}"));
                        report::stderr_line(format_args!(
                            "cannot start a green thread sent from another OS thread: {e}"
                        ));
                    }
                }
                Remote::Wake => {}
            }
        }
        // Kept unless a burst made it large.
        if msgs.capacity() <= 256 {
            self.remote_spare.set(msgs);
        }
    }

    /// Kills the green thread at `key` if it is still the one with `id`
    /// (without waiting: see [`kill`](Self::kill)).
    pub(crate) fn kill_key(&self, key: usize, id: u64) {
        let t = self.tasks.borrow().get(key).filter(|t| t.id == id && !t.is_root()).cloned();
        if let Some(t) = t {
            self.kill(&t);
        }
    }

    /// Unparks the live task at `key` if it is still the one with `id`.
    /// (`unpark` touches only the task and the run queue, so the slab
    /// stays borrowed meanwhile and its reference is not cloned.)
    #[inline]
    pub(crate) fn unpark_key(&self, key: usize, id: u64) {
        if let Some(t) = self.tasks.borrow().get(key).filter(|t| t.id == id) {
            self.unpark(t);
        }
    }
}

/// Puts the hub back in the loop's context when a green thread switches
/// back to it (see [`Hub::run_task`]).
pub(super) struct Restore<'a> {
    hub: &'a Hub,
    prev: *const Task,
}

impl Drop for Restore<'_> {
    #[inline]
    fn drop(&mut self) {
        self.hub.current.set(self.prev);
        self.hub.shared.running.store(0, Ordering::Relaxed);
        sys::set_running(std::ptr::null());
    }
}
