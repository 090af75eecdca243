//! # Several cores, and seeing what green threads do
//!
//! ## Every core
//!
//! A green thread never moves to another OS thread: that is what keeps
//! `Rc`, `RefCell` and thread-locals sound inside it. A program uses
//! several cores the way Seastar, glommio and monoio do: one hub per core,
//! each on its own OS thread, work placed on a hub when it starts and kept
//! there.
//!
//! - [`hub::Group`](crate::hub::Group) is such a set of hubs
//!   ([`hub::cores`](crate::hub::cores) of them by default, honouring the
//!   CPU affinity mask and a cgroup quota): it spawns `Send` closures onto
//!   the least loaded hub or a chosen one, and each returns a
//!   [`RemoteJoinHandle`](crate::hub::RemoteJoinHandle) to join from
//!   anywhere.
//! - [`Server::workers`](crate::Server::workers) (and `eventlet_http`'s
//!   `Server::workers`, and `eventlet serve --workers N`) serves one
//!   listener on a group, with one connection limit and one graceful
//!   shutdown for all hubs.
//! - [`channel`](crate::channel)s carry values between hubs (and to plain
//!   OS threads); an [`Unparker`](crate::Unparker) wakes one green thread
//!   from anywhere.
//!
//! ```
//! let group = eventlet::hub::Group::with_hubs(2)?;
//! let (tx, rx) = eventlet::channel::unbounded();
//! for i in 0..4u32 {
//!     let tx = tx.clone();
//!     group.spawn(move || tx.send(i * 10).unwrap()).unwrap();
//! }
//! drop(tx);
//! let mut got: Vec<u32> = rx.iter().collect();
//! got.sort_unstable();
//! assert_eq!(got, [0, 10, 20, 30]);
//! group.join();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Seeing what every green thread does
//!
//! - [`hub::threads`](crate::hub::threads) lists the green threads of the
//!   calling thread's hub: id, name, state, the timer or descriptor each
//!   waits for; [`hub::stats`](crate::hub::stats) its counters;
//!   [`hub::inspect`](crate::hub::inspect) both, for every hub of every
//!   group.
//! - [`backdoor`](crate::backdoor) serves them on a TCP console
//!   (`nc 127.0.0.1 3000`, then `threads`).
//! - [`hub::watchdog`](crate::hub::watchdog) (or `EVENTLET_WATCHDOG_MS`)
//!   names a green thread that holds its hub too long without yielding.
//!
//! ```
//! let h = eventlet::Builder::new().name("sleeper").spawn(|| eventlet::sleep(std::time::Duration::from_secs(1)))?;
//! eventlet::yield_now();
//! let me = eventlet::hub::threads().into_iter().find(|t| t.name.as_deref() == Some("sleeper")).unwrap();
//! println!("{me}"); // id, name, "parked", and when its timer fires
//! h.kill();
//! # Ok::<(), std::io::Error>(())
//! ```
