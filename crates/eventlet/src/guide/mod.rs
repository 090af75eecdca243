//! The guide: longer prose than the API docs hold, one page per topic, as
//! mio and async-io keep theirs. Nothing here is code; every example is a
//! doctest that runs.
//!
//! - [`patterns`]: the two shapes most programs take, the crawler
//!   (client side, `GreenPool::imap`) and the echo server (server side,
//!   `GreenPool::spawn_n`), runnable.
//! - [`cores`]: every core (a hub per core, servers over them, channels
//!   between them), and seeing what every green thread does.
//! - [`rules`]: what the runtime promises when your code panics or blocks
//!   inside it (closures, destructors, results, panic payloads, loggers,
//!   hooks), and the one rule that keeps green threads sound: a green
//!   thread never switches away while it panics.
//! - [`greening`]: *Greening the world*, unmodified sync crates and C
//!   libraries (redis, ureq, libpq) on green threads with the monkey patch:
//!   what is patched, how to turn it on and check it, and the caveats.
//! - [`async_bridge`]: *Green threads and async*, the three directions (a
//!   green thread waits on a future, tokio's reactor and timers in green
//!   threads, async code waits on green threads), cancellation both ways,
//!   and what each costs.

pub mod cores;
pub mod patterns;
pub mod rules;

#[doc = include_str!("greening.md")]
pub mod greening {}

#[doc = include_str!("async_bridge.md")]
pub mod async_bridge {}
