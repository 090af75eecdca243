//! # What the runtime promises: soundness rules, and user code inside it
//!
//! eventlet's first promise is that safe code on top of it cannot cause
//! undefined behaviour, crash the process or lose a wake-up. This page
//! says how: the rules the runtime keeps, and, for every place where it
//! runs code of yours, what happens if that code panics or blocks.
//!
//! ## The rules
//!
//! 1. **A green thread never moves to another OS thread.** Its closure need
//!    not be `Send`; `Rc`, `RefCell` and thread-locals stay sound. Only
//!    work sent to *another* hub must be `Send`.
//! 2. **Every green thread ends on its own stack.** Its body runs its
//!    closure, or, if it was killed before it started, drops the closure
//!    unrun; then drops what nobody will take (the result of a detached
//!    green thread) and its green-locals. Destructors of your values never
//!    run on the hub loop's stack, and each runs exactly once.
//! 3. **Nothing unwinds into the hub.** Every piece of your code the
//!    runtime calls is inside `catch_unwind`; a panic payload whose own
//!    destructor panics is leaked rather than dropped twice; reports never
//!    panic (a closed stderr is ignored, a panicking logger is caught).
//! 4. **A green thread never switches away while it panics.** std keeps
//!    its panic state per OS thread, not per stack: `thread::panicking()`,
//!    the count that makes a `Mutex` guard poison its mutex, and the flag
//!    that aborts a panic raised inside a panic hook. If a green thread
//!    that unwinds (from a panic, a kill or an expired
//!    [`Timeout`](crate::Timeout)) let others run, they would see its
//!    unwinding as their own: an innocent `Mutex` poisoned, a second panic
//!    aborting the process. So while a green thread (or the root) panics,
//!    its blocking calls do not wait: each ends as under a timeout that has
//!    already expired (see [`timeout`](crate::timeout#while-unwinding)).
//!    No suspended green thread is ever panicking.
//! 5. **An outcome that arrives wins over a timeout that expires with
//!    it.** A `put` whose item was taken, a `join` whose green thread
//!    finished, a lock, permit or message handed over, a `block_on` whose
//!    future was woken and is ready: the call reports
//!    success and the timeout fires at the next blocking call. Nothing is
//!    delivered and then reported as timed out.
//! 6. **Waking needs nothing on the waker's side.** An
//!    [`Unparker`](crate::Unparker), a channel send or a `tpool` job
//!    finishing on a plain OS thread makes no hub there and cannot fail
//!    after the value was handed over.
//! 7. **Limits are errors, not panics, where the call can return one.** A
//!    thread out of descriptors gets `io::Error`s from green I/O; a stack
//!    the kernel refuses is an error naming the limit (`vm.max_map_count`,
//!    memory); a duration too long for an `Instant` means "no deadline".
//!
//! ## Your code inside the runtime
//!
//! | where | runs on | if it panics | if it blocks |
//! | --- | --- | --- | --- |
//! | a green thread's closure (`spawn`, pools, servers' handlers, `Handle::spawn`) | its green thread | caught: `join` returns it; if nobody will join, reported once | it waits, the others run |
//! | the drop of a closure killed before it started | that green thread, at its start | reported; `join` returns [`Killed`](crate::Killed) | it waits |
//! | the drop of unstarted closures when their OS thread exits (not scoped ones: those are leaked, as they may borrow destroyed thread-locals) | each green thread, run once by the exiting hub | reported | the hub is gone: the call panics, which is caught and reported |
//! | the result of a detached green thread (`spawn_n`, or a dropped `JoinHandle`) | that green thread, at its end | reported | it waits |
//! | the result of a finished green thread whose `JoinHandle` is dropped | the code dropping the handle | unwinds there, as any destructor | as any code there |
//! | panic payloads | whoever drops them; the runtime's own drops are guarded | the runtime leaks a payload whose drop panics | as any code there |
//! | callbacks linked with `JoinHandle::link` | the linked green thread, at its end, before its green-locals are dropped (or the caller, if it has ended: an ordinary call) | reported; the next still runs (at once: unwinds in the caller) | it waits; `join` waits for it |
//! | green-locals' destructors | the green thread, at its end (for one still parked when its OS thread exits, and so leaked: the exiting hub) | reported; the rest are still dropped | it waits (the exiting hub: the hub is gone, the call panics, which is caught and reported) |
//! | destructors running while a green thread unwinds | that green thread | Rust aborts the process (a panic escaping a destructor during unwinding), as everywhere | the call does not wait: it ends as under an expired timeout |
//! | the panic hook (std's default or yours) | the panicking green thread | std aborts (a panic inside a panic hook) | the call does not wait |
//! | the `log` logger, for the runtime's reports | the reporting green thread (the hub loop for a failed `epoll_wait`) | caught | on a green thread it waits; in the hub loop it is refused |
//! | the watchdog's report callback | the watchdog's OS thread | caught, noted on stderr | delays the next check only |
//! | a closure sent from another OS thread that cannot be spawned there (no stack) | the target hub's loop, which drops it | caught | refused: it ends as under an expired timeout |
//! | `tpool::execute` jobs and the resolver of `net::set_resolver` | a pool OS thread | resumed in the green thread that waits for it | blocks that pool thread only |
//! | `green_local!` initializers, `pools::Pool` factories, `Select` arms | the calling green thread | unwinds there | it waits |
//!
//! "Refused" and "does not wait" mean the same thing: a wait that cannot
//! switch away ends at once. I/O fails with `TimedOut`, `*_timeout` waits
//! return their timeout error, `sleep` and `yield_now` return, `join`
//! returns `Err` with the refusal payload, `tpool::execute` runs its job on
//! the calling OS thread, and a wait with no way to report failure unwinds
//! with an [`Elapsed`](crate::timeout::Elapsed) for which
//! [`is_refusal`](crate::timeout::Elapsed::is_refusal) is true (wrap it in
//! [`with_timeout`](crate::with_timeout) to get it as `Err`).
//!
//! ## Writing a destructor that must block
//!
//! A destructor may run while its green thread unwinds (killed, say), and
//! then cannot wait. If a cleanup must wait (a goodbye on a socket, a
//! flush), either bound it and accept that it may not happen:
//!
//! ```
//! use std::io::Write;
//! use std::time::Duration;
//!
//! struct Conn(eventlet::net::TcpStream);
//!
//! impl Drop for Conn {
//!     fn drop(&mut self) {
//!         // Succeeds when it can wait; fails at once while unwinding.
//!         let _ = eventlet::with_timeout(Duration::from_secs(1), || self.0.write_all(b"bye\n"));
//!     }
//! }
//! # let l = eventlet::net::TcpListener::bind("127.0.0.1:0")?;
//! # let c = Conn(eventlet::net::TcpStream::connect(l.local_addr()?)?);
//! # drop(c);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! or catch the kill where the green thread waits, clean up (now it can
//! block), and go on unwinding:
//!
//! ```
//! use std::panic::{self, AssertUnwindSafe};
//! use std::time::Duration;
//!
//! let worker = eventlet::spawn(|| {
//!     let r = panic::catch_unwind(AssertUnwindSafe(|| eventlet::sleep(Duration::from_secs(60))));
//!     if let Err(payload) = r {
//!         eventlet::sleep(Duration::from_millis(5)); // a cleanup that blocks
//!         panic::resume_unwind(payload);
//!     }
//! });
//! eventlet::yield_now();
//! worker.kill();
//! assert!(worker.join().unwrap_err().is::<eventlet::Killed>());
//! ```
//!
//! ## Differences from eventlet
//!
//! Python has no per-thread panic state, so eventlet lets a killed
//! greenlet's `finally` blocks switch. Here a destructor that runs during a
//! kill cannot; the two patterns above are the way to wait on cleanup.
//!
//! ## How it is tested
//!
//! `tests/soundness.rs` holds a regression test for each way the rules
//! were once broken (the cases that could crash run in a child process);
//! `tests/stress.rs` runs seeded random interleavings of spawn, kill,
//! join, timeouts, queues, locks, permits, socket I/O and panics, then
//! checks that every value was dropped exactly once, nothing delivered was
//! reported lost, every permit came back and no descriptor leaked (3 s in
//! the test suite, 30 s in CI); `tests/stress_hubs.rs` does the same across
//! OS threads (two hubs of a group, the test's own hub and a plain thread
//! sharing channels, with kills, timeouts, selects, joins across hubs and
//! green threads awaited as futures or cancelled), and fails on a lost,
//! duplicated or undelivered item or a wait nobody ends;
//! `tests/stress_future.rs` does it for the [async bridge](crate::guide::async_bridge)
//! on one hub (`block_on` of futures woken from the hub, from a plain
//! thread and by tokio, some blocking the green way inside their own
//! `poll`; green threads awaited as futures from `block_on`, `LocalSet`
//! and tokio tasks, or cancelled), with ping-pongs that wait without a
//! timeout so that a lost wake-up hangs (3 s in the test suite, 20 s in
//! CI). With the
//! [monkey patch](crate::patcher), `eventlet-greening`'s
//! `tests/soundness.rs` holds the regression tests of the patched calls
//! (signal handlers, thread exit, standard output, `errno`, arguments at
//! their limits) and its `tests/stress.rs` runs std's sockets, pipes and
//! sleeps and libc's `poll` and `select` under random kills and timeouts
//! (3 s in the test suite, 20 s in CI). The unsafe seams (run queue, wait lists,
//! task blocks, stacks) have unit tests of their own, and `.ci/memcheck`
//! runs the crate's tests under valgrind's memcheck.
