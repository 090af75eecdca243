//! The guide: longer prose than the API docs hold, one page per topic, as
//! mio and async-io keep theirs. Nothing here is code; every example is a
//! doctest that runs.
//!
//! - [`rules`]: what the runtime promises when your code panics or blocks
//!   inside it (closures, destructors, results, panic payloads, loggers,
//!   hooks), and the one rule that keeps green threads sound: a green
//!   thread never switches away while it panics.
//! - [`greening`]: *Greening the world*, unmodified sync crates and C
//!   libraries (redis, ureq, libpq) on green threads with the monkey patch:
//!   what is patched, how to turn it on and check it, and the caveats.
//!
//! The crate's front page shows the two canonical patterns (the crawler
//! with [`GreenPool::imap`](crate::GreenPool::imap) and the echo server
//! with [`GreenPool::spawn_n`](crate::GreenPool::spawn_n)); the
//! [`hub`](crate::hub) module covers several cores and introspection.

pub mod rules;

#[doc = include_str!("greening.md")]
pub mod greening {}
