//! A watchdog for green threads that hold their hub too long: a CPU loop or
//! a blocking call (`std::thread::sleep`, std I/O, a slow lock) on a green
//! thread starves every other green thread of its hub, and nothing in the
//! hub can notice while it is held. An OS thread can: it samples the hub's
//! switch counter and reports a green thread that has run for longer than a
//! threshold without letting another one run.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{with_hub, HubShared};

/// A green thread that held its hub too long, as the watchdog saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stall {
    /// The green thread's id ([`GreenThread::id`](crate::GreenThread::id)).
    pub green_thread: u64,
    /// The id of its hub ([`Handle::id`](super::Handle::id)).
    pub hub: u64,
    /// How long it had run without switching when reported (at least the
    /// threshold; the watchdog looks every quarter threshold).
    pub held_for: Duration,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "green thread {} has held its hub (hub {}) for {:.3}s without yielding (a CPU loop, or a blocking \
             call that belongs in tpool::execute); the other green threads of that hub are starved",
            self.green_thread,
            self.hub,
            self.held_for.as_secs_f64()
        )
    }
}

/// Starts a watchdog OS thread for the current OS thread's hub: whenever a
/// green thread runs for longer than `threshold` without switching, it
/// calls `report` once for that stall (from the watchdog's thread). It
/// stops when the hub's thread exits.
///
/// `report` of `None` logs the stall (`log::warn!`) and prints it on
/// stderr. Setting `EVENTLET_WATCHDOG_MS=N` in the environment starts such
/// a watchdog, with threshold N ms, for every hub of the process.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// eventlet::hub::watchdog(Duration::from_millis(50), Some(Box::new(move |stall| s.lock().unwrap().push(stall))));
/// let hog = eventlet::spawn(|| std::thread::sleep(Duration::from_millis(300))); // blocks the hub
/// let id = hog.thread().id();
/// hog.join().unwrap();
/// assert_eq!(seen.lock().unwrap()[0].green_thread, id);
/// ```
pub fn watchdog(threshold: Duration, report: Option<Box<dyn Fn(Stall) + Send>>) {
    start(vec![with_hub(|h| Arc::downgrade(&h.shared))], threshold, report);
}

/// Starts the watchdog of every new hub if `EVENTLET_WATCHDOG_MS` is set
/// (the threshold in milliseconds), reporting on stderr.
pub(super) fn start_from_env(shared: &Arc<HubShared>) {
    let Some(ms) = std::env::var_os("EVENTLET_WATCHDOG_MS") else { return };
    match ms.to_str().and_then(|s| s.parse::<u64>().ok()).filter(|&ms| ms > 0) {
        Some(ms) => start(vec![Arc::downgrade(shared)], Duration::from_millis(ms), None),
        None => crate::report::stderr_line(format_args!(
            "EVENTLET_WATCHDOG_MS={ms:?} is not a number of milliseconds; no watchdog"
        )),
    }
}

/// Starts one watchdog OS thread over `hubs`; it stops once every one of
/// them is gone.
pub(super) fn start(hubs: Vec<Weak<HubShared>>, threshold: Duration, report: Option<Box<dyn Fn(Stall) + Send>>) {
    let report = report.unwrap_or_else(|| {
        Box::new(|stall: Stall| {
            crate::report::log_warn(format_args!("{stall}"));
            crate::report::stderr_line(format_args!("{stall}"));
        })
    });
    let spawned =
        std::thread::Builder::new().name("eventlet-watchdog".into()).spawn(move || watch(hubs, threshold, report));
    if let Err(e) = spawned {
        crate::report::log_error(format_args!("cannot start the watchdog thread: {e}"));
    }
}

/// What the watchdog last saw of one hub.
struct Seen {
    hub: Weak<HubShared>,
    /// (switch count, running id, since when) of the current run.
    run: Option<(u64, u64, Instant)>,
    reported: bool,
}

fn watch(hubs: Vec<Weak<HubShared>>, threshold: Duration, report: Box<dyn Fn(Stall) + Send>) {
    let tick = (threshold / 4).max(Duration::from_millis(1));
    let mut seen: Vec<Seen> = hubs.into_iter().map(|hub| Seen { hub, run: None, reported: false }).collect();
    while !seen.is_empty() {
        std::thread::sleep(tick);
        seen.retain_mut(|s| {
            let Some(hub) = s.hub.upgrade() else { return false };
            let switches = hub.switches.load(Ordering::Relaxed);
            let running = hub.running.load(Ordering::Relaxed);
            let id = hub.id;
            drop(hub);
            let now = Instant::now();
            match s.run {
                Some((sw, r, since)) if sw == switches && r == running && running != 0 => {
                    let held_for = now - since;
                    if held_for >= threshold && !s.reported {
                        s.reported = true;
                        let stall = Stall { green_thread: running, hub: id, held_for };
                        // A report that panics must not end the watch.
                        if crate::report::contain(|| report(stall)).is_none() {
                            crate::report::stderr_line(format_args!("the watchdog's report panicked on: {stall}"));
                        }
                    }
                }
                _ => {
                    s.run = Some((switches, running, now));
                    s.reported = false;
                }
            }
            true
        });
    }
}
