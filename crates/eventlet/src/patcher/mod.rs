//! Greening the world: eventlet's `monkey_patch()` for Rust.
//!
//! With the cargo feature `monkey-patch`, this crate defines the libc
//! functions that block (see the [table](#what-is-patched)) in the final
//! binary, where they take the place of libc's. Each one asks first whether
//! the patch is on and whether its caller runs on a green thread; if not,
//! it calls libc's own function and nothing else. After
//! [`monkey_patch()`], a call made on a green thread that would block parks
//! that green thread instead of its OS thread, so unmodified sync crates
//! (`redis`, `ureq`, `std::net`) and C libraries (libpq) run green.
//!
//! ```no_run
//! // first thing in main:
//! eventlet::monkey_patch();
//! let pool = eventlet::GreenPool::new(100);
//! for _ in 0..100 {
//!     // std::thread::sleep now parks only this green thread
//!     pool.spawn_n(|| std::thread::sleep(std::time::Duration::from_secs(1)));
//! }
//! pool.waitall(); // about one second, not a hundred
//! ```
//!
//! The [guide](crate::guide::greening) tells how to turn it on, how to
//! check that it works, and its caveats. This page is the reference.
//!
//! # What is patched
//!
//! | call | on a green thread |
//! | --- | --- |
//! | `read`, `readv`, `write`, `writev` | on sockets the same call as `recv`/`recvmsg`/`send`/`sendmsg` with `MSG_DONTWAIT`; on pipes `preadv2`/`pwritev2` with `RWF_NOWAIT`; park until ready and retry. Other files, and pipes whose kernel refuses `RWF_NOWAIT` (named FIFOs): the original |
//! | `recv`, `recvfrom`, `recvmsg`, `send`, `sendto`, `sendmsg` | the call with `MSG_DONTWAIT` added; park until ready and retry |
//! | `accept`, `accept4` | park until the listener is readable, then the call |
//! | `connect` | started non-blocking, park until writable, `SO_ERROR` |
//! | `poll`, `ppoll`, `select`, `pselect` | the call without waiting; if nothing is ready, park until one of the descriptors is, or the timeout |
//! | `nanosleep`, `clock_nanosleep`, `usleep`, `sleep` | park until the time |
//! | `getaddrinfo` | run on the [`tpool`](crate::tpool) (a numeric address: at once) |
//! | `close`, `dup2`, `dup3`, `close_range`, `closefrom`, `fclose`, `pclose`, `freopen`, `freopen64` | bookkeeping, on every thread: forget the descriptor's kind; wake green threads waiting on it |
//! | `sigaction`, `signal` (and `__sigaction`, `bsd_signal`, `ssignal`, `sysv_signal`, `__sysv_signal`, `sigset`) | on every thread: the handler runs behind a wrapper that turns the patch off on its thread while it runs (see *Soundness*); the handler is what they report back |
//!
//! The `_FORTIFY_SOURCE` variants `__read_chk`, `__recv_chk`,
//! `__recvfrom_chk` and `__poll_chk` are patched as their plain forms.
//!
//! Like eventlet's own sockets, patched socket and pipe calls spend the
//! green thread's I/O [budget](crate::hub::BUDGET): a green thread whose
//! patched I/O never blocks still lets the others run every 128 calls.
//!
//! A blocking call behaves as the kernel's: a write on a blocking socket
//! or pipe writes everything before it returns; `MSG_WAITALL` waits for
//! the whole buffer on a stream; `SO_RCVTIMEO`/`SO_SNDTIMEO` end the call
//! as the kernel would (`EAGAIN`, or the count so far; `EINPROGRESS` for
//! `connect`); `select` writes the time left back.
//!
//! # Where the original runs, exactly
//!
//! A patched function calls libc's own (found once with
//! `dlsym(RTLD_NEXT, ..)`) with the caller's arguments and nothing else
//! done, when any of these holds:
//!
//! - [`monkey_patch()`] was not called, or this is a child process after
//!   `fork` (the patch turns itself off there: the child shares its
//!   parent's poller);
//! - the OS thread has no hub (a plain `std::thread`), is a
//!   [`tpool`](crate::tpool) worker, runs a signal handler, or runs its
//!   hub loop (the hub's own calls, mio's included, never park);
//! - the calling green thread is unwinding (`std::thread::panicking()`);
//! - the descriptor is not a socket or pipe (regular files, terminals,
//!   eventfds, epoll descriptors), is a pipe on which the kernel refuses
//!   `RWF_NOWAIT` (named FIFOs, on Linux 6.18), or is one of eventlet's
//!   own (`eventlet::net`'s sockets, green pipes: non-blocking, waited on
//!   by their owner);
//! - the descriptor is standard output or error (1 or 2), whatever file
//!   it is: `println!` and `eprintln!` write under a lock per OS thread
//!   that lets that thread in again (C's stdio likewise), so a green
//!   thread that parked or yielded in there would let another one of its
//!   thread into the lock (std then panics, C's stdio corrupts its
//!   buffer). A slow reader of a piped stdout holds up the whole hub, as
//!   without the patch;
//! - a `ppoll`/`pselect` with a signal mask, a `clock_nanosleep` on a CPU
//!   clock, a zero timeout, an out-of-range argument.
//!
//! On a green thread a descriptor the user made non-blocking still gets
//! `EAGAIN`: before parking, the hook reads the descriptor's flags
//! (`F_GETFL`) and returns the failure if `O_NONBLOCK` is set. The first
//! try is the same call on such a descriptor, so its result is the
//! original's. `errno` is the original's on failure, and unchanged on
//! success.
//!
//! # Soundness
//!
//! 1. *No descriptor's state is changed for good.* Non-blocking behaviour
//!    is asked per call (`MSG_DONTWAIT`, `RWF_NOWAIT`), never by setting
//!    `O_NONBLOCK` on a file that a plain thread, a child process or a C
//!    library's `FILE*` may share. The one exception is `connect`, which
//!    has no per-call flag: the socket is non-blocking from just before the
//!    call to just after it returns `EINPROGRESS`, two system calls later;
//!    a socket being connected is not yet shared in practice.
//!    `accept` has no per-call flag either, and there is no such window:
//!    it is called only once `poll` said a connection waits (see the
//!    caveat in the guide about listeners shared across processes).
//! 2. *A hook never re-enters the hub.* It parks only where the hub's own
//!    green threads park (through [`trampoline`](crate::hub::trampoline)'s
//!    machinery), only from a green thread or the root's own code, never
//!    from the hub loop (checked on every call by the hub's state, not a
//!    flag to forget). Everything a hook calls itself is an original
//!    (`orig::*`) or a call that is not patched (`fstat`, `fcntl`,
//!    `getsockopt`, `epoll_ctl`, `epoll_wait`), so it cannot recurse.
//! 3. *Nothing unwinds through C.* A kill or a [`Timeout`](crate::Timeout)
//!    reaches a green thread parked inside a hook as an unwinding in the
//!    hub's code; the hook catches it before it can leave the
//!    `extern "C"` function, and fails the call instead: `-1` with
//!    `ECANCELED` (kill) or `ETIMEDOUT` (Timeout) for I/O and `poll`,
//!    `EAI_SYSTEM` for `getaddrinfo`, an early end for the sleeps (their
//!    callers retry `EINTR`, std's `thread::sleep` among them). A C
//!    library sees an ordinary failed call and unwinds its own stack by
//!    returning errors. The Timeout stays expired, and the kill is armed
//!    again (with a wake-up queued for it): each unwinds the green thread
//!    at its next eventlet blocking point, in Rust, and [`with_timeout`]
//!    reports a timeout that cut a patched call short even when the
//!    closure returns. Until then, patched calls of that green thread do
//!    not wait: they fail at once.
//! 4. *No context goes stale unseen.* The blocking mode and the
//!    timeouts are read from the kernel when needed, never copied; the one
//!    thing cached, a descriptor's kind (socket, pipe, other), is forgotten
//!    by the patched closing calls, the closes libc makes inside `pclose`
//!    and `freopen` included. A descriptor closed around them (a raw
//!    `syscall(SYS_close)`, io_uring) can leave a stale kind for its
//!    number. The kind is a hint for the fast path only: nothing parks on
//!    it unchecked. A stale *socket* is noticed by the call itself
//!    (`ENOTSOCK`) and looked up again, and `accept` asks the kernel
//!    whether the socket listens before it parks. A stale *pipe* is
//!    looked at again (`fstat`) before any wait and whenever the kernel
//!    refuses `RWF_NOWAIT`, which is judged per descriptor, never for
//!    the process: on what is now a regular file it can only make one
//!    read shorter than the original would (the part in the page cache:
//!    a short read is legal, but rare on files). A stale *other* or
//!    *eventlet's own* means the original call: on what is now a blocking
//!    socket or pipe, the OS thread blocks, as without the patch.
//! 5. *Signal handlers see the originals.* A handler may call `write`,
//!    `close` or `poll` (they are async-signal-safe); their patched forms
//!    on a green thread are not: they may yield or park, which would run
//!    other green threads on top of the interrupted code (the hub's own,
//!    half way through a change, or `malloc` holding its lock). So every
//!    handler installed through `sigaction` or `signal`, and every one
//!    installed before [`monkey_patch()`], runs behind a wrapper that marks
//!    its thread exempt while it runs. The hooks check that mark before they
//!    read anything of the hub. A handler installed with a raw
//!    `rt_sigaction` system call is not wrapped.
//! 6. *Waits do not outlive their descriptor's registration.* A raw
//!    descriptor is in the poller only during a wait (see
//!    [`trampoline`](crate::hub::trampoline)); a patched `close` takes it
//!    out and wakes the waiters, whose calls fail with `EBADF`.
//!
//! [`with_timeout`]: crate::with_timeout

mod fds;
mod hooks;
mod signals;

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::hub::trampoline::{wait_many, WaitError, Waited};
use crate::hub::{self, Interest, Kill, Killed};

/// Whether patched calls cooperate (set by [`monkey_patch`], cleared in a
/// forked child).
static ON: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Non-zero: this thread never cooperates (a `tpool` worker), or is
    /// running a signal handler (see [`signals`]). An atomic, because a
    /// signal handler changes it on top of the code it interrupted
    /// (relaxed loads and stores: only this thread touches it).
    static EXEMPT: AtomicU32 = const { AtomicU32::new(0) };
    /// Ids of `Timeout`s that cut a patched call short on this thread
    /// (`Timeout` ids are per OS thread), for [`with_timeout`](crate::with_timeout).
    static CUT_SHORT: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Turns the patch on for the whole process: from now on, blocking calls
/// made on a green thread through std or libc park only that green thread.
/// Call it at the start of `main`, before other threads start. Calling it
/// again does nothing.
///
/// It also gives the calling thread its hub, so `main`'s own blocking
/// calls (an `accept` loop, say) let the green threads run: on a thread
/// with a hub, the root is green too.
///
/// See the [module docs](self) for what is patched and the
/// [guide](crate::guide::greening) for how to check that it worked.
pub fn monkey_patch() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        hooks::resolve_all();
        hooks::keep_linked();
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        ON.store(true, Ordering::SeqCst);
        signals::adopt_all();
    });
    hub::with_hub(|_| ());
}

/// Whether [`monkey_patch`] has turned the patch on (and this is not a
/// forked child, where it is off).
pub fn is_monkey_patched() -> bool {
    ON.load(Ordering::Relaxed)
}

extern "C" fn forked_child() {
    ON.store(false, Ordering::Relaxed);
}

/// Which patched functions callers actually reach, from [`report`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Whether the patch is on.
    pub on: bool,
    /// Patched functions that every caller reaches, shared libraries
    /// (libpq) included: the binary exports them.
    pub everywhere: Vec<&'static str>,
    /// Patched functions that only the binary's own code reaches (Rust's
    /// std, statically linked C): the binary does not export them, so a
    /// shared library calling them gets libc's. Linking with
    /// `-C link-arg=-rdynamic` (or `-Wl,--export-dynamic-symbol=NAME`)
    /// exports them.
    pub binary_only: Vec<&'static str>,
}

/// Says which patched functions the process's callers reach: the way to
/// check that the patch is in place (see the guide).
pub fn report() -> Report {
    let (everywhere, binary_only) = hooks::exported();
    Report { on: is_monkey_patched(), everywhere, binary_only }
}

/// Whether the calling code cooperates, once the patch is known to be on
/// (the hooks check that inline: it is all a plain call pays while the
/// patch is off): this thread is not exempt (a signal handler, a `tpool`
/// worker), has a hub and runs green code (not its hub loop), and is not
/// unwinding. Exemption comes before anything of the hub is read: a
/// signal handler must not look at what the code it interrupted may be
/// in the middle of changing.
#[inline(always)]
fn enter() -> bool {
    !exempt_now() && hub::may_park_here() && !std::thread::panicking()
}

/// Whether this thread's patched calls go to the originals whatever else
/// holds (a signal handler runs, or this is a `tpool` worker).
#[inline(always)]
pub(crate) fn exempt_now() -> bool {
    EXEMPT.with(|e| e.load(Ordering::Relaxed)) != 0
}

/// Marks the calling OS thread as one whose calls are never patched (the
/// `tpool` workers: they exist to block).
pub(crate) fn exempt_this_thread() {
    EXEMPT.with(|e| e.store(e.load(Ordering::Relaxed) + 1, Ordering::Relaxed));
}

/// Runs `f` with patched calls going to the originals on this thread (for
/// signal handlers).
pub(crate) fn exempt<R>(f: impl FnOnce() -> R) -> R {
    EXEMPT.with(|e| e.store(e.load(Ordering::Relaxed) + 1, Ordering::Relaxed));
    let r = f();
    EXEMPT.with(|e| e.store(e.load(Ordering::Relaxed) - 1, Ordering::Relaxed));
    r
}

/// Notes that the `Timeout` numbered `id` cut a patched call short. Late
/// in a thread's exit (a thread-local's destructor making a patched call)
/// the note may be gone already; then the timeout is told by the call's
/// failure alone.
fn note_cut_short(id: u64) {
    let _ = CUT_SHORT.try_with(|c| c.borrow_mut().push(id));
}

/// Whether the `Timeout` numbered `id` cut a patched call short (and
/// forgets it).
pub(crate) fn take_cut_short(id: u64) -> bool {
    CUT_SHORT
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let found = c.iter().position(|&x| x == id);
            if let Some(i) = found {
                c.swap_remove(i);
            }
            found.is_some()
        })
        .unwrap_or(false)
}

/// Notes that `fd` is a descriptor of eventlet's own (non-blocking,
/// waited on by its owner): patched calls on it go to the originals.
pub(crate) fn eventlet_owns(fd: RawFd) {
    fds::set(fd, fds::Kind::Eventlet);
}

/// Notes that `fd` left eventlet's hands (it may be made blocking now).
pub(crate) fn eventlet_let_go(fd: RawFd) {
    fds::forget(fd);
}

/// Spends one unit of the green thread's I/O budget, as eventlet's own
/// sockets do, so a green thread whose patched I/O never blocks still lets
/// the others run every [`BUDGET`](crate::hub::BUDGET) calls. `Err(errno)`
/// if a kill reached it in that yield.
#[inline]
fn spend_budget() -> Result<(), i32> {
    if hub::with_hub(|h| h.try_consume_budget()) {
        return Ok(());
    }
    budget_yield()
}

/// The yield of a spent budget. `errno` is per OS thread: the green
/// threads that run meanwhile leave theirs in it, so the caller's is put
/// back (the hooks read it after this, to restore it on success).
#[cold]
#[inline(never)]
fn budget_yield() -> Result<(), i32> {
    let saved = hooks::errno();
    let r = panic::catch_unwind(AssertUnwindSafe(|| hub::with_hub(|h| h.yield_now())));
    hooks::set_errno(saved);
    r.map_err(caught)
}

/// Why a wait inside a hook ended without readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// The call's own deadline (its timeout argument, `SO_RCVTIMEO`).
    Deadline,
    /// Failed: the errno to return (`ETIMEDOUT`, `ECANCELED`, `EBADF`).
    Fail(i32),
}

/// Whether a kill is waiting to be delivered to the running green thread
/// (one that a hook caught): its patched calls fail at once.
fn kill_pending() -> bool {
    hub::with_hub(|h| {
        // SAFETY: the current task is alive while it runs.
        unsafe { (*h.current_ptr()).kill.get() == Kill::Pending }
    })
}

/// Turns an unwinding caught in a hook into the errno the C caller sees.
/// A kill is armed again for the green thread's next eventlet blocking
/// point, with a wake-up queued so that point does not wait forever; any
/// other unwinding is a bug in the runtime and goes on (to the
/// `extern "C"` boundary, which aborts the process with a message).
fn caught(p: Box<dyn std::any::Any + Send>) -> i32 {
    if p.is::<Killed>() {
        let me = crate::current();
        hub::with_hub(|h| {
            // SAFETY: the current task is alive while it runs.
            unsafe { (*h.current_ptr()).kill.set(Kill::Pending) }
        });
        let u = me.unparker();
        let _ = crate::Builder::new().name("eventlet-patcher-rekill").spawn_n(move || u.unpark());
        return libc::ECANCELED;
    }
    if let Some(e) = p.downcast_ref::<crate::timeout::Elapsed>() {
        let id = e.id();
        note_cut_short(id);
        return libc::ETIMEDOUT;
    }
    panic::resume_unwind(p)
}

/// Parks until one of `fds` may be ready or `deadline`; spurious wakes
/// return `Ok` (callers retry their call).
fn wait(fds: &[(RawFd, Interest)], deadline: Option<Instant>) -> Result<(), Cut> {
    if kill_pending() {
        return Err(Cut::Fail(libc::ECANCELED));
    }
    match panic::catch_unwind(AssertUnwindSafe(|| wait_many(fds, deadline, false))) {
        Ok(Ok(Waited::Ready)) => Ok(()),
        Ok(Ok(Waited::TimedOut)) => Err(Cut::Deadline),
        Ok(Err(WaitError::Elapsed(e))) => {
            note_cut_short(e.id());
            Err(Cut::Fail(libc::ETIMEDOUT))
        }
        Ok(Err(WaitError::Closed)) => Err(Cut::Fail(libc::EBADF)),
        Ok(Err(WaitError::Register(e))) => {
            // Registered by someone else on this hub (an eventlet socket's
            // descriptor handed to C): no edge will reach us, so look
            // again after a short sleep.
            let _ = e;
            let soon = Instant::now() + Duration::from_millis(1);
            sleep_until(Some(deadline.map_or(soon, |d| d.min(soon)))).map_err(Cut::Fail)
        }
        Err(p) => Err(Cut::Fail(caught(p))),
    }
}

/// Parks until `deadline` (`None`: until a kill or Timeout cuts it).
/// `Err(errno)` if a kill or Timeout cut it short.
fn sleep_until(deadline: Option<Instant>) -> Result<(), i32> {
    if kill_pending() {
        return Err(libc::ECANCELED);
    }
    let r = panic::catch_unwind(AssertUnwindSafe(|| loop {
        match hub::with_hub(|h| h.park_inner(deadline)) {
            Ok(hub::Wakeup::TimedOut) => return Ok(()),
            Ok(hub::Wakeup::Unparked) => match deadline {
                Some(d) if Instant::now() >= d => return Ok(()),
                _ => {}
            },
            Err(e) => return Err(e),
        }
    }));
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            note_cut_short(e.id());
            Err(libc::ETIMEDOUT)
        }
        Err(p) => Err(caught(p)),
    }
}

/// Lets the other green threads run (a zero sleep). `Err(errno)` if a
/// kill reached it.
fn yield_now() -> Result<(), i32> {
    if kill_pending() {
        return Err(libc::ECANCELED);
    }
    panic::catch_unwind(AssertUnwindSafe(|| hub::with_hub(|h| h.yield_now()))).map_err(caught)
}
