//! A group of hubs: spawning onto the least loaded or a chosen hub, join
//! handles that work from any thread, a panic that stays in its green
//! thread, shutdown with a grace period, inspection and the watchdog over
//! every hub, and the default size following the CPU affinity.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlet::hub::{self, Group, Stall};

/// Waits (polling, bounded) until `cond` holds.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn spawned_closures_run_on_the_groups_threads_and_join_from_anywhere() {
    let group = Group::builder().hubs(3).name("grp").build().unwrap();
    assert_eq!(group.len(), 3);
    // Each job waits for the gate, opened once all are spawned: none ends
    // while the spawns are counted (on a stalled spawning thread, short
    // jobs could end between spawns and leave the first hubs the least
    // loaded every time).
    let (gate, gate_rx) = eventlet::channel::unbounded::<()>();
    let handles: Vec<_> = (0..30u64)
        .map(|i| {
            let gate_rx = gate_rx.clone();
            group
                .spawn(move || {
                    // Not Send inside: an Rc lives on the hub.
                    let local = std::rc::Rc::new(i);
                    let _ = gate_rx.recv();
                    (*local * 2, std::thread::current().name().unwrap().to_owned())
                })
                .unwrap()
        })
        .collect();
    drop((gate, gate_rx));
    // Joined from a plain OS thread, from a green thread, and from here.
    let mut handles = handles.into_iter();
    let first = handles.next().unwrap();
    let from_thread = std::thread::spawn(move || first.join().unwrap()).join().unwrap();
    assert_eq!(from_thread.0, 0);
    let second = handles.next().unwrap();
    let from_green = eventlet::spawn(move || second.join().unwrap()).join().unwrap();
    assert_eq!(from_green.0, 2);
    let rest: Vec<(u64, String)> = handles.map(|h| h.join().unwrap()).collect();
    assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), (2..30).map(|i| i * 2).collect::<Vec<_>>());
    assert!(rest.iter().all(|r| r.1.starts_with("grp-")), "{rest:?}");
    // Thirty jobs spread over all three hubs.
    for i in 0..3 {
        assert!(rest.iter().any(|r| r.1 == format!("grp-{i}")), "hub {i} got nothing: {rest:?}");
    }
    group.join();
}

#[test]
fn spawning_onto_the_least_loaded_hub_picks_it() {
    let group = Group::with_hubs(2).unwrap();
    // Hub 0 holds 50 sleeping green threads.
    let (tx, rx) = eventlet::channel::unbounded::<()>();
    for _ in 0..50 {
        let rx = rx.clone();
        group
            .spawn_on(0, move || {
                let _ = rx.recv();
            })
            .unwrap();
    }
    // Counted once spawned there, not twice (as queued and alive) any more.
    wait_until("hub 0's green threads are up", || group.load(0) == 50);
    assert_eq!(group.least_loaded(), 1);
    let h = group.spawn(|| std::thread::current().name().unwrap().to_owned()).unwrap();
    assert_eq!(h.hub_id(), group.handle(1).id());
    assert_eq!(h.join().unwrap(), "eventlet-hub-1");
    wait_until("that one has ended", || group.load(1) == 0);
    // A burst of spawns while both hubs are held (a green thread blocks
    // each): none starts, so only the queued count tells the loads apart.
    // They go to hub 1 until it has caught up with hub 0, then alternate.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    for i in 0..2 {
        let (go, held) = (go_rx.clone(), held_tx.clone());
        drop(group.spawn_on(i, move || {
            held.send(()).unwrap();
            let _ = go.lock().unwrap().recv_timeout(Duration::from_secs(10));
        }));
    }
    for _ in 0..2 {
        held_rx.recv().unwrap();
    }
    assert_eq!((group.load(0), group.load(1)), (51, 1));
    let burst: Vec<_> =
        (0..60).map(|_| group.spawn(|| std::thread::current().name().unwrap().to_owned()).unwrap()).collect();
    assert_eq!((group.load(0), group.load(1)), (56, 56));
    drop(go_tx);
    let names: Vec<String> = burst.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.ends_with("-1")).count(), 55);
    drop(tx);
    group.join();
}

#[test]
fn a_panic_stays_in_its_green_thread_and_the_group_goes_on() {
    let group = Group::with_hubs(2).unwrap();
    let h = group.spawn_on(1, || -> u32 { panic!("boom in a handler") }).unwrap();
    let err = h.join().unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"boom in a handler"));
    // The same hub runs the next one.
    assert_eq!(group.spawn_on(1, || 7).unwrap().join().unwrap(), 7);
    // A detached panic is reported and goes no further either.
    drop(group.spawn_on(1, || panic!("detached boom")).unwrap());
    assert_eq!(group.spawn_on(1, || 8).unwrap().join().unwrap(), 8);
    group.join();
}

/// Counts its drops: proves a killed green thread unwound.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_waits_out_the_grace_period_then_kills_what_is_left() {
    let group = Group::with_hubs(2).unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    // Four that finish within the grace period, six that never would.
    // (The grace is long beside the four's nap: a hub stalled past both
    // would see the nap and the grace end in one turn.)
    let grace = Duration::from_secs(1);
    let mut stuck = Vec::new();
    for i in 0..10 {
        let d = Dropped(dropped.clone());
        let f = finished.clone();
        let h = group
            .spawn_on(i % 2, move || {
                let _d = d;
                let nap = if i < 4 { Duration::from_millis(50) } else { Duration::from_secs(3600) };
                eventlet::sleep(nap);
                f.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        if i >= 4 {
            stuck.push(h);
        }
    }
    // A handle held elsewhere does not keep a shutting-down hub alive.
    let kept = group.handle(0).clone();
    wait_until("all ten started", || group.load(0) + group.load(1) == 10);
    let start = Instant::now();
    let killed = group.shutdown(grace);
    let took = start.elapsed();
    assert_eq!(killed, 6);
    assert_eq!(finished.load(Ordering::SeqCst), 4);
    assert_eq!(dropped.load(Ordering::SeqCst), 10, "every closure's captures were dropped");
    assert!(took >= grace && took < Duration::from_secs(10), "{took:?}");
    for h in stuck {
        let payload = h.join().unwrap_err();
        assert!(payload.is::<eventlet::Killed>());
    }
    let err = kept.spawn(|| ()).unwrap_err();
    assert_eq!(err.to_string(), "the hub's OS thread has exited");
}

#[test]
fn shutdown_returns_early_when_everything_is_done() {
    let group = Group::with_hubs(2).unwrap();
    let h = group.spawn(|| eventlet::sleep(Duration::from_millis(20))).unwrap();
    let start = Instant::now();
    assert_eq!(group.shutdown(Duration::from_secs(30)), 0);
    assert!(start.elapsed() < Duration::from_secs(10));
    h.join().unwrap();
}

#[test]
fn join_waits_for_the_green_threads() {
    let group = Group::with_hubs(2).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..20 {
        let done = done.clone();
        drop(group.spawn_on(i % 2, move || {
            eventlet::sleep(Duration::from_millis(30));
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    group.join();
    assert_eq!(done.load(Ordering::SeqCst), 20);
}

#[test]
fn inspect_sees_every_hub_and_its_green_threads() {
    let group = Group::builder().hubs(2).name("seen").build().unwrap();
    let (tx, rx) = eventlet::channel::bounded::<()>(0);
    for i in 0..2 {
        let rx = rx.clone();
        group
            .spawn_on(i, move || {
                eventlet::Builder::new()
                    .name(format!("waiter-{i}"))
                    .spawn_n(move || {
                        let _ = rx.recv();
                    })
                    .unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }
    let reports = group.inspect();
    assert_eq!(reports.len(), 2);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.id, group.handle(i).id());
        assert_eq!(r.thread, format!("seen-{i}"));
        assert_eq!(r.group, Some(("seen".to_owned(), i)));
        let (stats, threads) = r.answer.as_ref().expect("the hub answered");
        assert_eq!(stats.green_threads, 1, "the inspector itself is left out: {threads:?}");
        let names: Vec<_> = threads.iter().filter_map(|t| t.name.clone()).collect();
        assert_eq!(names, ["main".to_owned(), format!("waiter-{i}")]);
        assert!(r.to_string().starts_with(&format!("hub {} (thread \"seen-{i}\", group \"seen\" #{i})", r.id)));
    }
    // The process-wide view: this thread's hub first, then the group's.
    let all = hub::inspect();
    assert!(all.len() >= 3);
    assert_eq!(all[0].id, hub::handle().id());
    assert!(all.iter().any(|r| r.id == group.handle(1).id()));
    drop(tx);
    group.join();
}

#[test]
fn a_hub_held_by_a_green_thread_does_not_answer_and_the_watchdog_says_which() {
    let group = Group::with_hubs(2).unwrap();
    let seen: Arc<Mutex<Vec<Stall>>> = Arc::default();
    let s = seen.clone();
    group.watchdog(Duration::from_millis(100), Some(Box::new(move |stall| s.lock().unwrap().push(stall))));
    // The hog holds hub 1 (blocking its OS thread) until released after
    // the inspection, not for a fixed time a stalled machine could use up.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let hog = group
        .spawn_on(1, move || {
            held_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
        })
        .unwrap();
    held_rx.recv().unwrap();
    // Held for at least the inspection's second: past the threshold.
    let reports = group.inspect();
    assert!(reports[0].answer.is_some());
    assert!(reports[1].answer.is_none(), "{:?}", reports[1]);
    assert!(reports[1].to_string().contains("did not answer"));
    release_tx.send(()).unwrap();
    hog.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].hub, group.handle(1).id());
    drop(seen);
    group.join();
}

#[test]
fn the_default_size_follows_the_cpu_affinity() {
    assert_eq!(hub::cores(), std::thread::available_parallelism().unwrap().get());
    // A thread allowed on one CPU (threads it starts inherit that) gets a
    // group of one hub.
    std::thread::spawn(|| {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; the call reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
        }
        assert_eq!(hub::cores(), 1);
        let group = Group::new().unwrap();
        assert_eq!(group.len(), 1);
        group.join();
    })
    .join()
    .unwrap();
    assert!(Group::with_hubs(0).is_err());
}

#[test]
fn a_dropped_group_lets_its_green_threads_finish() {
    let group = Group::with_hubs(2).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..2 {
        let done = done.clone();
        drop(group.spawn_on(i, move || {
            eventlet::sleep(Duration::from_millis(50));
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    drop(group);
    wait_until("both finished", || done.load(Ordering::SeqCst) == 2);
}

/// The message of a green thread's panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn joining_or_shutting_down_a_group_from_its_own_hub_panics_instead_of_waiting_forever() {
    for shutdown in [false, true] {
        let group = Group::with_hubs(2).unwrap();
        let on = group.handle(1).clone();
        let job = on
            .spawn(move || {
                if shutdown {
                    group.shutdown(Duration::from_secs(3600));
                } else {
                    group.join();
                }
            })
            .unwrap();
        drop(on);
        let ended = job.join_timeout(Duration::from_secs(5)).expect("it waits for itself");
        let msg = panic_message(ended.unwrap_err().as_ref());
        assert!(msg.contains("hub 1 of the group itself"), "{msg}");
    }

    let hub = hub::start("joins-itself").unwrap();
    let on = hub.handle().clone();
    let job = on.spawn(move || hub.join()).unwrap();
    drop(on);
    let ended = job.join_timeout(Duration::from_secs(5)).expect("it waits for itself");
    let msg = panic_message(ended.unwrap_err().as_ref());
    assert!(msg.contains("the hub thread itself"), "{msg}");
}

#[test]
fn shutdown_kills_green_threads_that_nothing_can_wake_instead_of_leaking_them() {
    let group = Group::with_hubs(1).unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = Dropped(dropped.clone());
    let stuck = group
        .spawn(move || {
            let _d = d;
            // Nobody else can ever set it.
            eventlet::Event::<()>::new().wait();
        })
        .unwrap();
    wait_until("it waits", || group.load(0) == 1);
    let killed = group.shutdown(Duration::from_secs(3600));
    assert_eq!(killed, 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "its captures were leaked with the hub, not dropped");
    let ended = stuck.join_timeout(Duration::from_secs(5)).expect("its handle waits forever");
    assert!(ended.unwrap_err().is::<eventlet::Killed>());
}
