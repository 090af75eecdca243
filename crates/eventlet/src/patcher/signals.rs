//! Signal handlers run with the patch off on their thread.
//!
//! A signal handler may call `write`, `close`, `poll` or any other
//! async-signal-safe function, and those are patched. Run on a green
//! thread, the patched form is not async-signal-safe: it spends the I/O
//! budget and may yield, parks when the call would block, and looks at and
//! changes the hub's state, which the interrupted code may have been in the
//! middle of changing (a green thread inside the hub's own code). A handler
//! that switched green threads would let them run on top of the
//! interrupted code, its locks held (`malloc`'s among them).
//!
//! So while the patch is on, every handler runs behind [`wrapper`], which
//! marks its OS thread exempt (patched calls go to the originals, see
//! `enter` in the parent module) for the time the handler runs, and nothing
//! else. The patched `sigaction` (and `__sigaction`) installs the wrapper
//! in the handler's place and keeps the handler in [`HANDLERS`];
//! `signal`, `bsd_signal`, `ssignal`, `sysv_signal`, `__sysv_signal` and
//! `sigset` make their original call and then put the wrapper in front of
//! what it installed; [`adopt_all`] does the same at
//! [`monkey_patch`](super::monkey_patch) for the handlers installed before
//! it. Asked for the current action, these calls answer with the handler,
//! never the wrapper, so code that saves a handler and calls or reinstalls
//! it later gets its own.
//!
//! Everything here is async-signal-safe itself (atomics and the original
//! calls: a handler may call `sigaction`).
//!
//! What it cannot see: a handler installed by a raw `rt_sigaction` system
//! call after `monkey_patch` runs with the patch on. A handler that leaves
//! by `siglongjmp` leaves its thread exempt (its patched calls are the
//! originals from then on: they block the OS thread, as without the
//! patch). Two threads setting the same signal's handler at once may leave
//! the wrapper calling either one. The `signal` family is wrapped just
//! after its original call: a signal in between runs its handler
//! unwrapped.

use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_int, c_void, sighandler_t, siginfo_t};

use super::hooks::orig;
use super::{EXEMPT, ON};

/// The signal numbers Linux has: 1 to 64.
const NSIG: usize = 65;

/// Set in a [`HANDLERS`] entry whose handler takes `siginfo_t` and context
/// (`SA_SIGINFO`). Never set in a user-space code address (they are below
/// 2^48 on 64-bit Linux, and 32 bits wide on 32-bit Linux).
const INFO: u64 = 1 << 63;

/// The handler each signal's wrapper calls, with [`INFO`] for the
/// three-argument form; 0 for none. One word, so that a handler interrupting
/// a change sees the handler and its form together.
static HANDLERS: [AtomicU64; NSIG] = [const { AtomicU64::new(0) }; NSIG];

type Action = libc::sigaction;

/// The index of signal `sig` in [`HANDLERS`].
fn index(sig: c_int) -> Option<usize> {
    usize::try_from(sig).ok().filter(|&i| i > 0 && i < NSIG)
}

/// Whether `h` is a function (not `SIG_DFL`, `SIG_IGN`, `SIG_ERR` or
/// `SIG_HOLD`).
fn is_function(h: sighandler_t) -> bool {
    h != libc::SIG_DFL && h != libc::SIG_IGN && h != libc::SIG_ERR && h != 2 && h != wrapper_address()
}

fn wrapper_address() -> sighandler_t {
    wrapper as *const () as sighandler_t
}

fn encode(h: sighandler_t, flags: c_int) -> u64 {
    h as u64 | if flags & libc::SA_SIGINFO != 0 { INFO } else { 0 }
}

/// The handler and whether it takes `siginfo_t`.
fn decode(e: u64) -> (sighandler_t, bool) {
    ((e & !INFO) as sighandler_t, e & INFO != 0)
}

/// The handler the kernel runs for every signal whose handler the patch
/// wraps: runs that handler with this OS thread exempt from the patch.
extern "C" fn wrapper(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    // A thread-local with a constant initializer and no destructor: a plain
    // load and store, async-signal-safe.
    EXEMPT.with(|e| e.store(e.load(Ordering::Relaxed) + 1, Ordering::Relaxed));
    if let Some(i) = index(sig) {
        let (h, takes_info) = decode(HANDLERS[i].load(Ordering::Acquire));
        if h != 0 {
            if takes_info {
                // SAFETY: recorded from an action with SA_SIGINFO, so the
                // handler has this signature; the kernel's arguments.
                let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) = unsafe { std::mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: recorded from an action without SA_SIGINFO: the
                // handler takes the signal number only.
                let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
        }
    }
    EXEMPT.with(|e| e.store(e.load(Ordering::Relaxed) - 1, Ordering::Relaxed));
}

/// Tells the user's handler instead of the wrapper in an action the kernel
/// reported, given the handler the wrapper called then.
///
/// # Safety
///
/// `old` is null or a valid action.
unsafe fn unwrap_old(old: *mut Action, was: Option<u64>) {
    let Some(was) = was else { return };
    // SAFETY: per the contract.
    let Some(old) = (unsafe { old.as_mut() }) else { return };
    if old.sa_sigaction != wrapper_address() {
        return;
    }
    let (h, takes_info) = decode(was);
    old.sa_sigaction = if h == 0 { libc::SIG_DFL } else { h };
    old.sa_flags = (old.sa_flags & !libc::SA_SIGINFO) | if takes_info { libc::SA_SIGINFO } else { 0 };
}

/// The patched `sigaction` (and `__sigaction`, whose original is `call`):
/// with the patch on, a handler is installed behind the wrapper; the old
/// action is reported with the user's handler.
///
/// # Safety
///
/// `sigaction`'s contract.
pub(super) unsafe fn install(
    sig: c_int,
    act: *const Action,
    old: *mut Action,
    call: unsafe fn(c_int, *const Action, *mut Action) -> c_int,
) -> c_int {
    let Some(i) = index(sig) else {
        // SAFETY: the caller's arguments (the original reports EINVAL).
        return unsafe { call(sig, act, old) };
    };
    let mut was = HANDLERS[i].load(Ordering::Acquire);
    let mut swapped = false;
    // A copy: `act` and `old` may be the same action.
    // SAFETY: a non-null `act` is the caller's valid action.
    let mut ours = unsafe { act.as_ref() }.copied();
    if let Some(a) = ours.as_mut().filter(|a| ON.load(Ordering::Relaxed) && is_function(a.sa_sigaction)) {
        was = HANDLERS[i].swap(encode(a.sa_sigaction, a.sa_flags), Ordering::AcqRel);
        swapped = true;
        a.sa_sigaction = wrapper_address();
        a.sa_flags |= libc::SA_SIGINFO;
    }
    let act = ours.as_ref().map_or(std::ptr::null(), |a| a as *const Action);
    // SAFETY: the caller's signal and old action, with the copy of its
    // action (the wrapper in place of the handler).
    let r = unsafe { call(sig, act, old) };
    if r != 0 {
        if swapped {
            HANDLERS[i].store(was, Ordering::Release);
        }
        return r;
    }
    // SAFETY: `old` is the caller's, just filled in by the original.
    unsafe { unwrap_old(old, Some(was)) };
    r
}

/// The `signal` family: `call` is the original; then, with the patch on,
/// the wrapper goes in front of the handler it installed. Returns what the
/// original returned, the user's handler in place of the wrapper.
pub(super) fn signal_family(sig: c_int, handler: sighandler_t, call: impl FnOnce() -> sighandler_t) -> sighandler_t {
    let was = index(sig).map(|i| HANDLERS[i].load(Ordering::Acquire));
    let r = call();
    let r = match was {
        Some(was) if r == wrapper_address() => {
            let (h, _) = decode(was);
            if h == 0 {
                libc::SIG_DFL
            } else {
                h
            }
        }
        _ => r,
    };
    if r != libc::SIG_ERR && ON.load(Ordering::Relaxed) && is_function(handler) {
        adopt(sig);
    }
    r
}

/// Puts the wrapper in front of the handler installed now for `sig`, if it
/// is a function.
pub(super) fn adopt(sig: c_int) {
    let Some(i) = index(sig) else { return };
    // SAFETY: a zeroed action is a valid place for sigaction to fill.
    let mut cur: Action = unsafe { std::mem::zeroed() };
    // SAFETY: queries the current action only.
    if unsafe { orig::sigaction(sig, std::ptr::null(), &mut cur) } != 0 || !is_function(cur.sa_sigaction) {
        return;
    }
    HANDLERS[i].store(encode(cur.sa_sigaction, cur.sa_flags), Ordering::Release);
    cur.sa_sigaction = wrapper_address();
    cur.sa_flags |= libc::SA_SIGINFO;
    // SAFETY: the action just read, with the wrapper as its handler.
    unsafe { orig::sigaction(sig, &cur, std::ptr::null_mut()) };
}

/// Wraps the handlers installed before the patch was turned on.
pub(super) fn adopt_all() {
    for sig in 1..NSIG as c_int {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            adopt(sig);
        }
    }
}
