//! Structured concurrency: green threads that borrow from the caller's
//! stack and all end before [`scope`] returns.
//!
//! See [`scope`](crate::scope()).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write as _};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::rc::Rc;

use crate::greenthread::{Builder, GreenThread, JoinHandle};
use crate::hub::{with_hub, Killed};
use crate::report::{self, payload_text, Payload};
use crate::timeout::Elapsed;
use crate::waitlist::{Wait, WaitList};

/// What a scope's green threads and its owner share. It names no
/// borrowed type, so green threads may hold it after erasing lifetimes.
struct ScopeData {
    /// Green threads spawned and not yet ended (their closures not yet
    /// dropped).
    running: Cell<usize>,
    /// Handles of those green threads, to kill them; an entry is `None`
    /// while it is being spawned.
    threads: RefCell<BTreeMap<u64, Option<JoinHandle<()>>>>,
    /// The number of the next green thread spawned.
    next: Cell<u64>,
    /// Set by the first panic: kill every green thread, now and later.
    cancelled: Cell<bool>,
    /// Payloads of panicked green threads not joined yet, by number, in
    /// the order they panicked.
    panics: RefCell<Vec<(u64, Payload)>>,
    /// Green threads that panicked (joined or not).
    panicked: Cell<usize>,
    /// The owner waiting for `running` to reach 0.
    owner: WaitList<()>,
}

impl ScopeData {
    /// Kills every green thread of the scope that has not ended. Kills
    /// aimed at the caller while it yields to the dying are swallowed:
    /// the caller is either a dying green thread of this scope already or
    /// the owner, which is past caring.
    fn kill_all(&self) {
        self.cancelled.set(true);
        let keys: Vec<u64> = self.threads.borrow().keys().copied().collect();
        for k in keys {
            // Take the handle out so no borrow is held while `kill` yields.
            let h = self.threads.borrow_mut().get_mut(&k).and_then(Option::take);
            if let Some(h) = h {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| h.kill()));
            }
        }
    }

    /// Parks the owner until every green thread has ended. Kills,
    /// timeouts and panics (a hub deadlock) unwind out of it.
    fn wait_all(&self) {
        while self.running.get() > 0 {
            let wait = pin!(Wait::new(&self.owner, None, |_, _| {}));
            let wait = wait.enqueue();
            wait.park(None);
        }
    }

    /// Like [`wait_all`](Self::wait_all), but nothing unwinds out of it:
    /// kills are swallowed (after the first, the hub delivers no more),
    /// the owner's timeouts are held back meanwhile, and anything else
    /// (the hub found a deadlock) aborts the process, because the caller
    /// must not go on while a green thread of the scope may still run.
    fn wait_all_uninterruptibly(&self) {
        if self.running.get() == 0 {
            return;
        }
        let me = with_hub(|h| h.current());
        let held_back = me.take_timeouts();
        while self.running.get() > 0 {
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| self.wait_all())) {
                // A kill or a timeout is swallowed; anything else means the
                // green threads can never end here: a hub deadlock, or a
                // wait refused because this green thread is unwinding (the
                // scope's own code catches every unwinding, so only a last
                // resort `CancelGuard` meets that).
                let swallowed = p.is::<Killed>() || p.downcast_ref::<Elapsed>().is_some_and(|e| !e.is_refusal());
                if !swallowed {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "eventlet::scope: green threads of a scope can no longer end ({}); aborting, as they \
                         may still use the scope's borrows",
                        payload_text(p.as_ref())
                    );
                    std::process::abort();
                }
                report::drop_payload(p);
            }
        }
        me.restore_timeouts(held_back);
    }
}

/// A scope to spawn green threads in; see [`scope`].
///
/// Like [`std::thread::Scope`], it has two lifetimes: `'scope`, that of
/// the scope itself (green threads may borrow the `&'scope Scope` to spawn
/// more), and `'env`, that of everything the green threads borrow from
/// outside.
pub struct Scope<'scope, 'env: 'scope> {
    data: Rc<ScopeData>,
    /// Invariant in `'scope` and `'env`, as `std::thread::Scope` is.
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// The handle of a green thread spawned in a [`Scope`]: join it to get
/// its result, or kill it. Dropping it does not detach anything: the
/// scope joins every green thread anyway.
///
/// It cannot leave its scope, nor its OS thread:
///
/// ```compile_fail
/// let h = eventlet::scope(|s| s.spawn(|| 1));
/// ```
///
/// ```compile_fail
/// eventlet::scope(|s| {
///     let h = s.spawn(|| 1);
///     std::thread::spawn(move || h.join());
/// });
/// ```
pub struct ScopedJoinHandle<'scope, T> {
    packet: Rc<Packet<T>>,
    key: u64,
    thread: GreenThread,
    data: Rc<ScopeData>,
    _scope: PhantomData<&'scope ()>,
}

/// Where a scoped green thread's result lands.
struct Packet<T> {
    /// `Err(())`: it panicked (the payload is in the scope's `panics`
    /// until joined) or was killed (`killed`).
    result: RefCell<Option<Result<T, ()>>>,
    killed: Cell<bool>,
    joiners: WaitList<()>,
}

/// Creates a scope, calls `f` with it, and before returning waits until
/// every green thread spawned in the scope has ended; those may borrow
/// anything that outlives the `scope` call. Returns what `f` returns.
///
/// ```
/// let mut words = vec!["green", "threads"];
/// let total = std::cell::Cell::new(0);
/// eventlet::scope(|s| {
///     for w in &words {
///         s.spawn(|| {
///             eventlet::yield_now();
///             total.set(total.get() + w.len()); // borrows `words` and `total`
///         });
///     }
/// });
/// // Every green thread has ended: the borrows are over.
/// words.push("done");
/// assert_eq!(total.get(), 12);
/// ```
///
/// # Cancellation
///
/// A green thread of the scope that panics kills the others (those that
/// have not started never do; those that are blocked unwind from their
/// blocking point) and any it spawns later. The body of the scope runs on
/// (a [`ScopedJoinHandle::join`] tells it of a killed green thread), and
/// when it is done and every green thread has ended, `scope` re-raises
/// the first panic. If the body itself panics, or the green thread that
/// runs `scope` is killed or its [`Timeout`](crate::Timeout) fires while it
/// waits for the scope's green threads, those are killed, `scope` waits
/// for them, and then the panic (or kill, or timeout) goes on.
///
/// Waiting after a cancellation cannot itself be interrupted: a further
/// kill of the waiting green thread is ignored and its timeouts are held
/// back until the scope's green threads have ended (a destructor that
/// blocks forever therefore blocks the scope forever). If nothing can ever
/// end them (the hub finds itself deadlocked) the process aborts, since
/// `scope` must not return while they might still use its borrows.
///
/// Scopes nest, and a green thread of a scope may spawn more green threads
/// in it through the `&Scope` it borrows.
///
/// # Panics
///
/// Re-raises the panic of `f`, or else the first panic of a green thread
/// of the scope that was not [joined](ScopedJoinHandle::join) (or, if all
/// those were joined, panics with a message saying that one panicked).
/// A kill or an expired [`Timeout`](crate::Timeout) of the calling green
/// thread goes on unwinding once the scope's green threads have ended.
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        data: Rc::new(ScopeData {
            running: Cell::new(0),
            threads: RefCell::new(BTreeMap::new()),
            next: Cell::new(0),
            cancelled: Cell::new(false),
            panics: RefCell::new(Vec::new()),
            panicked: Cell::new(0),
            owner: WaitList::new(),
        }),
        scope: PhantomData,
        env: PhantomData,
    };
    // Belt and braces: everything below catches unwinding, but if anything
    // still unwinds past this point the guard cancels and waits first.
    let guard = CancelGuard { data: &scope.data };
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    // The body is done: wait for the green threads. A kill, a timeout or a
    // hub deadlock while waiting cancels them instead.
    let result = result.and_then(|v| panic::catch_unwind(AssertUnwindSafe(|| scope.data.wait_all())).map(|()| v));
    if result.is_err() {
        scope.data.kill_all();
    }
    drop(guard);
    // Every green thread of the scope has ended.
    debug_assert_eq!(scope.data.running.get(), 0);
    match result {
        Err(p) => panic::resume_unwind(p),
        Ok(v) => {
            let first = {
                let mut panics = scope.data.panics.borrow_mut();
                (!panics.is_empty()).then(|| panics.remove(0).1)
            };
            match first {
                Some(p) => panic::resume_unwind(p),
                None if scope.data.panicked.get() > 0 => panic!("eventlet::scope: a scoped green thread panicked"),
                None => v,
            }
        }
    }
}

/// Kills what is left of a scope and waits for it, however `scope` is
/// left.
struct CancelGuard<'a> {
    data: &'a ScopeData,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.data.running.get() > 0 {
            self.data.kill_all();
        }
        self.data.wait_all_uninterruptibly();
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a green thread in the scope; it may borrow anything that
    /// outlives the scope. If the scope has been cancelled (a green thread
    /// of it panicked) the new one is killed at once and never runs.
    ///
    /// # Panics
    ///
    /// Panics if no stack can be had; see [`spawn_with`](Self::spawn_with).
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + 'scope,
        T: 'scope,
    {
        self.spawn_with(Builder::new(), f).unwrap_or_else(|e| panic!("eventlet::scope: spawn: {e}"))
    }

    /// Spawns a green thread configured by `builder` (name, stack size)
    /// in the scope.
    ///
    /// # Errors
    ///
    /// As [`Builder::spawn`]; `f` is dropped unrun then.
    pub fn spawn_with<F, T>(&'scope self, builder: Builder, f: F) -> io::Result<ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + 'scope,
        T: 'scope,
    {
        let data = &self.data;
        let key = data.next.get();
        data.next.set(key + 1);
        data.threads.borrow_mut().insert(key, None);
        let packet = Rc::new(Packet { result: RefCell::new(None), killed: Cell::new(false), joiners: WaitList::new() });
        data.running.set(data.running.get() + 1);
        let job =
            Job { f: Some(f), done: Done { data: data.clone(), packet: Some(packet.clone()), key, panicked: None } };
        let main: Box<dyn FnOnce() + 'scope> = Box::new(move || job.run());
        // SAFETY: only the lifetime changes (`'scope` to `'static`), so the
        // layout is the same. Nothing the closure borrows is used after it
        // ends, because:
        // 1. `scope` does not return, not even by unwinding, until every
        //    green thread spawned in it has ended: `running` counts them
        //    and reaches 0 only when a closure (with everything it
        //    captured, and its result once joined or dropped) is dropped,
        //    see `Done::drop`. `scope` catches every unwinding of the body
        //    and of its own wait; if either unwinds, it kills the green
        //    threads and waits for them in a way that no kill or timeout
        //    interrupts (`wait_all_uninterruptibly`), and aborts the
        //    process if the hub says they can never end. The same wait runs
        //    in `CancelGuard::drop` as a last resort.
        // 2. A green thread killed before it starts, or one whose spawn
        //    fails below, drops its closure unrun; that drop runs `Done`
        //    too, while `scope` is still waiting, and touches nothing but
        //    the captures (alive for `'env`) and the `'static` `ScopeData`.
        // 3. The handle returned cannot outlive `'scope` (its type says so,
        //    and the higher-ranked `'scope` of `scope`'s argument keeps it
        //    and `&Scope` inside the body), and forgetting it changes
        //    nothing: the join is counted in `ScopeData`, not in handles.
        //    The `Rc`s a leaked handle keeps name no borrowed type except
        //    the packet's `T`, which is then never read nor dropped.
        // 4. A green thread parked when its OS thread exits is leaked with
        //    its stack, never resumed or unwound (see `hub`), so neither
        //    it nor the leaked owner's stack frame is ever touched again.
        //    A scoped one that has not started then is leaked too, closure
        //    and all (`borrows`, set below before anything can run it):
        //    what it borrows may be a thread-local destroyed by then.
        let main: Box<dyn FnOnce() + 'static> = unsafe { std::mem::transmute(main) };
        let h = builder.spawn(main);
        let h = match h {
            Ok(h) => h,
            Err(e) => {
                data.threads.borrow_mut().remove(&key);
                return Err(e);
            }
        };
        h.task.task().borrows.set(true);
        let thread = h.thread();
        if data.cancelled.get() {
            // Killed before it starts: the closure is dropped unrun now.
            h.kill();
        } else if let Some(slot) = data.threads.borrow_mut().get_mut(&key) {
            *slot = Some(h);
        }
        Ok(ScopedJoinHandle { packet, key, thread, data: data.clone(), _scope: PhantomData })
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.data.running.get())
            .field("cancelled", &self.data.cancelled.get())
            .finish_non_exhaustive()
    }
}

/// A scoped green thread's closure and its end-of-life bookkeeping,
/// dropped in that order (fields drop in declaration order).
struct Job<F, T> {
    f: Option<F>,
    done: Done<T>,
}

impl<F: FnOnce() -> T, T> Job<F, T> {
    fn run(mut self) {
        let Some(f) = self.f.take() else { return };
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        let r = match r {
            Ok(v) => Ok(v),
            Err(p) if p.is::<Killed>() => {
                if let Some(pk) = &self.done.packet {
                    pk.killed.set(true);
                }
                Err(())
            }
            Err(p) => {
                self.done.panicked = Some(p);
                Err(())
            }
        };
        if let Some(pk) = &self.done.packet {
            *pk.result.borrow_mut() = Some(r);
        }
        // `self` drops here: `f` is gone already, then `Done` runs.
    }
}

/// Ends a scoped green thread's life in its scope, whether its closure
/// ran or was dropped unrun.
struct Done<T> {
    data: Rc<ScopeData>,
    packet: Option<Rc<Packet<T>>>,
    key: u64,
    panicked: Option<Payload>,
}

impl<T> Drop for Done<T> {
    fn drop(&mut self) {
        let data = &*self.data;
        data.threads.borrow_mut().remove(&self.key);
        if let Some(packet) = self.packet.take() {
            let mut result = packet.result.borrow_mut();
            if result.is_none() {
                // Dropped unrun: killed before it started.
                packet.killed.set(true);
                *result = Some(Err(()));
            }
            drop(result);
            packet.joiners.grant_all();
            // The last owner of the packet drops the result here, while
            // the scope still counts this green thread.
            drop(packet);
        }
        let panicked = self.panicked.take();
        if let Some(p) = panicked {
            data.panicked.set(data.panicked.get() + 1);
            data.panics.borrow_mut().push((self.key, p));
        }
        data.running.set(data.running.get() - 1);
        if data.running.get() == 0 {
            data.owner.grant_all();
        }
        if data.panicked.get() > 0 && !data.cancelled.get() {
            // The first panic cancels the rest. No borrow of the closure's
            // captures is used from here on.
            data.kill_all();
        }
    }
}

impl<'scope, T> ScopedJoinHandle<'scope, T> {
    /// Waits for the green thread to end and returns its result: `Ok` with
    /// its value, or `Err` with its panic payload ([`Killed`] if it was
    /// killed, by [`kill`](Self::kill) or by the scope's cancellation). A
    /// panic joined here is still re-raised by [`scope`], as a panic
    /// saying a green thread panicked.
    ///
    /// # Panics
    ///
    /// Panics if a green thread tries to join itself.
    pub fn join(self) -> std::thread::Result<T> {
        assert!(self.thread != crate::current(), "eventlet: a green thread cannot join itself");
        while self.packet.result.borrow().is_none() {
            let wait = pin!(Wait::new(&self.packet.joiners, None, |_, _| {}));
            let wait = wait.enqueue();
            wait.park(None);
        }
        match self.packet.result.borrow_mut().take() {
            Some(Ok(v)) => Ok(v),
            _ if self.packet.killed.get() => Err(Box::new(Killed)),
            _ => {
                let mut panics = self.data.panics.borrow_mut();
                match panics.iter().position(|(k, _)| *k == self.key) {
                    Some(i) => Err(panics.remove(i).1),
                    None => Err(Box::new("eventlet: the payload of a scoped green thread was lost")),
                }
            }
        }
    }

    /// Kills the green thread as [`JoinHandle::kill`] does; its `join`
    /// returns `Err` with a [`Killed`] payload. A kill is not a panic: it
    /// cancels nothing else.
    pub fn kill(&self) {
        let h = self.data.threads.borrow_mut().get_mut(&self.key).and_then(Option::take);
        if let Some(h) = h {
            h.kill();
            // Still running a destructor: keep it killable by the scope.
            if !h.is_finished() {
                if let Some(slot) = self.data.threads.borrow_mut().get_mut(&self.key) {
                    *slot = Some(h);
                }
            }
        }
    }

    /// Whether the green thread has ended.
    pub fn is_finished(&self) -> bool {
        self.packet.result.borrow().is_some()
    }

    /// A handle to the green thread.
    pub fn thread(&self) -> &GreenThread {
        &self.thread
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle").field("thread", &self.thread).finish()
    }
}
