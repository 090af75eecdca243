//! Green threads: spawn, join, panics, kill, sleep, yield, park.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::{Builder, Killed, Wakeup};
use util::sleep_until;

#[test]
fn spawn_join_returns_value() {
    let h = eventlet::spawn(|| 40 + 2);
    assert!(!h.is_finished());
    assert_eq!(h.join().unwrap(), 42);
}

#[test]
fn closures_need_not_be_send() {
    let shared = Rc::new(RefCell::new(Vec::new()));
    let hs: Vec<_> = (0..10)
        .map(|i| {
            let s = shared.clone();
            eventlet::spawn(move || s.borrow_mut().push(i))
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*shared.borrow(), (0..10).collect::<Vec<_>>());
}

#[test]
fn panic_reaches_join() {
    let n = std::hint::black_box(7);
    let h = eventlet::spawn(move || -> u32 { panic!("boom {n}") });
    let err = h.join().unwrap_err();
    assert_eq!(err.downcast_ref::<String>().map(String::as_str), Some("boom 7"));
}

#[test]
fn spawn_n_panic_leaves_others_running() {
    let done = Rc::new(Cell::new(0));
    for i in 0..10 {
        let d = done.clone();
        eventlet::spawn_n(move || {
            eventlet::sleep(Duration::from_millis(5));
            if i == 3 {
                panic!("handler {i} fails");
            }
            d.set(d.get() + 1);
        });
    }
    let d = done.clone();
    let after = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(30));
        d.get()
    });
    assert_eq!(after.join().unwrap(), 9);
    assert_eq!(eventlet::hub::stats().green_threads, 0);
}

#[test]
fn sleep_order_follows_deadlines() {
    let order = Rc::new(RefCell::new(Vec::new()));
    let mut hs = Vec::new();
    let start = Instant::now();
    for ms in [30u64, 10, 20, 0, 5] {
        let o = order.clone();
        hs.push(eventlet::spawn(move || {
            sleep_until(start + Duration::from_millis(ms));
            o.borrow_mut().push(ms);
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*order.borrow(), vec![0, 5, 10, 20, 30]);
    assert_eq!(eventlet::hub::stats().timers, 0);
}

#[test]
fn sleep_lateness_is_bounded_under_load() {
    // 200 green threads that yield in a busy loop; a sleeper must still wake
    // soon after its deadline. "Soon" is counted in the turns the others
    // take between the deadline and the wake-up (the loop looks at timers
    // at least every batch of 256 turns, then the sleeper waits its turn
    // behind the 200): a count, so a loaded machine cannot fail it, while
    // a loop that starved timers would.
    let stop = Rc::new(Cell::new(false));
    let turns = Rc::new(Cell::new(0u64));
    let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
    let due_at = Rc::new(Cell::new(None::<u64>));
    let busy: Vec<_> = (0..200)
        .map(|_| {
            let (stop, turns, deadline, due_at) = (stop.clone(), turns.clone(), deadline.clone(), due_at.clone());
            eventlet::spawn(move || {
                // Bounded, so a loop that starved timers fails the test
                // (with a huge count) instead of hanging it.
                while !stop.get() && turns.get() < 5_000_000 {
                    turns.set(turns.get() + 1);
                    if due_at.get().is_none() && deadline.get().is_some_and(|d| Instant::now() >= d) {
                        due_at.set(Some(turns.get()));
                    }
                    eventlet::yield_now();
                }
            })
        })
        .collect();
    let (t, d, due) = (turns.clone(), deadline.clone(), due_at.clone());
    let sleeper = eventlet::spawn(move || {
        let mut worst = 0;
        for _ in 0..20 {
            due.set(None);
            d.set(Some(Instant::now() + Duration::from_millis(5)));
            eventlet::sleep(Duration::from_millis(5));
            let woke = t.get();
            worst = worst.max(woke - due.get().unwrap_or(woke));
        }
        worst
    });
    let worst = sleeper.join().unwrap();
    stop.set(true);
    for h in busy {
        h.join().unwrap();
    }
    assert!(worst <= 1_000, "a sleeper woke only after {worst} turns of the others past its deadline");
}

#[test]
fn yield_now_runs_the_others_first() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let a = eventlet::spawn(move || {
        for i in 0..3 {
            l.borrow_mut().push(("a", i));
            eventlet::yield_now();
        }
    });
    let l = log.clone();
    let b = eventlet::spawn(move || {
        for i in 0..3 {
            l.borrow_mut().push(("b", i));
            eventlet::yield_now();
        }
    });
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(*log.borrow(), vec![("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]);
}

/// As eventlet's `sleep(0)`: I/O that is due when a green thread yields is
/// handled before it runs again, from a green thread and from the root,
/// while the ready green threads keep their turns.
#[test]
fn yield_now_lets_due_io_run_first() {
    use eventlet::net::unix::UnixStream;
    use std::io::{Read, Write};

    for from_root in [true, false] {
        let (a, b) = UnixStream::pair().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let reader = eventlet::spawn(move || {
            let mut buf = [0; 1];
            (&a).read_exact(&mut buf).unwrap();
            l.borrow_mut().push("reader");
        });
        let l = log.clone();
        let yielder = move || {
            eventlet::yield_now(); // the reader parks on its read
            let l2 = l.clone();
            let ready = eventlet::spawn(move || l2.borrow_mut().push("ready"));
            (&b).write_all(b"x").unwrap();
            eventlet::yield_now();
            l.borrow_mut().push("yielder");
            ready.join().unwrap();
        };
        if from_root {
            yielder();
        } else {
            eventlet::spawn(yielder).join().unwrap();
        }
        reader.join().unwrap();
        assert_eq!(*log.borrow(), ["ready", "reader", "yielder"], "from the root: {from_root}");
    }
}

#[test]
fn kill_unstarted_never_runs() {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = eventlet::spawn(move || r.set(true));
    h.kill();
    assert!(h.is_finished());
    eventlet::sleep(Duration::from_millis(1));
    assert!(!ran.get());
    assert!(h.join().unwrap_err().is::<Killed>());
}

#[test]
fn kill_delayed_spawn_never_runs() {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    // A delay no stall of the machine reaches before the kill (a short one
    // came due first when this thread stalled between the spawn and the
    // kill); the join and the hub's timers show it is gone.
    let h = eventlet::spawn_after(Duration::from_secs(60), move || r.set(true));
    eventlet::sleep(Duration::from_millis(1));
    h.kill();
    assert_eq!(eventlet::hub::stats().timers, 0);
    assert!(h.join().unwrap_err().is::<Killed>());
    assert!(!ran.get());
}

#[test]
fn spawn_after_waits() {
    let t = Instant::now();
    let h = eventlet::spawn_after(Duration::from_millis(20), move || t.elapsed());
    assert!(h.join().unwrap() >= Duration::from_millis(20));
}

struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn kill_parked_unwinds_destructors() {
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    let h = eventlet::spawn(move || {
        let _flag = DropFlag(d);
        eventlet::sleep(Duration::from_secs(3600));
    });
    eventlet::yield_now(); // let it start and park
    assert!(!dropped.get());
    h.kill();
    assert!(dropped.get(), "kill ran the destructors before returning");
    assert!(h.is_finished());
    assert!(h.join().unwrap_err().is::<Killed>());
    assert_eq!(eventlet::hub::stats().timers, 0);
}

#[test]
fn park_unpark_and_timeout() {
    let me = eventlet::current();
    let h = eventlet::spawn(move || me.unpark());
    assert_eq!(eventlet::park_timeout(Duration::from_secs(5)), Wakeup::Unparked);
    h.join().unwrap();
    assert_eq!(eventlet::park_timeout(Duration::from_millis(5)), Wakeup::TimedOut);
}

#[test]
fn unpark_from_another_os_thread() {
    let h = eventlet::spawn(|| {
        let u = eventlet::current().unparker();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            u.unpark();
        });
        eventlet::park_timeout(Duration::from_secs(10))
    });
    assert_eq!(h.join().unwrap(), Wakeup::Unparked);
}

#[test]
fn two_os_threads_each_with_a_hub() {
    let ts: Vec<_> = (0..2)
        .map(|k| {
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..100)
                    .map(|i| {
                        eventlet::spawn(move || {
                            eventlet::sleep(Duration::from_millis(1));
                            i * k
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            })
        })
        .collect();
    let sums: Vec<u64> = ts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(sums, vec![0, 4950]);
}

#[test]
fn builder_names_and_checks_stack_size() {
    let err = Builder::new().stack_size(1024).spawn(|| ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("minimum"), "{err}");
    let h = Builder::new().name("w").spawn(|| eventlet::current().name().unwrap().to_owned()).unwrap();
    assert_eq!(h.join().unwrap(), "w");
    assert_eq!(eventlet::current().name(), Some("main"));
}

#[test]
#[should_panic(expected = "deadlock")]
fn root_parked_with_nothing_to_wake_it_is_an_error() {
    let h = eventlet::spawn(eventlet::park);
    h.join().unwrap();
}

#[test]
fn many_green_threads() {
    let n = if cfg!(debug_assertions) { 20_000 } else { 100_000 };
    let hs: Vec<_> = (0..n)
        .map(|i| {
            eventlet::spawn(move || {
                eventlet::yield_now();
                i
            })
        })
        .collect();
    let sum: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, n * (n - 1) / 2);
}

/// An order of events, shared by a test and its green threads.
#[derive(Clone, Default)]
struct Events(Rc<RefCell<Vec<String>>>);

impl Events {
    fn push(&self, e: impl Into<String>) {
        self.0.borrow_mut().push(e.into());
    }

    fn get(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
}

eventlet::green_local! {
    /// A green-local whose destructor notes when it ran.
    static NOTE_ON_DROP: RefCell<Option<NoteOnDrop>> = RefCell::new(None);
}

struct NoteOnDrop(Events, &'static str);

impl Drop for NoteOnDrop {
    fn drop(&mut self) {
        self.0.push(self.1);
    }
}

#[test]
fn linked_callbacks_run_in_order_on_the_green_thread_before_join_returns_and_its_locals_drop() {
    let ev = Events::default();
    let e = ev.clone();
    let h = eventlet::spawn(move || {
        NOTE_ON_DROP.set(Some(NoteOnDrop(e.clone(), "green-local dropped")));
        e.push("body");
        7
    });
    let id = h.thread().id();
    for n in 1..=3 {
        let e = ev.clone();
        h.link(move |r| {
            assert_eq!(eventlet::current().id(), id, "runs on the green thread that ends");
            e.push(format!("link {n} got {}", r.as_ref().unwrap()));
        });
    }
    assert!(!h.is_finished());
    assert_eq!(h.join().unwrap(), 7, "the callbacks saw the result by reference; join still gets it");
    assert_eq!(ev.get(), ["body", "link 1 got 7", "link 2 got 7", "link 3 got 7", "green-local dropped"]);
}

#[test]
fn unlink_removes_a_callback_that_has_not_run() {
    let ev = Events::default();
    let h = eventlet::spawn(|| ());
    let (e1, e2) = (ev.clone(), ev.clone());
    let k1 = h.link(move |_| e1.push("first"));
    let k2 = h.link(move |_| e2.push("second"));
    assert_ne!(k1, k2);
    assert!(h.unlink(k1));
    assert!(!h.unlink(k1), "unlinked already");
    h.join().unwrap();
    assert_eq!(ev.get(), ["second"]);
}

#[test]
fn a_callback_that_panics_is_reported_and_the_next_runs() {
    let ev = Events::default();
    let h = eventlet::spawn(|| "result");
    h.link(|_| panic!("a link callback panics"));
    let e = ev.clone();
    h.link(move |r| e.push(*r.as_ref().unwrap()));
    assert_eq!(h.join().unwrap(), "result");
    assert_eq!(ev.get(), ["result"]);
}

#[test]
fn a_callback_may_block_and_join_waits_for_it() {
    let h = eventlet::spawn(|| 1);
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    h.link(move |_| {
        eventlet::sleep(Duration::from_millis(20));
        d.set(true);
    });
    let started = Instant::now();
    assert_eq!(h.join().unwrap(), 1);
    assert!(done.get(), "join returned before the callback did");
    assert!(started.elapsed() >= Duration::from_millis(20));
}

#[test]
fn a_kill_during_a_blocking_callback_cuts_that_one_short_and_the_others_run() {
    let ev = Events::default();
    let h = eventlet::spawn(|| 5);
    let e = ev.clone();
    h.link(move |_| {
        e.push("sleeping");
        eventlet::sleep(Duration::from_secs(60));
        e.push("not reached");
    });
    let e = ev.clone();
    h.link(move |r| e.push(format!("next got {}", r.as_ref().unwrap())));
    while ev.get().is_empty() {
        eventlet::yield_now();
    }
    h.kill();
    assert_eq!(h.join().unwrap(), 5, "the result stays what the closure returned");
    assert_eq!(ev.get(), ["sleeping", "next got 5"]);
}

#[test]
fn callbacks_get_killed_for_a_green_thread_killed_or_canceled_before_it_started() {
    let got = Rc::new(RefCell::new(Vec::new()));
    for cancel in [false, true] {
        let h = eventlet::spawn(|| 1);
        let g = got.clone();
        h.link(move |r| g.borrow_mut().push(r.as_ref().unwrap_err().is::<Killed>()));
        if cancel {
            assert!(h.cancel());
        } else {
            h.kill();
        }
        assert!(h.is_finished());
        assert!(h.join().unwrap_err().is::<Killed>());
    }
    assert_eq!(*got.borrow(), [true, true]);
}

#[test]
fn a_dropped_handle_still_runs_its_callbacks_with_the_result_then_drops_it() {
    struct Counted(Rc<Cell<u32>>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = Rc::new(Cell::new(0));
    let saw = Rc::new(Cell::new(false));
    let d = drops.clone();
    let h = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(5));
        Counted(d)
    });
    let (s, d) = (saw.clone(), drops.clone());
    h.link(move |r| s.set(r.is_ok() && d.get() == 0));
    drop(h);
    // Until the result is dropped (not a fixed sleep: its green thread's
    // own sleep may come due after a shorter one of ours on a loaded
    // machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    while drops.get() == 0 {
        assert!(Instant::now() < deadline, "the detached green thread's result was never dropped");
        eventlet::sleep(Duration::from_millis(1));
    }
    assert!(saw.get(), "the callback saw the result, not yet dropped");
    assert_eq!(drops.get(), 1, "then the result was dropped, once");
    assert_eq!(eventlet::hub::stats().green_threads, 0);
}

#[test]
fn results_in_completion_order_through_links() {
    // eventlet's fan-out: collect results as they finish, not in spawn
    // order.
    let done = eventlet::Queue::new();
    let start = Instant::now();
    let handles: Vec<_> = [40u64, 10, 30, 20]
        .into_iter()
        .map(|ms| {
            let h = eventlet::spawn(move || {
                sleep_until(start + Duration::from_millis(ms));
                ms
            });
            let done = done.clone();
            h.link(move |r| done.put(*r.as_ref().unwrap()).unwrap());
            h
        })
        .collect();
    let order: Vec<u64> = (0..4).map(|_| done.get().unwrap()).collect();
    assert_eq!(order, [10, 20, 30, 40]);
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn cancel_kills_only_green_threads_that_have_not_started() {
    let ran = Rc::new(Cell::new(0));
    let dropped = Rc::new(Cell::new(false));
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    // Ready, not started: canceled, its closure dropped unrun.
    let (r, f) = (ran.clone(), Flag(dropped.clone()));
    let h = eventlet::spawn(move || {
        let _f = f;
        r.set(r.get() + 1);
    });
    assert!(h.cancel());
    assert!(dropped.get(), "the closure was dropped (by its own green thread) before cancel returned");
    assert!(!h.cancel(), "canceled already");
    h.kill(); // nothing more to do
    assert!(h.join().unwrap_err().is::<Killed>());
    assert_eq!(ran.get(), 0);
    // Started (now sleeping): left alone.
    let h = eventlet::spawn(|| eventlet::sleep(Duration::from_millis(5)));
    eventlet::yield_now();
    assert!(!h.cancel());
    assert!(h.join().is_ok());
    // Finished: left alone.
    let h = eventlet::spawn(|| 3);
    eventlet::yield_now();
    assert!(h.is_finished());
    assert!(!h.cancel());
    assert_eq!(h.join().unwrap(), 3);
    // Killed: not canceled again.
    let h = eventlet::spawn(|| 4);
    h.kill();
    assert!(!h.cancel());
    assert_eq!(eventlet::hub::stats().green_threads, 0);
}

#[test]
fn a_green_thread_cannot_cancel_itself() {
    type Own = Rc<RefCell<Option<eventlet::JoinHandle<Option<bool>>>>>;
    let own: Own = Rc::new(RefCell::new(None));
    let o = own.clone();
    let h = eventlet::spawn(move || {
        eventlet::yield_now(); // its own handle is put in `own` meanwhile
        let canceled = o.borrow().as_ref().map(|me| me.cancel());
        canceled
    });
    *own.borrow_mut() = Some(h);
    while !own.borrow().as_ref().unwrap().is_finished() {
        eventlet::yield_now();
    }
    let h = own.borrow_mut().take().unwrap();
    assert_eq!(h.join().unwrap(), Some(false), "running: it goes on");
}

#[test]
fn spawn_after_local_is_canceled_when_the_scheduler_ends_however_it_ends() {
    let ran = Rc::new(Cell::new(0));
    // Ends by a kill. (A long delay, and its handle kept to see it end:
    // with a short one, a machine that stalls between the scheduler's
    // start and the kill lets it come due first.)
    let r = ran.clone();
    let later = Rc::new(RefCell::new(None));
    let l = later.clone();
    let scheduler = eventlet::spawn(move || {
        *l.borrow_mut() = Some(eventlet::spawn_after_local(Duration::from_secs(60), move || r.set(r.get() + 1)));
        eventlet::sleep(Duration::from_secs(60));
    });
    eventlet::yield_now();
    scheduler.kill();
    let later = later.borrow_mut().take().expect("the scheduler ran");
    assert!(later.join().unwrap_err().is::<Killed>(), "the delayed spawn of a killed scheduler still ran");
    // Ends by a panic.
    let r = ran.clone();
    let panicker = eventlet::spawn(move || {
        drop(eventlet::spawn_after_local(Duration::from_millis(10), move || r.set(r.get() + 1)));
        std::panic::resume_unwind(Box::new("quietly"));
    });
    assert!(panicker.join().is_err());
    // One that has not started when its scheduler returns does not run.
    let r = ran.clone();
    let scheduler =
        eventlet::spawn(move || eventlet::spawn_after_local(Duration::from_millis(1), move || r.set(r.get() + 1)));
    let unstarted = scheduler.join().unwrap();
    // One that started before its scheduler ended goes on.
    let r = ran.clone();
    let scheduler = eventlet::spawn(move || {
        let h = eventlet::spawn_after_local(Duration::from_millis(1), move || {
            eventlet::sleep(Duration::from_millis(10));
            r.set(r.get() + 10);
        });
        eventlet::sleep(Duration::from_millis(5));
        h
    });
    let started = scheduler.join().unwrap();
    // From the root, which does not end: it runs.
    let r = ran.clone();
    let from_root = eventlet::spawn_after_local(Duration::from_millis(1), move || r.set(r.get() + 100));
    eventlet::sleep(Duration::from_millis(30));
    assert_eq!(ran.get(), 110, "the started one and the root's ran, none of the others");
    assert!(unstarted.join().unwrap_err().is::<Killed>());
    started.join().unwrap();
    from_root.join().unwrap();
    assert_eq!(eventlet::hub::stats().green_threads, 0);
}
