//! Green threads for Rust: blocking-style network code, thousands of
//! connections on one OS thread.
//!
//! ```
//! use std::io::{Read, Write};
//! use eventlet::net::{TcpListener, TcpStream};
//!
//! let server = TcpListener::bind("127.0.0.1:0")?;
//! let addr = server.local_addr()?;
//! eventlet::spawn_n(move || {
//!     let (mut sock, _) = server.accept().unwrap();
//!     let mut buf = [0; 5];
//!     sock.read_exact(&mut buf).unwrap();
//!     sock.write_all(&buf).unwrap();
//! });
//! let mut client = TcpStream::connect(addr)?;
//! client.write_all(b"hello")?;
//! let mut buf = [0; 5];
//! client.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How it works
//!
//! Each OS thread gets a *hub* the first time it needs one. A green thread
//! is a coroutine (switched by `corosensei`) on a pooled stack with a guard
//! page. Green I/O tries the syscall first; only when it would block does the
//! green thread park, and the hub runs the next ready one, polling `mio` for
//! readiness when nothing is ready. Plain `main` (the *root*) can block too:
//! blocking there runs the hub until the root can go on, which is how
//! `for x in pool.imap(f, items)` works from `main`.
//!
//! # Several cores
//!
//! A green thread stays on the OS thread that spawned it (so `Rc`,
//! `RefCell` and thread-locals stay sound). To use several cores, run
//! several hubs, one per core: a [`hub::Group`] starts them (as many as
//! the process may use, by default) and spawns `Send` closures onto the
//! least loaded one; [`Server::workers`] serves a listener on every hub of
//! one. Channels ([`channel`]) carry values between hubs; [`hub::start`]
//! and [`hub::Handle`] are the parts to assemble by hand.
//!
//! # Seeing what green threads do
//!
//! [`hub::threads`] lists the green threads of a hub (state, timer, the
//! descriptor each waits on), [`hub::stats`] its counters, [`hub::inspect`]
//! both for every hub of the process, [`backdoor`] serves them on a TCP
//! console, and [`hub::watchdog`] (or `EVENTLET_WATCHDOG_MS`, or
//! [`hub::Group::watchdog`]) reports a green thread that holds its hub too
//! long.
//!
//! # Caveats
//!
//! Scheduling is cooperative: a green thread that computes for a long time
//! without blocking holds up the others on its OS thread. I/O that never
//! blocks still yields every [`hub::BUDGET`] operations. Blocking
//! std calls (`std::net`, `std::fs`, `std::thread::sleep`) block the whole
//! OS thread: use the green versions or [`tpool::execute`], or turn on the
//! monkey patch (the `monkey-patch` feature and `eventlet::monkey_patch()`;
//! see [Greening the world](guide::greening)), under which std's and libc's
//! blocking socket, pipe, poll and sleep calls park only their green
//! thread, so unmodified sync crates and C libraries run green.
//!
//! Longer prose lives in the [`guide`].

#[macro_use]
mod macros;

pub mod backdoor;
pub mod channel;
pub mod dagpool;
pub mod event;
mod future;
mod greenpool;
mod greenthread;
pub mod guide;
pub mod hub;
mod link;
pub mod local;
pub mod lock;
pub mod net;
#[cfg(all(feature = "monkey-patch", target_os = "linux"))]
pub mod patcher;
pub mod pipe;
pub mod pools;
pub mod process;
pub mod queue;
mod report;
mod scope;
pub mod semaphore;
mod stack;
mod sys;
mod time;
pub mod timeout;
pub mod tpool;
mod waitlist;

pub use event::Event;
pub use future::{block_on, GreenFuture, JoinFuture};
pub use greenpool::{GreenPile, GreenPool, Imap, PoolSizeError, TrySpawnError};
pub use greenthread::{
    current, park, park_deadline, park_timeout, sleep, spawn, spawn_after, spawn_after_local, spawn_n, yield_now,
    Builder, GreenThread, JoinHandle, LinkKey,
};
pub use hub::{Killed, Unparker, Wakeup};
pub use lock::{Condvar, Lock, LockGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use net::{connect, listen, serve, Server, StopHandle};
#[cfg(all(feature = "monkey-patch", target_os = "linux"))]
pub use patcher::monkey_patch;
pub use queue::{LifoQueue, PriorityQueue, Queue};
pub use scope::{scope, Scope, ScopedJoinHandle};
pub use semaphore::{BoundedSemaphore, CappedSemaphore, Permit, Semaphore};
pub use timeout::{with_timeout, Timeout};

pub use stack::{DEFAULT_STACK_SIZE, MIN_STACK_SIZE};
