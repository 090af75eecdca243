//! Scopes: green threads borrow from the caller's stack and all end before
//! `scope` returns or unwinds — after the body returns, when it panics,
//! when a green thread of the scope panics (which cancels the rest), when
//! the green thread running the scope is killed or times out while it
//! waits, even when it is killed again during the cancellation. Nothing
//! is left behind: no green thread, no timer.

mod util;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::Killed;
use util::{assert_clean, ms};

/// Records `name` in `log` when dropped, after sleeping `linger` (a
/// destructor that blocks, like closing a connection politely).
struct OnDrop<'a> {
    log: &'a RefCell<Vec<String>>,
    name: &'static str,
    linger: Duration,
}

impl Drop for OnDrop<'_> {
    fn drop(&mut self) {
        if !self.linger.is_zero() {
            eventlet::sleep(self.linger);
        }
        self.log.borrow_mut().push(format!("{} dropped", self.name));
    }
}

/// Sleeps until killed (or until its timeout); then, caught and no longer
/// unwinding, takes `linger` to clean up, records `name` in `log` and goes
/// on unwinding. (A cleanup that blocks comes after the kill is caught: a
/// green thread never switches away while it unwinds, so a destructor
/// running then cannot block.)
fn linger_when_killed(log: &RefCell<Vec<String>>, name: &str, linger: Duration) {
    let r = panic::catch_unwind(AssertUnwindSafe(|| eventlet::sleep(Duration::from_secs(30))));
    eventlet::sleep(linger);
    log.borrow_mut().push(format!("{name} dropped"));
    if let Err(p) = r {
        panic::resume_unwind(p);
    }
}

fn payload_str(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(|s| s.as_str())).unwrap_or("?")
}

#[test]
fn green_threads_borrow_the_stack_and_all_end_before_scope_returns() {
    let mut data = vec![1, 2, 3];
    let sum = Cell::new(0);
    let ended = Cell::new(0);
    let r = eventlet::scope(|s| {
        let (sum, ended) = (&sum, &ended);
        for x in &data {
            s.spawn(move || {
                eventlet::sleep(ms(*x * 3));
                sum.set(sum.get() + x);
                ended.set(ended.get() + 1);
            });
        }
        // Handles need not be joined; one is.
        let h = s.spawn(|| data.len() * 10);
        h.join().unwrap()
    });
    assert_eq!(r, 30);
    assert_eq!(ended.get(), 3, "scope returned before its green threads ended");
    assert_eq!(sum.get(), 6);
    data.push(4); // the borrows are over
    assert_clean();
}

#[test]
fn results_and_mutable_borrows_come_back_through_join() {
    let mut a = vec![1];
    let mut b = String::from("x");
    let (la, lb) = eventlet::scope(|s| {
        let ha = s.spawn(|| {
            eventlet::yield_now();
            a.push(2);
            a.len()
        });
        let hb = s.spawn(|| {
            b.push('y');
            &b[..] // a result borrowing from outside
        });
        (ha.join().unwrap(), hb.join().unwrap().len())
    });
    assert_eq!((la, lb, &a[..], &b[..]), (2, 2, &[1, 2][..], "xy"));
    assert_clean();
}

#[test]
fn green_threads_spawn_more_in_the_same_scope_and_scopes_nest() {
    let log = RefCell::new(Vec::new());
    // Order by events, not by sleeps (timers that come due together on a
    // loaded machine run in one batch).
    let child_done = eventlet::Event::<()>::new();
    eventlet::scope(|s| {
        s.spawn(|| {
            s.spawn(|| {
                child_done.wait();
                log.borrow_mut().push("grandchild");
            });
            eventlet::scope(|inner| {
                inner.spawn(|| {
                    eventlet::sleep(ms(2));
                    log.borrow_mut().push("inner");
                });
            });
            log.borrow_mut().push("child after inner scope");
            child_done.send(()).unwrap();
        });
    });
    assert_eq!(*log.borrow(), ["inner", "child after inner scope", "grandchild"]);
    assert_clean();
}

#[test]
fn a_panic_cancels_the_others_and_is_reraised_after_all_ended() {
    let log = RefCell::new(Vec::new());
    let started_late = Cell::new(false);
    let t0 = Instant::now();
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        eventlet::scope(|s| {
            let sleeper = s.spawn(|| {
                let _g = OnDrop { log: &log, name: "sleeper", linger: ms(5) };
                eventlet::sleep(Duration::from_secs(30));
            });
            s.spawn(|| {
                eventlet::sleep(ms(2));
                panic!("child failed");
            });
            // The body runs on and learns of the cancellation.
            let j = sleeper.join();
            assert!(j.unwrap_err().is::<Killed>());
            log.borrow_mut().push("body saw the kill".to_owned());
            // Spawned after the cancellation: never runs.
            let late = s.spawn(|| started_late.set(true));
            assert!(late.join().unwrap_err().is::<Killed>());
        })
    }));
    let p = r.unwrap_err();
    assert_eq!(payload_str(p.as_ref()), "child failed", "the original payload is re-raised");
    assert!(t0.elapsed() < Duration::from_secs(5), "the sleeper was not cancelled");
    assert!(!started_late.get());
    assert_eq!(*log.borrow(), ["sleeper dropped", "body saw the kill"]);
    assert_clean();
}

#[test]
fn a_joined_panic_is_still_reported_by_scope() {
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        eventlet::scope(|s| {
            let h = s.spawn(|| panic!("seen"));
            let p = h.join().unwrap_err();
            assert_eq!(payload_str(p.as_ref()), "seen", "join hands over the payload");
        })
    }));
    assert_eq!(payload_str(r.unwrap_err().as_ref()), "eventlet::scope: a scoped green thread panicked");
    assert_clean();
}

#[test]
fn a_kill_is_not_a_panic_and_cancels_nothing() {
    let other_done = Cell::new(false);
    eventlet::scope(|s| {
        let victim = s.spawn(|| eventlet::sleep(Duration::from_secs(30)));
        s.spawn(|| {
            eventlet::sleep(ms(5));
            other_done.set(true);
        });
        eventlet::yield_now();
        victim.kill();
        assert!(victim.is_finished());
        assert!(victim.join().unwrap_err().is::<Killed>());
    });
    assert!(other_done.get());
    assert_clean();
}

#[test]
fn a_body_panic_kills_and_joins_the_green_threads_before_unwinding_on() {
    let log = RefCell::new(Vec::new());
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        eventlet::scope(|s| {
            s.spawn(|| {
                let _g = OnDrop { log: &log, name: "blocked", linger: ms(10) };
                eventlet::sleep(Duration::from_secs(30));
            });
            s.spawn(|| log.borrow_mut().push("never started".to_owned()));
            eventlet::yield_now(); // both run; the first one blocks
            panic!("body failed");
        })
    }));
    log.borrow_mut().push("unwound past scope".to_owned());
    assert_eq!(payload_str(r.unwrap_err().as_ref()), "body failed");
    assert_eq!(*log.borrow(), ["never started", "blocked dropped", "unwound past scope"]);
    assert_clean();
}

#[test]
fn green_threads_killed_before_they_start_drop_their_closures_unrun() {
    let log = &RefCell::new(Vec::new());
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        eventlet::scope(|s| {
            let g = OnDrop { log, name: "capture", linger: Duration::ZERO };
            s.spawn(move || {
                let _g = g;
                log.borrow_mut().push("ran".to_owned());
            });
            panic!("before it started");
        })
    }));
    assert!(r.is_err());
    assert_eq!(*log.borrow(), ["capture dropped"]);
    assert_clean();
}

/// The regression the design is about: a scope inside a green thread that
/// is killed while it waits in `scope` kills and joins its green threads
/// before the unwinding leaves `scope`, and a second kill during that
/// wait does not cut it short.
#[test]
fn a_killed_owner_waits_for_its_scope_even_when_killed_again() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let owner = eventlet::spawn(move || {
        let local = RefCell::new(Vec::new()); // on the owner's stack
        let _after = OnDrop { log: &l, name: "owner frame", linger: Duration::ZERO };
        eventlet::scope(|s| {
            for (name, linger) in [("a", 20), ("b", 30)] {
                let local = &local;
                let l = &l;
                s.spawn(move || {
                    let r = panic::catch_unwind(AssertUnwindSafe(|| eventlet::sleep(Duration::from_secs(30))));
                    eventlet::sleep(ms(linger)); // blocks after the kill is caught
                    local.borrow_mut().push(name.to_owned()); // touches the owner's stack
                    l.borrow_mut().push(format!("{name} dropped"));
                    panic::resume_unwind(r.unwrap_err());
                });
            }
        });
        unreachable!("the owner is killed before its scope ends");
    });
    eventlet::sleep(ms(5)); // the owner waits in `scope`

    // Timed from before the kill: the children's lingering starts after
    // it, so the join cannot end sooner than the longest (30 ms), however
    // late this green thread runs again.
    let t0 = Instant::now();
    owner.kill(); // the owner cancels its children and waits for them
    eventlet::yield_now();
    assert!(!owner.is_finished(), "the owner left `scope` before its green threads ended");
    owner.kill(); // ignored: the kill was delivered already
    let r = owner.join();
    assert!(r.unwrap_err().is::<Killed>());
    assert!(t0.elapsed() >= ms(30), "the owner left `scope` after {:?}", t0.elapsed());
    assert_eq!(*log.borrow(), ["a dropped", "b dropped", "owner frame dropped"]);
    assert_clean();
}

/// As above, but the first kill arrives during the cancellation after a
/// body panic; it must not cut the wait short either.
#[test]
fn a_kill_during_the_cancellation_wait_is_swallowed() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let failing = Rc::new(Cell::new(false));
    let f = failing.clone();
    let owner = eventlet::spawn(move || {
        let _after = OnDrop { log: &l, name: "owner frame", linger: Duration::ZERO };
        eventlet::scope(|s| {
            s.spawn(|| linger_when_killed(&l, "child", ms(20)));
            eventlet::yield_now();
            f.set(true);
            panic!("body failed");
        });
    });
    // Once the body has failed, the owner has cancelled its child and
    // waits for it (it switched away only there). Not a sleep: one that
    // outlasted the child's 20 ms on a stalled machine (always under
    // valgrind) let the owner finish before the kill.
    while !failing.get() {
        eventlet::yield_now();
    }
    owner.kill();
    assert!(!owner.is_finished());
    let r = owner.join();
    assert_eq!(payload_str(r.unwrap_err().as_ref()), "body failed");
    assert_eq!(*log.borrow(), ["child dropped", "owner frame dropped"]);
    assert_clean();
}

#[test]
fn a_timeout_while_waiting_cancels_the_scope() {
    let log = RefCell::new(Vec::new());
    let started = Cell::new(false);
    let t0 = Instant::now();
    let r = eventlet::with_timeout(ms(10), || {
        eventlet::scope(|s| {
            s.spawn(|| {
                started.set(true);
                linger_when_killed(&log, "slow", ms(10));
            });
            // Until the green thread has started (a yield is no blocking
            // call: the timeout does not fire in it). On a stalled machine
            // the timeout could otherwise expire before it ran, and cancel
            // it unstarted: nothing would linger.
            while !started.get() {
                eventlet::yield_now();
            }
        });
    });
    assert!(r.is_err(), "the timeout fired");
    assert!(t0.elapsed() >= ms(20), "scope did not wait for the cancelled green thread");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(*log.borrow(), ["slow dropped"]);
    assert_clean();
}

#[test]
fn an_expired_timeout_is_held_back_during_the_cancellation_and_kept_after() {
    let log = RefCell::new(Vec::new());
    let t0 = Instant::now();
    let r = eventlet::with_timeout(ms(5), || {
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            eventlet::scope(|s| {
                s.spawn(|| linger_when_killed(&log, "slow", ms(20)));
                eventlet::yield_now();
                panic!("body failed");
            })
        }));
        assert_eq!(payload_str(r.unwrap_err().as_ref()), "body failed");
        // The timeout expired during the cancellation and still holds.
        eventlet::sleep(Duration::from_secs(30));
    });
    assert!(r.is_err(), "the held-back timeout fired afterwards");
    assert!(t0.elapsed() >= ms(20) && t0.elapsed() < Duration::from_secs(5));
    assert_eq!(*log.borrow(), ["slow dropped"]);
    assert_clean();
}

#[test]
fn forgetting_a_handle_does_not_skip_the_join() {
    let done = Cell::new(false);
    eventlet::scope(|s| {
        let h = s.spawn(|| {
            eventlet::sleep(ms(5));
            done.set(true);
        });
        std::mem::forget(h);
    });
    assert!(done.get());
    assert_clean();
}

#[test]
fn builder_names_scoped_green_threads() {
    let name = eventlet::scope(|s| {
        s.spawn_with(eventlet::Builder::new().name("scoped"), || eventlet::current().name().map(str::to_owned))
            .unwrap()
            .join()
            .unwrap()
    });
    assert_eq!(name.as_deref(), Some("scoped"));
    assert_clean();
}
