//! A green thread's life: spawned onto the run queue (or its start timer),
//! killed, or ended by its body, which every green thread runs on its own
//! stack (see [`body`] and the [guide](crate::guide::rules)).

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use corosensei::{Coroutine, Yielder};

use super::{Hub, Kill, Killed, Packet, State, TaskRef, Typed};
use crate::report;
use crate::stack;
use crate::sys::RunningInfo;

impl Hub {
    /// Creates a green thread running `f`, puts it in the run queue (or
    /// arms its start timer) and returns it.
    pub(crate) fn spawn<T: 'static>(
        &self,
        f: impl FnOnce() -> T + 'static,
        name: Option<Box<str>>,
        stack_size: Option<usize>,
        delay: Option<Duration>,
        detached: bool,
    ) -> std::io::Result<Typed<Packet<T>>> {
        let size = match stack_size {
            None => stack::DEFAULT_STACK_SIZE,
            Some(s) => stack::checked_size(s)?,
        };
        let stack = self.stacks.borrow_mut().get(size)?;
        let (guard_lo, guard_hi) = stack.guard();
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        let task = Typed::new((self.id << 40) | n, name, RefCell::new(None), Some(&self.blocks));
        let (name_ptr, name_len) = task.name.as_deref().map_or((std::ptr::null(), 0), |s| (s.as_ptr(), s.len()));
        task.info.set(RunningInfo { guard_lo, guard_hi, name_ptr, name_len, id: task.id, stack_size: size });
        task.detached.set(detached);
        let me = task.clone();
        let coro = Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
            me.yielder.set(y);
            body(&me, f);
        });
        // SAFETY: the task is new; nothing else can see its coroutine cell.
        unsafe { *task.coro.get() = Some(coro) };
        let t: TaskRef = task.task().clone();
        t.key.set(self.tasks.borrow_mut().insert(t.clone()));
        self.count_live();
        match delay {
            Some(d) if !d.is_zero() => {
                t.state.set(State::Delayed);
                // A delay too long to represent never comes: it waits for a kill.
                if let Some(at) = crate::time::deadline_after(d) {
                    let key = self.timers.borrow_mut().insert(at, t.clone());
                    t.timer.set(Some(key));
                }
            }
            _ => self.queue.push_back(t),
        }
        // Spawned by tokio code while the loop waits in tokio.
        #[cfg(feature = "tokio")]
        self.tokio.wake_idle();
        Ok(task)
    }

    /// Kills a green thread of this hub. Returns without waiting, and
    /// whether the green thread has a kill pending (the caller yields so
    /// that it ends first).
    ///
    /// Every green thread ends on its own stack: one that has not started
    /// is made ready with the kill pending, and its body drops its closure
    /// unrun instead of calling it (see [`body`]); one that is parked is
    /// woken and unwinds from its blocking point. Killing the running green
    /// thread unwinds it at once, unless it is unwinding already.
    pub(crate) fn kill(&self, t: &TaskRef) -> bool {
        match t.state.get() {
            State::Done => false,
            _ if std::ptr::eq(t.as_ptr(), self.current.get()) => {
                if t.kill.get() == Kill::No && !std::thread::panicking() {
                    t.kill.set(Kill::Delivered);
                    panic::resume_unwind(Box::new(Killed));
                }
                false
            }
            _ if t.kill.get() != Kill::No => t.kill.get() == Kill::Pending,
            State::Delayed => {
                t.kill.set(Kill::Pending);
                if let Some(key) = t.timer.take() {
                    self.timers.borrow_mut().cancel(key);
                }
                t.state.set(State::Ready);
                self.queue.push_back(t.clone());
                #[cfg(feature = "tokio")]
                self.tokio.wake_idle();
                true
            }
            _ => {
                t.kill.set(Kill::Pending);
                self.unpark(t);
                true
            }
        }
    }

    /// A task that has already ended with `result`: no stack, never run,
    /// not among the hub's green threads. What `GreenPool::spawn` returns
    /// for a call it ran inline.
    pub(crate) fn finished<T: 'static>(&self, result: std::thread::Result<T>) -> Typed<Packet<T>> {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        let task = Typed::new((self.id << 40) | n, None, RefCell::new(Some(result)), Some(&self.blocks));
        task.state.set(State::Done);
        task
    }

    /// Kills a green thread of this hub only if it has not started (not
    /// even to drop its closure): returns whether this call did. Its body
    /// then drops the closure unrun, on its own stack, when it next runs.
    pub(crate) fn cancel(&self, t: &TaskRef) -> bool {
        if t.is_done() || t.started() || t.kill.get() != Kill::No || std::ptr::eq(t.as_ptr(), self.current.get()) {
            return false;
        }
        self.kill(t)
    }

    /// Removes a finished green thread and wakes its joiner.
    pub(super) fn retire(&self, t: &TaskRef) {
        self.drop_spare(t);
        self.tasks.borrow_mut().try_remove(t.key.get());
        self.count_live();
        if let Some(j) = t.joiner.take() {
            self.unpark(&j);
        }
        if !self.join_wakers.borrow().is_empty() {
            self.wake_join_futures(t.id);
        }
    }

    /// Wakes the future awaiting the end of green thread `id` (a
    /// `JoinHandle` turned into a future). A waker's wake is the executor's
    /// code (a push on a run queue), contained should it panic.
    #[cold]
    fn wake_join_futures(&self, id: u64) {
        let w = self.join_wakers.borrow_mut().remove(&id);
        if let Some(w) = w {
            crate::report::contain(|| w.wake());
        }
    }
}

/// A green thread's whole life on its own stack: its closure (or, if it
/// was killed before it started, the drop of its closure), its result, the
/// callbacks linked to its end, and its green-locals. Nothing here unwinds
/// into the hub: every piece of user code (the closure, destructors of what
/// it captured and returned, linked callbacks, panic payloads, the logger
/// that reports a panic) runs inside `catch_unwind`,
/// and a payload whose own destructor panics is leaked rather than dropped
/// twice. Everything runs on this green thread, which may block, never on
/// the hub loop's stack.
pub(super) fn body<T: 'static>(me: &Typed<Packet<T>>, f: impl FnOnce() -> T) {
    let slot = me.slot();
    let ran = if me.kill.get() == Kill::Pending {
        // Killed before it started: the closure is dropped unrun, here.
        me.kill.set(Kill::Delivered);
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| drop(f))) {
            report::green_panic(me, p.as_ref());
            report::drop_payload(p);
        }
        Err(Box::new(Killed) as report::Payload)
    } else {
        panic::catch_unwind(AssertUnwindSafe(|| {
            let value = f();
            if me.detached.get() {
                // Nobody takes it: drop it here, where its destructor may
                // block (a panic there is this green thread's).
                drop(value);
            } else {
                // The value goes straight to the (empty) slot: built on the
                // stack first, to outlive a call dropping the old value, it
                // was stored in pieces and loaded whole, which stalls the
                // CPU's store forwarding (~8% of an empty green thread's
                // spawn and join).
                let mut s = slot.borrow_mut();
                if s.is_none() {
                    *s = Some(Ok(value));
                }
            }
        }))
    };
    if let Err(p) = ran {
        if me.detached.get() {
            if !p.is::<Killed>() {
                report::green_panic(me, p.as_ref());
            }
            report::drop_payload(p);
        } else {
            *slot.borrow_mut() = Some(Err(p));
        }
    }
    // Green-locals are dropped here, on this green thread: their destructors
    // may block or use green-locals (which may fill the map again, hence the
    // loop). The callbacks linked to this end are kept there too, and run
    // first, when their entry is dropped (see `crate::link`). Meanwhile the
    // `JoinHandle` may be dropped: then the result it would have taken is
    // dropped here too, not later by the hub.
    loop {
        if let Some(mut locals) = me.locals.take() {
            let links = crate::link::take(&mut locals);
            // One at a time, so a destructor that panics spares the rest.
            for value in links.into_iter().chain(locals.drain().map(|(_, v)| v)) {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| drop(value))) {
                    if !p.is::<Killed>() {
                        report::green_panic(me, p.as_ref());
                    }
                    report::drop_payload(p);
                }
            }
            continue;
        }
        let orphan = if me.detached.get() { slot.borrow_mut().take() } else { None };
        match orphan {
            Some(Ok(value)) => {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| drop(value))) {
                    if !p.is::<Killed>() {
                        report::green_panic(me, p.as_ref());
                    }
                    report::drop_payload(p);
                }
            }
            Some(Err(p)) => report::drop_payload(p),
            None => break,
        }
    }
}
