//! Waiting for readiness on any descriptor: eventlet's `hubs.trampoline`.
//!
//! The green socket types register their descriptor with the hub once and
//! keep it. A raw descriptor that belongs to someone else (a C library's
//! socket, such as libpq's `PQsocket` or c-ares's) cannot be registered for
//! good: its owner may close it behind our back, and the kernel drops a
//! closed descriptor from the poller without telling anyone, so a kept
//! registration could later stand for another file under the same number.
//! So a wait here registers the descriptor for its own duration only (one
//! `epoll_ctl` to add it, which also reports readiness it already has, and
//! one to remove it), and several green threads of one hub waiting on the
//! same descriptor share that registration.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::BitOr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use super::io::Direction;
use super::{with_hub, Hub, TaskRef, Wakeup};
use crate::timeout::Elapsed;

/// The readiness a [`trampoline`] waits for: [`READ`](Interest::READ),
/// [`WRITE`](Interest::WRITE), or both (`Interest::READ | Interest::WRITE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Readable: data, a connection to accept, end of stream, or an error.
    pub const READ: Interest = Interest(1);
    /// Writable: room to write, a finished connect, or an error.
    pub const WRITE: Interest = Interest(2);

    /// Whether it includes [`READ`](Interest::READ).
    pub fn is_read(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether it includes [`WRITE`](Interest::WRITE).
    pub fn is_write(self) -> bool {
        self.0 & 2 != 0
    }

    fn directions(self) -> impl Iterator<Item = Direction> {
        [(self.is_read(), Direction::Read), (self.is_write(), Direction::Write)]
            .into_iter()
            .filter_map(|(on, d)| on.then_some(d))
    }
}

impl BitOr for Interest {
    type Output = Interest;

    fn bitor(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_read(), self.is_write()) {
            (true, true) => f.write_str("READ | WRITE"),
            (true, false) => f.write_str("READ"),
            (false, true) => f.write_str("WRITE"),
            (false, false) => f.write_str("(none)"),
        }
    }
}

/// Parks the current green thread (or the root) until `fd` is ready for
/// `interest`, or until `deadline`: eventlet's `trampoline`, the way to
/// wire a C library's non-blocking API (libpq's `PQconsumeInput` loop,
/// c-ares) to green threads.
///
/// Returns `Ok(())` once the hub saw the descriptor ready in one of the
/// asked directions; an error or hang-up on it counts as ready, as with
/// `poll`. Then do the operation: readiness is a hint, and the operation
/// may still find nothing to do (another reader was first) and need
/// another wait.
///
/// # Errors
///
/// - `TimedOut` when `deadline` passes first, or when a
///   [`Timeout`](crate::Timeout) of the caller expires (then the inner
///   error is its [`Elapsed`]);
/// - `BrokenPipe` if another green thread of this hub closed the
///   descriptor during the wait (through a patched `close`, see
///   [`patcher`](crate::patcher));
/// - `InvalidInput` for an empty `interest`, and for a regular file or
///   directory (always ready: epoll refuses them);
/// - `AlreadyExists` when the descriptor belongs to an eventlet socket
///   registered with this hub (wait with its own methods);
/// - the kernel's error otherwise, `EBADF` for a descriptor that is not
///   open.
///
/// A [`kill`](crate::JoinHandle::kill) unwinds out of it, as out of every
/// eventlet blocking call.
///
/// ```
/// use std::io::Write;
/// use std::os::unix::net::UnixStream;
/// use eventlet::hub::{trampoline, Interest};
///
/// let (a, mut b) = UnixStream::pair()?;
/// a.set_nonblocking(true)?;
/// let waiter = eventlet::spawn(move || trampoline(&a, Interest::READ, None));
/// eventlet::sleep(std::time::Duration::from_millis(10));
/// assert!(!waiter.is_finished()); // nothing to read yet: parked
/// b.write_all(b"x")?;
/// waiter.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn trampoline<F: AsRawFd + ?Sized>(fd: &F, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    if interest.0 == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "trampoline: empty interest"));
    }
    match wait_many(&[(fd, interest)], deadline, true) {
        Ok(Waited::Ready) => Ok(()),
        Ok(Waited::TimedOut) => Err(io::Error::new(io::ErrorKind::TimedOut, "trampoline: deadline passed")),
        Err(WaitError::Elapsed(e)) => Err(io::Error::new(io::ErrorKind::TimedOut, e)),
        Err(WaitError::Closed) => Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!("trampoline: descriptor {fd} was closed during the wait"),
        )),
        Err(WaitError::Register(e)) => Err(explain(fd, e)),
    }
}

/// A registration error, said in terms of the call.
fn explain(fd: RawFd, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("trampoline: descriptor {fd} cannot be waited on (a regular file or directory is always ready)"),
        ),
        Some(libc::EEXIST) => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "trampoline: descriptor {fd} is registered with this hub by an eventlet socket; wait with its own methods"
            ),
        ),
        _ => io::Error::new(e.kind(), format!("trampoline: descriptor {fd}: {e}")),
    }
}

/// How a wait ended well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// A descriptor became ready (or the wake was spurious, see
    /// [`wait_many`]).
    Ready,
    /// The deadline passed.
    TimedOut,
}

/// How a wait failed.
#[derive(Debug)]
pub(crate) enum WaitError {
    /// A [`Timeout`](crate::Timeout) of the caller expired.
    Elapsed(Elapsed),
    /// A descriptor was closed (through the patched `close`) meanwhile.
    Closed,
    /// A descriptor could not be registered.
    Register(io::Error),
}

/// A descriptor some wait of this hub has registered: its reactor token,
/// a number told apart from every earlier registration (a slot token is
/// reused), and how many waits share it.
struct Active {
    token: usize,
    id: u64,
    users: usize,
}

/// A hub's registered raw descriptors. An entry leaves when its last wait
/// ends, or when the descriptor is closed.
///
/// It is a field of the [`Hub`], not a thread-local of its own: it must
/// live exactly as long as the hub. A thread-local's destructor may run
/// before the hub's (destructors run in the reverse order of first use),
/// and a wait made later in that thread's exit, by another thread-local's
/// destructor, found it gone and panicked inside a patched call (an abort:
/// it cannot unwind through `extern "C"`).
#[derive(Default)]
pub(crate) struct RawWaits {
    active: RefCell<HashMap<RawFd, Active>>,
    next_id: std::cell::Cell<u64>,
}

/// Parks until one of `fds` is ready in one of its directions, or
/// `deadline`. With `exact`, a wake-up that no descriptor caused (a stray
/// `unpark`) parks again; without, it returns `Ready` and the caller, who
/// retries its operation anyway, sorts it out.
///
/// A kill unwinds out of it (the registrations are undone on the way).
pub(crate) fn wait_many(
    fds: &[(RawFd, Interest)],
    deadline: Option<Instant>,
    exact: bool,
) -> Result<Waited, WaitError> {
    with_hub(|hub| {
        let mut guard = Waits { hub, task: hub.current(), regs: Vec::with_capacity(fds.len()), parked: false };
        for &(fd, interest) in fds {
            let (token, id, fresh) = acquire(hub, fd).map_err(WaitError::Register)?;
            guard.regs.push(Reg { fd, token, id, interest });
            if !fresh && ready_now(fd, interest) {
                // Joined a registration whose readiness edge someone else
                // may have consumed already: look for ourselves.
                return Ok(Waited::Ready);
            }
        }
        if let Some(r) = guard.regs.first() {
            let dir = if r.interest.is_read() { Direction::Read } else { Direction::Write };
            guard.task.io_wait.set(Some((r.fd, dir)));
        }
        loop {
            guard.add();
            let woke = hub.park_inner(deadline);
            let fired = guard.remove();
            if guard.any_closed() {
                return Err(WaitError::Closed);
            }
            match woke {
                Err(e) => return Err(WaitError::Elapsed(e)),
                Ok(_) if fired => return Ok(Waited::Ready),
                Ok(Wakeup::TimedOut) => return Ok(Waited::TimedOut),
                Ok(Wakeup::Unparked) if !exact => return Ok(Waited::Ready),
                Ok(Wakeup::Unparked) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Waited::TimedOut);
                    }
                }
            }
        }
    })
}

/// Whether `poll` says `fd` is ready for `interest` right now.
fn ready_now(fd: RawFd, interest: Interest) -> bool {
    let mut events = 0;
    if interest.is_read() {
        events |= libc::POLLIN;
    }
    if interest.is_write() {
        events |= libc::POLLOUT;
    }
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd, no wait. (With the patcher on, `poll`
    // with a zero timeout goes straight to the original.)
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

/// The token of `fd` in this hub's reactor and the registration's id,
/// registering it if no wait has; and whether it was registered just now.
fn acquire(hub: &Hub, fd: RawFd) -> io::Result<(usize, u64, bool)> {
    let w = &hub.raw_waits;
    let mut a = w.active.borrow_mut();
    if let Some(e) = a.get_mut(&fd) {
        e.users += 1;
        return Ok((e.token, e.id, false));
    }
    let token = hub.reactor.register_raw(&hub.shared.registry, fd)?;
    let id = w.next_id.get() + 1;
    w.next_id.set(id);
    a.insert(fd, Active { token, id, users: 1 });
    Ok((token, id, true))
}

/// Gives back one use of a registration; the last one undoes it. One that
/// [`closing`] undid already is gone from the table, and nothing is left
/// to do.
fn release(hub: &Hub, r: &Reg) {
    let last = {
        let mut a = hub.raw_waits.active.borrow_mut();
        match a.get_mut(&r.fd).filter(|e| e.id == r.id) {
            Some(e) if e.users > 1 => {
                e.users -= 1;
                None
            }
            Some(_) => a.remove(&r.fd),
            None => None,
        }
    };
    if last.is_some() {
        hub.reactor.deregister_raw(&hub.shared.registry, r.fd, r.token, true);
    }
}

/// Called before `fd` is closed: takes it out of the poller while the
/// number still names the same file, and wakes the green threads of this
/// hub that wait on it (their wait fails with `Closed`).
#[cfg(feature = "monkey-patch")]
pub(crate) fn closing(fd: RawFd) {
    super::peek_hub(|hub| {
        let gone = hub.raw_waits.active.try_borrow_mut().ok().and_then(|mut a| a.remove(&fd));
        if let Some(e) = gone {
            hub.reactor.wake_all(e.token, |t| hub.unpark(&t));
            hub.reactor.deregister_raw(&hub.shared.registry, fd, e.token, true);
        }
    });
}

/// [`closing`] for every descriptor from `first` to `last` that a wait
/// of this hub has registered.
#[cfg(feature = "monkey-patch")]
pub(crate) fn closing_range(first: u32, last: u32) {
    let fds: Vec<RawFd> = super::peek_hub(|hub| {
        hub.raw_waits
            .active
            .try_borrow()
            .map(|a| a.keys().copied().filter(|&fd| fd as u32 >= first && fd as u32 <= last).collect())
            .unwrap_or_default()
    })
    .unwrap_or_default();
    fds.into_iter().for_each(closing);
}

/// One registration a wait uses.
struct Reg {
    fd: RawFd,
    token: usize,
    id: u64,
    interest: Interest,
}

/// The registrations and waiter entries of one [`wait_many`], undone
/// however it ends.
struct Waits<'a> {
    hub: &'a Hub,
    task: TaskRef,
    regs: Vec<Reg>,
    /// Whether the waiter entries are in the slots now.
    parked: bool,
}

impl Waits<'_> {
    fn add(&mut self) {
        for r in &self.regs {
            for d in r.interest.directions() {
                self.hub.reactor.add_waiter(r.token, d, self.task.clone());
            }
        }
        self.parked = true;
    }

    /// Takes the waiter entries out; returns whether an event had taken
    /// any of them out first.
    fn remove(&mut self) -> bool {
        self.parked = false;
        let mut fired = false;
        for r in &self.regs {
            for d in r.interest.directions() {
                fired |= !self.hub.reactor.remove_waiter(r.token, d, &self.task);
            }
        }
        fired
    }

    fn any_closed(&self) -> bool {
        let a = self.hub.raw_waits.active.borrow();
        self.regs.iter().any(|r| a.get(&r.fd).is_none_or(|e| e.id != r.id))
    }
}

impl Drop for Waits<'_> {
    fn drop(&mut self) {
        if self.parked {
            self.remove();
        }
        self.task.io_wait.set(None);
        for r in &self.regs {
            release(self.hub, r);
        }
    }
}
