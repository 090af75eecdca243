//! The watchdog reports a green thread that holds its hub, once per stall,
//! and stays quiet for green threads that yield and for an idle hub.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlet::hub::{self, Stall};

fn start(threshold_ms: u64) -> Arc<Mutex<Vec<Stall>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    hub::watchdog(Duration::from_millis(threshold_ms), Some(Box::new(move |stall| s.lock().unwrap().push(stall))));
    seen
}

#[test]
fn a_blocking_green_thread_is_reported_once() {
    let seen = start(40);
    let hog = eventlet::spawn(|| std::thread::sleep(Duration::from_millis(400)));
    let id = hog.thread().id();
    hog.join().unwrap();
    // Give the watchdog a look after the stall ended.
    std::thread::sleep(Duration::from_millis(50));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].green_thread, id);
    assert!(seen[0].held_for >= Duration::from_millis(40), "{seen:?}");
    assert!(seen[0].to_string().contains("tpool::execute"));
}

#[test]
fn yielding_green_threads_and_an_idle_hub_are_not_reported() {
    // A generous threshold: a 2 ms sleep must not look like a stall even
    // on a machine that stalls this thread for a while. The busy green
    // thread runs for longer than the threshold in all: were its yields
    // not seen as switches, it would be reported.
    let seen = start(500);
    let busy = eventlet::spawn(|| {
        let end = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
            eventlet::yield_now();
        }
    });
    busy.join().unwrap();
    // Idle: the root sleeps in the hub, nothing runs.
    eventlet::sleep(Duration::from_millis(400));
    assert!(seen.lock().unwrap().is_empty(), "{:?}", seen.lock().unwrap());
}
