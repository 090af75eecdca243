//! What a hub can tell about itself: its counters ([`stats`]) and its
//! green threads ([`threads`]).

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{io, with_hub, State};

/// A snapshot of one hub's counters, from [`stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Green threads alive on this hub (spawned and not finished).
    pub green_threads: usize,
    /// Green threads in the run queue.
    pub ready: usize,
    /// Armed timers (sleeps, deadlines, delayed spawns).
    pub timers: usize,
    /// Sockets registered with this hub's reactor.
    pub io_registrations: usize,
    /// Green threads parked waiting for socket readiness.
    pub io_waiters: usize,
    /// Stacks in use by green threads.
    pub stacks_in_use: usize,
    /// Free stacks kept for reuse.
    pub stacks_pooled: usize,
    /// Green threads switched to since the hub started.
    pub switches: u64,
}

/// Returns the counters of the current OS thread's hub (creating it if
/// needed).
pub fn stats() -> Stats {
    with_hub(|h| Stats {
        green_threads: h.tasks.borrow().len() - 1,
        ready: h.queue.len() + h.yielded.len(),
        timers: h.timers.borrow().len() - h.spares.get(),
        io_registrations: h.reactor.registrations(),
        io_waiters: h.reactor.waiters(),
        stacks_in_use: h.stacks.borrow().outstanding(),
        stacks_pooled: h.stacks.borrow().pooled(),
        switches: h.shared.switches.load(Ordering::Relaxed),
    })
}

/// What a green thread is doing: one entry of [`threads`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadInfo {
    /// Its id ([`GreenThread::id`](crate::GreenThread::id)).
    pub id: u64,
    /// Its name, if it has one (the root context is `main`).
    pub name: Option<String>,
    /// Whether this is the OS thread's root context rather than a green
    /// thread.
    pub is_root: bool,
    /// Where it is in its life.
    pub state: ThreadState,
    /// How long until its timer fires (a sleep, a deadline, a delayed
    /// start), if it has one.
    pub wakes_in: Option<Duration>,
    /// The socket or pipe it waits on: descriptor and direction.
    pub io: Option<IoWait>,
}

/// The state of a green thread, in [`ThreadInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThreadState {
    /// In the run queue.
    Ready,
    /// Running now (the one that called [`threads`]).
    Running,
    /// Parked: waiting for I/O, a wake-up or its deadline.
    Parked,
    /// Spawned with a delay that has not passed yet.
    Delayed,
}

/// A descriptor a green thread waits on, in [`ThreadInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoWait {
    /// The descriptor.
    pub fd: std::os::fd::RawFd,
    /// `true` when waiting to read, `false` to write.
    pub read: bool,
}

impl fmt::Display for ThreadInfo {
    /// One line: id, name, state, and what it waits for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ThreadState::Ready => "ready",
            ThreadState::Running => "running",
            ThreadState::Parked => "parked",
            ThreadState::Delayed => "delayed",
        };
        let name = self.name.as_deref().unwrap_or("-");
        write!(f, "{:>10}  {name:<20}  {state:<8}", self.id)?;
        if let Some(io) = self.io {
            write!(f, "  {} fd {}", if io.read { "read" } else { "write" }, io.fd)?;
        }
        if let Some(d) = self.wakes_in {
            write!(f, "  timer in {:.3}s", d.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Lists the green threads of the current OS thread's hub, and its root
/// context, by id: what each one is doing now.
///
/// ```
/// let h = eventlet::Builder::new().name("sleeper").spawn(|| eventlet::sleep(std::time::Duration::from_secs(1)))?;
/// eventlet::yield_now(); // let it start sleeping
/// let all = eventlet::hub::threads();
/// let sleeper = all.iter().find(|t| t.name.as_deref() == Some("sleeper")).unwrap();
/// assert_eq!(sleeper.state, eventlet::hub::ThreadState::Parked);
/// assert!(sleeper.wakes_in.is_some());
/// h.kill();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn threads() -> Vec<ThreadInfo> {
    with_hub(|h| {
        let now = Instant::now();
        let timers = h.timers.borrow();
        let mut out: Vec<ThreadInfo> = h
            .tasks
            .borrow()
            .iter()
            .filter_map(|(_, t)| {
                let state = match t.state.get() {
                    State::Ready => ThreadState::Ready,
                    State::Running => ThreadState::Running,
                    State::Parked => ThreadState::Parked,
                    State::Delayed => ThreadState::Delayed,
                    State::Done => return None,
                };
                let timer = t.timer.get().filter(|_| !t.spared.get());
                Some(ThreadInfo {
                    id: t.id,
                    name: t.name.as_deref().map(str::to_owned),
                    is_root: t.is_root(),
                    state,
                    wakes_in: timer.and_then(|k| timers.deadline(k)).map(|d| d.saturating_duration_since(now)),
                    io: t.io_wait.get().map(|(fd, dir)| IoWait { fd, read: dir == io::Direction::Read }),
                })
            })
            .collect();
        out.sort_by_key(|t| t.id);
        out
    })
}
