//! Where the runtime reports what user code did wrong, and how it keeps
//! that code from unwinding into the hub.
//!
//! A panic of a green thread nobody will join (a [`spawn_n`](crate::spawn_n)
//! green thread, or one whose [`JoinHandle`](crate::JoinHandle) was
//! dropped) is reported once:
//!
//! - the process's panic hook prints it where it happens, as for any
//!   thread (std's default hook writes the message and location on
//!   stderr);
//! - when the green thread ends, the runtime adds one record naming it:
//!   through the `log` crate at error level when a logger is installed,
//!   otherwise one line on stderr, which repeats the message only if the
//!   hook did not see the panic (a payload resumed with
//!   `std::panic::resume_unwind`, or a hook installed after eventlet's).
//!
//! To know what the hook saw, the first hub of the process wraps the panic
//! hook installed at that moment: the wrapper calls it, then notes which
//! green thread panicked with which message. It changes nothing else.
//!
//! Writing the report never panics (a closed stderr is ignored), and a
//! logger that panics is caught; payloads are dropped with
//! [`drop_payload`], which survives a payload whose destructor panics.

use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::hub::Task;
use crate::timeout::Elapsed;

/// A panic payload.
pub(crate) type Payload = Box<dyn Any + Send + 'static>;

thread_local! {
    /// The last panic the hook saw on this OS thread while a green thread
    /// ran: (green thread id, message).
    static HOOK_SAW: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
}

/// A panic payload as text: the message of `panic!`, an [`Elapsed`]'s
/// description, or the payload's type if it is something else.
pub(crate) fn payload_text(p: &(dyn Any + Send)) -> Cow<'_, str> {
    if let Some(s) = p.downcast_ref::<&str>() {
        Cow::Borrowed(s)
    } else if let Some(s) = p.downcast_ref::<String>() {
        Cow::Borrowed(s)
    } else if let Some(e) = p.downcast_ref::<Elapsed>() {
        Cow::Owned(e.to_string())
    } else if p.is::<crate::Killed>() {
        Cow::Borrowed("green thread was killed")
    } else {
        Cow::Borrowed("Box<dyn Any>")
    }
}

/// Drops a panic payload whose destructor may itself panic: that second
/// payload is leaked (dropping it could panic again, and so on).
pub(crate) fn drop_payload(p: Payload) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(|| drop(p))) {
        std::mem::forget(again);
    }
}

/// Runs `f`, which may panic (user code: a logger); a panic is caught and
/// its payload dropped with [`drop_payload`].
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Option<R> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(p) => {
            drop_payload(p);
            None
        }
    }
}

/// Logs an error of the runtime itself through `log` (the installed
/// logger is user code: a panic there is caught).
pub(crate) fn log_error(args: fmt::Arguments<'_>) {
    contain(|| log::error!(target: "eventlet", "{args}"));
}

/// Logs a warning of the runtime itself through `log`, as [`log_error`].
pub(crate) fn log_warn(args: fmt::Arguments<'_>) {
    contain(|| log::warn!(target: "eventlet", "{args}"));
}

/// Writes one line on stderr, prefixed `eventlet: `; a write that fails (a
/// closed stderr) is ignored rather than panicking as `eprintln!` does.
pub(crate) fn stderr_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "eventlet: {args}");
}

/// Reports the panic of a green thread nobody will join (see the module
/// docs).
pub(crate) fn green_panic(t: &Task, payload: &(dyn Any + Send)) {
    let msg = payload_text(payload);
    let name = t.name.as_deref().unwrap_or("<unnamed>");
    let seen =
        HOOK_SAW.try_with(|s| s.borrow_mut().take().is_some_and(|(id, m)| id == t.id && m == msg)).unwrap_or(false);
    let logged = contain(|| {
        let on = log::log_enabled!(target: "eventlet", log::Level::Error);
        if on {
            log::error!(target: "eventlet", "green thread '{name}' (id {}) panicked: {msg}", t.id);
        }
        on
    });
    if logged == Some(true) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = if seen {
        writeln!(err, "eventlet: green thread '{name}' (id {}) panicked (above); the other green threads go on", t.id)
    } else {
        writeln!(err, "eventlet: green thread '{name}' (id {}) panicked: {msg}; the other green threads go on", t.id)
    };
}

/// Wraps the panic hook installed now (once per process, and not while
/// this thread panics: `set_hook` refuses then) so that [`green_panic`]
/// knows whether the hook saw a green thread's panic.
pub(crate) fn install_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if std::thread::panicking() || INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let prev = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        prev(info);
        if let Some(id) = crate::sys::running_green_thread() {
            let msg = payload_text(info.payload()).into_owned();
            let _ = HOOK_SAW.try_with(|s| *s.borrow_mut() = Some((id, msg)));
        }
    }));
}
