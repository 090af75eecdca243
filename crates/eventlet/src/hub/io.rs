//! The reactor: `mio::Poll` plus one slot of waiting green threads per
//! registered socket.
//!
//! [`Evented`] is the adapter every descriptor type (sockets, pipes) does
//! its I/O through: try the syscall, and only on `WouldBlock` park until
//! the reactor says the descriptor may be ready.
//!
//! A socket registers once per hub it is used on (edge-triggered, read and
//! write interest), lazily: the first time an operation would block there.
//! Sockets are `Send + Sync` like std's, so one moved to another OS thread
//! registers with that thread's hub too; dropping it deregisters it from
//! every hub it joined.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::{peek_hub, try_hub, Hub, HubShared, Remote, TaskRef, Wakeup};

/// Which readiness a green thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

struct Slot {
    readers: Vec<TaskRef>,
    writers: Vec<TaskRef>,
    /// Whether a read may find data: cleared by a short stream read (it
    /// drained the socket), set again by the next read readiness event.
    /// While it is clear a read parks without trying the syscall.
    readable: bool,
    /// Set for good once the reactor reported end of stream, an error or
    /// urgent data; the socket is never treated as drained again. End of
    /// stream and errors raise no further edge (a short read may be
    /// followed by EOF reported in the same event as the data); a TCP read
    /// stops short at an urgent mark with ordinary data waiting behind it.
    read_final: bool,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot { readers: Vec::new(), writers: Vec::new(), readable: true, read_final: false }
    }
}

pub(crate) struct Reactor {
    poll: RefCell<Poll>,
    events: RefCell<Events>,
    slots: RefCell<Slab<Slot>>,
    waiters: Cell<usize>,
}

impl Reactor {
    pub(crate) fn new(poll: Poll) -> Reactor {
        Reactor {
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(1024)),
            slots: RefCell::new(Slab::new()),
            waiters: Cell::new(0),
        }
    }

    /// A duplicate of the `epoll` instance's descriptor (the tokio bridge
    /// registers it with tokio's reactor).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::{AsRawFd, BorrowedFd};
        let poll = self.poll.borrow();
        // SAFETY: the descriptor is the `Poll`'s own, open while we hold
        // the borrow; it is only duplicated here.
        unsafe { BorrowedFd::borrow_raw(poll.as_raw_fd()) }.try_clone_to_owned()
    }

    pub(crate) fn registrations(&self) -> usize {
        self.slots.borrow().len()
    }

    pub(crate) fn waiters(&self) -> usize {
        self.waiters.get()
    }

    pub(crate) fn free_slot(&self, token: usize) {
        let slot = self.slots.borrow_mut().try_remove(token);
        if let Some(s) = slot {
            // No one can wait on a socket being dropped; be defensive anyway.
            self.waiters.set(self.waiters.get() - s.readers.len() - s.writers.len());
        }
    }

    /// Polls once and hands every green thread waiting on a ready socket to
    /// `wake`. Returns whether the poll filled the event buffer (more events
    /// may be waiting).
    pub(crate) fn poll(&self, timeout: Option<Duration>, mut wake: impl FnMut(TaskRef)) -> bool {
        let mut events = self.events.borrow_mut();
        if let Err(e) = self.poll.borrow_mut().poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                crate::report::log_error(format_args!("epoll_wait failed: {e}"));
            }
            return false;
        }
        let full = events.iter().count() >= events.capacity();
        for ev in events.iter() {
            let token = ev.token();
            if token == super::WAKER_TOKEN {
                continue;
            }
            let fail = ev.is_error();
            let read = fail || ev.is_readable() || ev.is_read_closed();
            let write = fail || ev.is_writable() || ev.is_write_closed();
            // Waking only queues the green threads (it does not touch the
            // reactor), so they go straight from the slot to the run queue.
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(token.0) else { continue };
            let mut woken = 0;
            if fail || ev.is_read_closed() || ev.is_priority() {
                slot.read_final = true;
            }
            if read {
                slot.readable = true;
                woken += slot.readers.len();
                slot.readers.drain(..).for_each(&mut wake);
            }
            if write {
                woken += slot.writers.len();
                slot.writers.drain(..).for_each(&mut wake);
            }
            self.waiters.set(self.waiters.get() - woken);
        }
        full
    }

    pub(crate) fn add_waiter(&self, token: usize, dir: Direction, t: TaskRef) {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[token];
        match dir {
            Direction::Read => slot.readers.push(t),
            Direction::Write => slot.writers.push(t),
        }
        self.waiters.set(self.waiters.get() + 1);
    }

    /// Whether the socket at `token` is known to hold no data to read.
    fn read_drained(&self, token: usize) -> bool {
        self.slots.borrow().get(token).is_some_and(|s| !s.readable)
    }

    fn set_read_drained(&self, token: usize) {
        if let Some(s) = self.slots.borrow_mut().get_mut(token) {
            s.readable = s.read_final;
        }
    }

    /// Takes `t` off the slot's list for `dir`; returns whether it was
    /// still there (`false`: an event took it off, or it never waited).
    pub(crate) fn remove_waiter(&self, token: usize, dir: Direction, t: &TaskRef) -> bool {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(token) else { return false };
        let list = match dir {
            Direction::Read => &mut slot.readers,
            Direction::Write => &mut slot.writers,
        };
        if let Some(i) = list.iter().position(|w| TaskRef::ptr_eq(w, t)) {
            list.swap_remove(i);
            self.waiters.set(self.waiters.get() - 1);
            true
        } else {
            false
        }
    }

    /// Registers a raw descriptor (edge-triggered, read and write) under a
    /// new slot and returns its token; for waits that register for their
    /// own duration only ([`trampoline`](super::trampoline)).
    pub(crate) fn register_raw(&self, registry: &mio::Registry, fd: RawFd) -> io::Result<usize> {
        let token = self.slots.borrow_mut().insert(Slot::default());
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = registry.register(&mut SourceFd(&fd), Token(token), interest) {
            self.slots.borrow_mut().remove(token);
            return Err(e);
        }
        Ok(token)
    }

    /// Undoes [`register_raw`](Self::register_raw). `registered` is false
    /// when the descriptor was already taken out of the poller (closed).
    pub(crate) fn deregister_raw(&self, registry: &mio::Registry, fd: RawFd, token: usize, registered: bool) {
        if registered {
            let _ = registry.deregister(&mut SourceFd(&fd));
        }
        self.free_slot(token);
    }

    /// Hands every green thread waiting on the slot at `token` to `wake`.
    #[cfg(feature = "monkey-patch")]
    pub(crate) fn wake_all(&self, token: usize, mut wake: impl FnMut(TaskRef)) {
        let (readers, writers) = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(token) else { return };
            (std::mem::take(&mut slot.readers), std::mem::take(&mut slot.writers))
        };
        self.waiters.set(self.waiters.get() - readers.len() - writers.len());
        readers.into_iter().chain(writers).for_each(&mut wake);
    }
}

/// A socket's registrations, one per hub it has waited on. Dropping it
/// leaves every reactor it joined (call it before closing the descriptor).
pub(crate) struct Registration {
    /// The descriptor registered (-1 until the first registration).
    fd: AtomicI32,
    /// Id of the first hub it registered with (0: none), read without a lock.
    home_hub: AtomicU64,
    home_token: AtomicUsize,
    all: Mutex<Vec<(Arc<HubShared>, usize)>>,
}

impl Registration {
    /// The token of this socket in `hub`'s reactor, registering if needed.
    /// `fd` is the same descriptor every time.
    fn token(&self, hub: &Hub, fd: RawFd) -> io::Result<usize> {
        if self.home_hub.load(Ordering::Acquire) == hub.id {
            return Ok(self.home_token.load(Ordering::Relaxed));
        }
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = all.iter().find(|(s, _)| s.id == hub.id) {
            return Ok(*t);
        }
        let token = hub.reactor.slots.borrow_mut().insert(Slot::default());
        // PRIORITY: urgent data (see `Slot::read_final`); one already
        // pending is reported by the first poll after registering.
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
        if let Err(e) = hub.shared.registry.register(&mut SourceFd(&fd), Token(token), interest) {
            hub.reactor.slots.borrow_mut().remove(token);
            return Err(e);
        }
        all.push((hub.shared.clone(), token));
        self.fd.store(fd, Ordering::Relaxed);
        if self.home_hub.load(Ordering::Relaxed) == 0 {
            self.home_token.store(token, Ordering::Relaxed);
            self.home_hub.store(hub.id, Ordering::Release);
        }
        Ok(token)
    }

    /// The token of this socket in `hub`'s reactor if it registered there
    /// first (other hubs: `None`; it is only a hint).
    #[inline]
    fn home_token(&self, hub: &Hub) -> Option<usize> {
        (self.home_hub.load(Ordering::Acquire) == hub.id).then(|| self.home_token.load(Ordering::Relaxed))
    }

    /// Removes the descriptor from every hub it registered with.
    fn deregister(&mut self) {
        let all = std::mem::take(self.all.get_mut().unwrap_or_else(|e| e.into_inner()));
        let fd = *self.fd.get_mut();
        for (shared, token) in all {
            let _ = shared.registry.deregister(&mut SourceFd(&fd));
            let local = peek_hub(|h| {
                if h.id == shared.id {
                    h.reactor.free_slot(token);
                    true
                } else {
                    false
                }
            });
            if local != Some(true) {
                shared.send(Remote::FreeSlot(token));
            }
        }
        self.home_hub.store(0, Ordering::Relaxed);
    }
}

impl Default for Registration {
    fn default() -> Registration {
        Registration {
            fd: AtomicI32::new(-1),
            home_hub: AtomicU64::new(0),
            home_token: AtomicUsize::new(0),
            all: Mutex::new(Vec::new()),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// Removes a waiter from its slot however the wait ends (wake, timeout or a
/// kill unwinding through it).
struct WaiterGuard<'a> {
    hub: &'a Hub,
    token: usize,
    dir: Direction,
    task: TaskRef,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.task.io_wait.set(None);
        self.hub.reactor.remove_waiter(self.token, self.dir, &self.task);
    }
}

/// Parks the current green thread until `fd` may be ready in `dir`, or the
/// deadline passes. May return early (a spurious wake); callers retry.
pub(crate) fn wait(reg: &Registration, fd: RawFd, dir: Direction, deadline: Option<Instant>) -> io::Result<Wakeup> {
    try_hub(|hub| {
        let token = reg.token(hub, fd)?;
        let task = hub.current();
        hub.reactor.add_waiter(token, dir, task.clone());
        task.io_wait.set(Some((fd, dir)));
        let _guard = WaiterGuard { hub, token, dir, task };
        hub.park_io(deadline).map_err(|e| io::Error::new(io::ErrorKind::TimedOut, e))
    })?
}

/// Whether a stream read on this socket would surely find nothing: its last
/// read on this hub was short (it drained the receive queue) and no read
/// readiness came since. Data arriving after that read raises an edge, so
/// parking without the syscall loses nothing (tokio does the same).
#[inline]
pub(crate) fn read_drained(reg: &Registration) -> bool {
    peek_hub(|hub| reg.home_token(hub).is_some_and(|t| hub.reactor.read_drained(t))).unwrap_or(false)
}

/// Notes that a stream read returned less than asked: the socket is
/// drained until its next read readiness event.
#[inline]
pub(crate) fn set_read_drained(reg: &Registration) {
    peek_hub(|hub| {
        if let Some(t) = reg.home_token(hub) {
            hub.reactor.set_read_drained(t);
        }
    });
}

/// The number of bytes a vectored read of buffers of these lengths asks
/// the kernel for, or `None` if unknown: std passes at most `UIO_MAXIOV`
/// (1024) buffers to `readv`, so with more a read returns less than their
/// total while data still waits.
pub(crate) fn vectored_len(lens: impl ExactSizeIterator<Item = usize>) -> Option<usize> {
    (lens.len() <= libc::UIO_MAXIOV as usize).then(|| lens.sum())
}

/// Spends one unit of the running green thread's I/O budget.
#[inline]
pub(crate) fn consume_budget() {
    peek_hub(|h| h.consume_budget());
}

/// A non-blocking descriptor plus its reactor registrations: the I/O
/// adapter every descriptor type uses (sockets, pipes). The registration
/// comes first, so it is dropped (leaving every reactor) before the
/// descriptor is closed.
pub(crate) struct Evented<T: AsRawFd> {
    reg: Registration,
    io: T,
}

impl<T: AsRawFd> Evented<T> {
    pub(crate) fn new(io: T) -> Evented<T> {
        #[cfg(all(feature = "monkey-patch", target_os = "linux"))]
        crate::patcher::eventlet_owns(io.as_raw_fd());
        Evented { reg: Registration::default(), io }
    }

    pub(crate) fn get(&self) -> &T {
        &self.io
    }

    /// Runs `f` until it does not return `WouldBlock`, parking between tries
    /// until the descriptor may be ready or `timeout` has passed.
    pub(crate) fn op<R>(
        &self,
        dir: Direction,
        timeout: Option<Duration>,
        f: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        self.op_parking_first(dir, timeout, false, f)
    }

    /// A read of a byte stream: as [`op`](Self::op), but with `len`, the
    /// number of bytes the syscall was asked for, a read that returns less
    /// drained the descriptor, so the next one parks until the reactor
    /// reports new data instead of spending a syscall to learn
    /// `WouldBlock`. Pass `None` where a read may stop short with data
    /// waiting (see [`green_read!`]); then this is `op`.
    pub(crate) fn read_op(
        &self,
        timeout: Option<Duration>,
        len: Option<usize>,
        f: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        // One call of the loop, so that it stays inlined here (a second
        // call for `None` made the compiler outline it: ~40 more
        // instructions per echo message).
        let park_first = len.is_some() && read_drained(&self.reg);
        let r = self.op_parking_first(Direction::Read, timeout, park_first, f);
        if let (Ok(n), Some(len)) = (&r, len) {
            if *n > 0 && *n < len {
                set_read_drained(&self.reg);
            }
        }
        r
    }

    /// The loop of [`op`](Self::op); with `park_first`, it parks before the
    /// first try (the descriptor is known not to be ready).
    fn op_parking_first<R>(
        &self,
        dir: Direction,
        timeout: Option<Duration>,
        mut park_first: bool,
        mut f: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        consume_budget();
        let mut deadline = None;
        loop {
            if !std::mem::take(&mut park_first) {
                match f(&self.io) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return r,
                }
            }
            if deadline.is_none() {
                deadline = timeout.and_then(crate::time::deadline_after);
            }
            if self.wait(dir, deadline)? == Wakeup::TimedOut {
                return Err(crate::net::timed_out());
            }
        }
    }

    /// Parks until the descriptor may be ready (or spuriously).
    pub(crate) fn wait(&self, dir: Direction, deadline: Option<Instant>) -> io::Result<Wakeup> {
        wait(&self.reg, self.io.as_raw_fd(), dir, deadline)
    }

    /// The descriptor, out of every reactor it joined.
    pub(crate) fn into_inner(self) -> T {
        let Evented { reg, io } = self;
        drop(reg);
        #[cfg(all(feature = "monkey-patch", target_os = "linux"))]
        crate::patcher::eventlet_let_go(io.as_raw_fd());
        io
    }
}
