//! A pool of OS threads for blocking calls, so only the calling green thread
//! waits (eventlet's `tpool`).
//!
//! ```
//! let n = eventlet::tpool::execute(|| {
//!     std::thread::sleep(std::time::Duration::from_millis(10)); // blocks a pool thread
//!     7
//! });
//! assert_eq!(n, 7);
//! ```
//!
//! The pool starts threads on demand up to [`max_threads`] (default 20,
//! configurable with [`set_max_threads`] or the `EVENTLET_THREADPOOL_SIZE`
//! environment variable); idle threads exit after ten seconds.
//!
//! An `EVENTLET_THREADPOOL_SIZE` that is not a whole number of at least 1
//! (`0`, `-3`, `abc`, empty) is reported once on stderr (and through
//! `log`), naming the value, when the pool is first used; the pool then
//! has the default size.
//!
//! # Differences from eventlet
//!
//! eventlet raises on a size that is not a number and asserts on a
//! negative one; a size of 0 makes every `tpool.execute` run in the
//! calling thread, with a warning. Here none of them stops the program
//! (the setting is read on first use, deep inside whatever call needed
//! the pool, which has no error to return), and 0 is refused as the
//! others are: running blocking calls on the hub's own thread would stall
//! every green thread of it, which is what the pool is for avoiding.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::greenthread::current;
use crate::hub;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<PoolState>,
    cond: Condvar,
    max: AtomicUsize,
}

struct PoolState {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The pool's size unless `EVENTLET_THREADPOOL_SIZE` says otherwise.
const DEFAULT_THREADS: usize = 20;

/// The size `EVENTLET_THREADPOOL_SIZE` asks for: `Ok(None)` when it is not
/// set, `Err` with what it holds when that is not a size.
fn size_from_env(var: Option<std::ffi::OsString>) -> Result<Option<usize>, String> {
    let Some(v) = var else { return Ok(None) };
    match v.to_str().map(|s| s.trim().parse::<usize>()) {
        Some(Ok(n)) if n > 0 => Ok(Some(n)),
        _ => Err(v.to_string_lossy().into_owned()),
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let max = match size_from_env(std::env::var_os("EVENTLET_THREADPOOL_SIZE")) {
            Ok(n) => n.unwrap_or(DEFAULT_THREADS),
            Err(bad) => {
                let msg = format!(
                    "EVENTLET_THREADPOOL_SIZE={bad:?} is not a number of threads (a whole number, at least 1); \
                     the thread pool has the default size, {DEFAULT_THREADS}"
                );
                crate::report::stderr_line(format_args!("{msg}"));
                crate::report::log_warn(format_args!("{msg}"));
                DEFAULT_THREADS
            }
        };
        Pool {
            state: Mutex::new(PoolState { jobs: VecDeque::new(), threads: 0, idle: 0 }),
            cond: Condvar::new(),
            max: AtomicUsize::new(max),
        }
    })
}

/// The most OS threads the pool runs at once.
pub fn max_threads() -> usize {
    pool().max.load(Ordering::Relaxed)
}

/// Sets the most OS threads the pool runs at once (at least 1).
pub fn set_max_threads(n: usize) {
    pool().max.store(n.max(1), Ordering::Relaxed);
}

/// Runs `f` on a pool thread and parks the calling green thread (only it)
/// until `f` returns; returns its value. A panic in `f` is resumed in the
/// caller.
///
/// If the caller is killed while waiting, `f` still runs to its end on the
/// pool thread and its result is dropped there. If `f` returns as the
/// caller's [`Timeout`](crate::Timeout) expires, its value wins (the
/// timeout fires at the next blocking call).
///
/// A caller that cannot wait, because it is unwinding (see
/// [`timeout`](crate::timeout#while-unwinding)), runs `f` itself, blocking
/// its OS thread as the call would block a plain thread.
pub fn execute<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if !hub::may_switch() {
        return f();
    }
    let done: Arc<Mutex<Option<std::thread::Result<R>>>> = Arc::new(Mutex::new(None));
    let unparker = current().unparker();
    let slot = done.clone();
    submit(Box::new(move || {
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        unparker.unpark();
    }));
    let take = || done.lock().unwrap_or_else(|e| e.into_inner()).take();
    loop {
        if let Some(r) = take() {
            return r.unwrap_or_else(|p| panic::resume_unwind(p));
        }
        if let Err(e) = hub::with_hub(|h| h.park_result(None)) {
            match take() {
                Some(r) => return r.unwrap_or_else(|p| panic::resume_unwind(p)),
                None => panic::resume_unwind(Box::new(e)),
            }
        }
    }
}

fn submit(job: Job) {
    let pool = pool();
    let mut st = pool.state.lock().unwrap_or_else(|e| e.into_inner());
    st.jobs.push_back(job);
    // Idle threads stay counted as idle until they wake up and take a job:
    // start another thread unless there is an idle one for every queued
    // job (comparing with `idle == 0` handed a burst of calls to the one
    // idle thread, which ran them one after another).
    if st.jobs.len() > st.idle && st.threads < pool.max.load(Ordering::Relaxed) {
        st.threads += 1;
        let spawned = std::thread::Builder::new().name("eventlet-tpool".into()).spawn(worker);
        if spawned.is_err() {
            st.threads -= 1;
            if st.threads == 0 {
                // No thread can run the job: run it here rather than hang.
                let job = st.jobs.pop_back().expect("just pushed");
                drop(st);
                job();
            }
        }
    } else {
        pool.cond.notify_one();
    }
}

/// Keeps the pool's count of threads right if a worker's job unwinds (jobs
/// catch the panics of the functions they run, so this is a last resort).
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        if std::thread::panicking() {
            pool().state.lock().unwrap_or_else(|e| e.into_inner()).threads -= 1;
        }
    }
}

fn worker() {
    // A pool thread exists to block: its calls are never patched.
    #[cfg(all(feature = "monkey-patch", target_os = "linux"))]
    crate::patcher::exempt_this_thread();
    let pool = pool();
    let _counted = Counted;
    let mut st = pool.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = pool.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.idle += 1;
        let (g, timeout) = pool.cond.wait_timeout(st, IDLE_EXIT).unwrap_or_else(|e| e.into_inner());
        st = g;
        st.idle -= 1;
        if timeout.timed_out() && st.jobs.is_empty() {
            st.threads -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_from_env;

    #[test]
    fn the_pool_size_from_the_environment_is_a_whole_number_of_at_least_one() {
        let env = |s: &str| size_from_env(Some(s.into()));
        assert_eq!(size_from_env(None), Ok(None));
        assert_eq!(env("7"), Ok(Some(7)));
        assert_eq!(env(" 12\n"), Ok(Some(12)));
        for bad in ["0", "-3", "abc", "", "2.5", "99999999999999999999999"] {
            assert_eq!(env(bad), Err(bad.to_owned()), "{bad:?}");
        }
    }
}
