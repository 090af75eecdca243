//! Coordination primitives: Event, the semaphores, Lock/Condvar/RwLock and
//! the queues. For each: waiters are served in the order they began to
//! wait; errors hand values back; timeouts leave no timer and no waiter
//! behind; kills (before or after a hand-over) lose nothing and leave no
//! stale waiter. Also runs the producer/consumer example's crawl.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::{JoinHandle, Killed};
use util::{assert_clean, ms};

/// The timeout of a waiter that the test must see waiting before it times
/// out: a stall of the machine between the waiter's start and the check
/// must not reach it (a few milliseconds did on a loaded machine).
const SEEN_FIRST: Duration = Duration::from_secs(1);

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/producer_consumer.rs"]
mod producer_consumer;

/// Yields (letting the others run) until `cond` holds; fails after a
/// while rather than hanging.
fn yield_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        eventlet::yield_now();
    }
}

/// The order green threads began to wait in, and the order they were
/// served in.
struct Order {
    started: Rc<RefCell<Vec<usize>>>,
    served: Rc<RefCell<Vec<usize>>>,
    handles: Vec<JoinHandle<()>>,
}

impl Order {
    /// Spawns `n` green threads; the `i`th yields a few times (so they
    /// begin to wait in an order other than spawn order), records itself
    /// in `started`, calls `wait(i)`, which must block, and records itself
    /// in `served` when it returns. Returns once all are waiting.
    fn spawn<F: Fn(usize) + Clone + 'static>(n: usize, wait: F) -> Order {
        let started = Rc::new(RefCell::new(Vec::new()));
        let served = Rc::new(RefCell::new(Vec::new()));
        let handles = (0..n)
            .map(|i| {
                let (started, served, wait) = (started.clone(), served.clone(), wait.clone());
                eventlet::spawn(move || {
                    for _ in 0..(n - i) % n {
                        eventlet::yield_now();
                    }
                    started.borrow_mut().push(i);
                    wait(i);
                    served.borrow_mut().push(i);
                })
            })
            .collect();
        let s = started.clone();
        yield_until("all waiters started", || s.borrow().len() == n);
        eventlet::yield_now();
        assert!(served.borrow().is_empty(), "a waiter did not block: {:?}", served.borrow());
        let order = started.borrow().clone();
        assert_ne!(order, (0..n).collect::<Vec<_>>(), "the waiters should not wait in spawn order");
        Order { started, served, handles }
    }

    /// Joins the waiters and checks they were served first come, first
    /// served.
    fn assert_fifo(self) {
        for h in self.handles {
            h.join().unwrap();
        }
        assert_eq!(*self.served.borrow(), *self.started.borrow(), "served (left) vs began waiting (right)");
    }
}

mod event {
    use super::*;
    use eventlet::Event;

    #[test]
    fn waiters_wake_in_fifo_order_and_all_get_the_value() {
        let ev = Event::new();
        let got = Rc::new(RefCell::new(Vec::new()));
        let (e, g) = (ev.clone(), got.clone());
        let order = Order::spawn(8, move |i| {
            let v = e.wait();
            g.borrow_mut().push((i, v));
        });
        assert_eq!(ev.waiting(), 8);
        assert!(!ev.ready());
        ev.send("hello").unwrap();
        let started = order.started.borrow().clone();
        order.assert_fifo();
        assert_eq!(*got.borrow(), started.iter().map(|&i| (i, "hello")).collect::<Vec<_>>());
        assert_eq!(ev.waiting(), 0);
        assert_clean();
    }

    #[test]
    fn second_send_hands_the_value_back_and_the_first_stays() {
        let ev = Event::new();
        assert_eq!(ev.get(), None);
        ev.send(vec![1]).unwrap();
        let err = ev.send(vec![2]).unwrap_err();
        assert_eq!(format!("{err:?}"), "SendError(..)");
        assert_eq!(err.to_string(), "event was already sent");
        assert_eq!(err.into_inner(), [2]);
        assert!(ev.ready());
        assert_eq!(ev.get(), Some(vec![1]));
        // Waiting on a sent event returns at once (the root would report a
        // deadlock if it parked here).
        assert_eq!(ev.wait(), [1]);
        assert_eq!(ev.wait_timeout(ms(0)), Ok(vec![1]));
    }

    #[test]
    fn wait_timeout_times_out_and_leaves_no_timer_or_waiter() {
        let ev = Event::<u8>::new();
        let t = Instant::now();
        assert!(ev.wait_timeout(ms(10)).is_err());
        assert!(t.elapsed() >= ms(10));
        assert_eq!(ev.waiting(), 0);
        assert_clean();

        let e = ev.clone();
        let sender = eventlet::spawn(move || {
            eventlet::sleep(ms(5));
            e.send(7).unwrap();
        });
        assert_eq!(ev.wait_timeout(Duration::from_secs(10)), Ok(7));
        sender.join().unwrap();
        assert_clean();
    }

    #[test]
    fn killed_waiter_leaves_the_waiter_list() {
        let ev = Event::<u8>::new();
        let e = ev.clone();
        let h = eventlet::spawn(move || e.wait());
        eventlet::yield_now();
        assert_eq!(ev.waiting(), 1);
        h.kill();
        assert_eq!(ev.waiting(), 0);
        assert!(h.join().unwrap_err().is::<Killed>());
        ev.send(1).unwrap();
        assert_clean();
    }
}

mod semaphore {
    use super::*;
    use eventlet::semaphore::ReleaseError;
    use eventlet::{BoundedSemaphore, CappedSemaphore, Semaphore};

    #[test]
    fn waiters_are_served_fifo() {
        let sem = Semaphore::new(0);
        let s = sem.clone();
        let order = Order::spawn(8, move |_| drop(s.acquire()));
        assert_eq!(sem.waiting(), 8);
        // One permit, passed from each waiter to the next as it is dropped.
        sem.add_permits(1);
        order.assert_fifo();
        assert_eq!(sem.available(), 1);
        assert_clean();
    }

    #[test]
    fn a_newcomer_cannot_barge_past_waiters() {
        let sem = Semaphore::new(1);
        let held = sem.acquire();
        let s = sem.clone();
        let waiter = eventlet::spawn(move || drop(s.acquire()));
        eventlet::yield_now();
        assert_eq!(sem.waiting(), 1);
        drop(held);
        // The permit went to the waiter (not yet running), not to us.
        assert_eq!(sem.available(), 0);
        assert!(sem.try_acquire().is_none());
        assert!(sem.acquire_timeout(ms(0)).is_none());
        waiter.join().unwrap();
        assert_eq!(sem.available(), 1);
        assert!(sem.try_acquire().is_some());
        assert_clean();
    }

    #[test]
    fn add_permits_serves_several_waiters_and_keeps_the_rest() {
        let sem = Semaphore::new(0);
        let s = sem.clone();
        let order = Order::spawn(3, move |_| s.acquire().forget());
        sem.add_permits(5);
        assert_eq!(sem.available(), 2);
        order.assert_fifo();
        assert_eq!(sem.available(), 2, "forgotten permits are not given back");
        assert_clean();
    }

    #[test]
    fn acquire_timeout_leaves_no_timer_or_waiter() {
        let sem = Semaphore::new(0);
        let t = Instant::now();
        assert!(sem.acquire_timeout(ms(10)).is_none());
        assert!(t.elapsed() >= ms(10));
        assert_eq!(sem.waiting(), 0);
        assert_clean();

        // A timed-out waiter in the middle leaves the others in order.
        let s = sem.clone();
        let order = Order::spawn(4, move |_| drop(s.acquire()));
        let s = sem.clone();
        let quitter = eventlet::spawn(move || s.acquire_timeout(SEEN_FIRST).is_some());
        eventlet::yield_now();
        assert_eq!(sem.waiting(), 5);
        assert!(!quitter.join().unwrap());
        assert_eq!(sem.waiting(), 4);
        sem.add_permits(1);
        order.assert_fifo();
        assert_clean();
    }

    #[test]
    fn killed_waiter_leaves_the_list_and_the_next_one_is_served() {
        let sem = Semaphore::new(0);
        let s = sem.clone();
        let first = eventlet::spawn(move || drop(s.acquire()));
        let s = sem.clone();
        let second = eventlet::spawn(move || drop(s.acquire()));
        eventlet::yield_now();
        assert_eq!(sem.waiting(), 2);
        first.kill();
        assert_eq!(sem.waiting(), 1);
        sem.add_permits(1);
        second.join().unwrap();
        assert!(first.join().unwrap_err().is::<Killed>());
        assert_eq!(sem.available(), 1);
        assert_clean();
    }

    #[test]
    fn permit_granted_to_a_killed_waiter_goes_to_the_next() {
        let sem = Semaphore::new(0);
        let s = sem.clone();
        let first = eventlet::spawn(move || drop(s.acquire()));
        let s = sem.clone();
        let second = eventlet::spawn(move || drop(s.acquire()));
        eventlet::yield_now();
        sem.add_permits(1); // granted to `first`, which has not run yet
        assert_eq!(sem.waiting(), 1);
        first.kill();
        assert!(first.join().unwrap_err().is::<Killed>());
        second.join().unwrap();
        assert_eq!(sem.available(), 1, "the permit was neither lost nor doubled");
        assert_clean();
    }

    #[test]
    fn permit_is_given_back_when_its_holder_is_killed() {
        let sem = Semaphore::new(1);
        let s = sem.clone();
        let holder = eventlet::spawn(move || {
            let _p = s.acquire();
            eventlet::sleep(Duration::from_secs(3600));
        });
        eventlet::yield_now();
        assert_eq!(sem.available(), 0);
        holder.kill();
        assert_eq!(sem.available(), 1);
        assert_clean();
    }

    #[test]
    fn permit_moved_into_a_green_thread_killed_before_it_started_is_given_back() {
        let sem = Semaphore::new(1);
        let p = sem.acquire();
        let s = sem.clone();
        let waiter = eventlet::spawn(move || drop(s.acquire()));
        eventlet::yield_now();
        assert_eq!(sem.waiting(), 1);
        let unstarted = eventlet::spawn(move || drop(p));
        unstarted.kill(); // drops its closure, and the permit in it, unrun
        assert_eq!(sem.waiting(), 0, "the permit went to the waiter");
        assert!(unstarted.join().unwrap_err().is::<Killed>());
        waiter.join().unwrap();
        assert_eq!(sem.available(), 1);
        assert_clean();
    }

    #[test]
    fn bounded_release_past_the_bound_is_an_error() {
        let sem = BoundedSemaphore::new(2);
        assert_eq!(sem.release(), Err(sem.release().unwrap_err()));
        let err: ReleaseError = sem.release().unwrap_err();
        assert_eq!(err.to_string(), "semaphore released too many times");
        let p = sem.acquire();
        // A permit out counts: releasing now would make three units.
        assert!(sem.release().is_err());
        sem.acquire().forget();
        assert_eq!(sem.available(), 0);
        sem.release().unwrap();
        assert!(sem.release().is_err());
        drop(p);
        assert_eq!(sem.available(), 2);
        assert_eq!(sem.bound(), 2);
    }

    #[test]
    fn bounded_waiters_are_served_fifo_by_release() {
        let sem = BoundedSemaphore::new(1);
        sem.acquire().forget();
        let s = sem.clone();
        let order = Order::spawn(6, move |_| s.acquire().forget());
        assert_eq!(sem.waiting(), 6);
        for _ in 0..6 {
            sem.release().unwrap();
            eventlet::yield_now();
        }
        order.assert_fifo();
        sem.release().unwrap();
        assert_eq!(sem.available(), 1);
        assert_clean();
    }

    #[test]
    fn capped_acquirers_are_served_fifo() {
        let sem = CappedSemaphore::new(0, 3);
        let s = sem.clone();
        let order = Order::spawn(6, move |_| s.acquire());
        assert_eq!(sem.acquiring(), 6);
        for _ in 0..6 {
            sem.release();
        }
        assert_eq!(sem.available(), 0, "each release went straight to an acquirer");
        order.assert_fifo();
        assert_clean();
    }

    #[test]
    fn capped_release_blocks_at_the_limit_and_releasers_are_served_fifo() {
        let sem = CappedSemaphore::new(2, 2);
        assert!(!sem.try_release());
        assert!(!sem.release_timeout(ms(5)));
        assert_eq!(sem.releasing(), 0);
        assert_clean();
        let s = sem.clone();
        let order = Order::spawn(5, move |_| s.release());
        assert_eq!(sem.releasing(), 5);
        for _ in 0..5 {
            sem.acquire();
            assert_eq!(sem.available(), 2, "a waiting releaser filled the room at once");
        }
        order.assert_fifo();
        assert!(sem.try_acquire());
        assert!(sem.acquire_timeout(ms(0)));
        assert!(!sem.acquire_timeout(ms(5)));
        assert_eq!(sem.available(), 0);
        assert_clean();
    }

    #[test]
    fn capped_limit_zero_is_a_rendezvous() {
        let sem = CappedSemaphore::new(0, 0);
        assert!(!sem.try_release());
        let s = sem.clone();
        let releaser = eventlet::spawn(move || s.release());
        eventlet::yield_now();
        assert_eq!(sem.releasing(), 1);
        assert!(sem.try_acquire());
        releaser.join().unwrap();
        assert_eq!(sem.available(), 0);
        assert_clean();
    }
}

mod lock {
    use super::*;
    use eventlet::{Condvar, Lock, RwLock};
    use std::panic::{self, AssertUnwindSafe};

    #[test]
    fn waiters_are_served_fifo() {
        let lock = Rc::new(Lock::new(Vec::new()));
        let held = lock.lock();
        let l = lock.clone();
        let order = Order::spawn(8, move |i| l.lock().push(i));
        assert_eq!(lock.waiting(), 8);
        assert!(lock.try_lock().is_none());
        drop(held);
        let started = order.started.borrow().clone();
        order.assert_fifo();
        assert_eq!(*lock.lock(), started);
        assert_clean();
    }

    #[test]
    fn killed_holder_parked_in_sleep_does_not_deadlock_the_next_waiter() {
        let lock = Rc::new(Lock::new(0));
        let l = lock.clone();
        let holder = eventlet::spawn(move || {
            let mut g = l.lock();
            *g = 1;
            eventlet::sleep(Duration::from_secs(3600));
            *g = 2;
        });
        eventlet::yield_now();
        assert!(lock.is_locked());
        let l = lock.clone();
        let waiter = eventlet::spawn(move || *l.lock() += 10);
        eventlet::yield_now();
        assert_eq!(lock.waiting(), 1);
        holder.kill();
        assert!(holder.join().unwrap_err().is::<Killed>());
        waiter.join().unwrap();
        // No poisoning: the next `lock()` just succeeds.
        assert_eq!(*lock.lock_timeout(Duration::from_secs(5)).expect("the lock was released"), 11);
        assert_eq!(*lock.lock(), 11);
        assert!(!lock.is_locked());
        assert_clean();
    }

    #[test]
    fn panicking_holder_releases_without_poisoning() {
        let lock = Rc::new(Lock::new(5));
        let l = lock.clone();
        let h = eventlet::spawn(move || {
            let _g = l.lock();
            panic!("holder fails");
        });
        assert!(h.join().is_err());
        let l = lock.clone();
        let r = panic::catch_unwind(AssertUnwindSafe(move || {
            let mut g = l.lock();
            *g += 1;
            panic!("root fails");
        }));
        assert!(r.is_err());
        assert_eq!(*lock.try_lock().expect("released on unwind"), 6);
        assert_clean();
    }

    #[test]
    fn lock_timeout_leaves_no_timer_or_waiter() {
        let lock = Rc::new(Lock::new(()));
        let l = lock.clone();
        // Held until released (not for a sleep: on a stalled machine the
        // holder's sleep came due together with the timeout below).
        let release = eventlet::Event::new();
        let r = release.clone();
        let holder = eventlet::spawn(move || {
            let _g = l.lock();
            r.wait();
        });
        eventlet::yield_now();
        let t = Instant::now();
        assert!(lock.lock_timeout(ms(5)).is_none());
        assert!(t.elapsed() >= ms(5));
        assert_eq!(lock.waiting(), 0);
        assert_eq!(eventlet::hub::stats().timers, 0, "the timed-out wait left its timer");
        release.send(()).unwrap();
        holder.join().unwrap();
        assert!(lock.lock_timeout(ms(0)).is_some());
        assert_clean();
    }

    #[test]
    fn killed_waiter_leaves_the_list() {
        let lock = Rc::new(Lock::new(0));
        let held = lock.lock();
        let l = lock.clone();
        let w = eventlet::spawn(move || *l.lock() += 1);
        eventlet::yield_now();
        assert_eq!(lock.waiting(), 1);
        w.kill();
        assert_eq!(lock.waiting(), 0);
        drop(held);
        assert!(!lock.is_locked());
        assert_eq!(*lock.try_lock().unwrap(), 0);
        assert_clean();
    }

    #[test]
    fn lock_granted_to_a_killed_waiter_goes_to_the_next() {
        let lock = Rc::new(Lock::new(Vec::new()));
        let held = lock.lock();
        let l = lock.clone();
        let first = eventlet::spawn(move || l.lock().push("first"));
        let l = lock.clone();
        let second = eventlet::spawn(move || l.lock().push("second"));
        eventlet::yield_now();
        drop(held); // hands the lock to `first`, which has not run yet
        assert!(lock.is_locked());
        first.kill();
        second.join().unwrap();
        assert_eq!(*lock.lock(), ["second"]);
        assert_clean();
    }

    #[test]
    fn condvar_notify_one_wakes_in_fifo_order() {
        let pair = Rc::new((Lock::new(0usize), Condvar::new()));
        let p = pair.clone();
        let order = Order::spawn(6, move |_| {
            let (lock, cv) = &*p;
            let mut g = cv.wait(lock.lock());
            *g += 1;
        });
        let (lock, cv) = &*pair;
        assert_eq!(cv.waiting(), 6);
        for n in 1..=6 {
            cv.notify_one();
            yield_until("the notified waiter ran", || *lock.lock() == n);
        }
        order.assert_fifo();
        assert_clean();
    }

    #[test]
    fn condvar_notify_all_wakes_everyone_in_fifo_order() {
        let pair = Rc::new((Lock::new(false), Condvar::new()));
        let p = pair.clone();
        let order = Order::spawn(6, move |_| {
            let (lock, cv) = &*p;
            let g = cv.wait_while(lock.lock(), |go| !*go);
            assert!(*g);
        });
        let (lock, cv) = &*pair;
        *lock.lock() = true;
        cv.notify_all();
        assert_eq!(cv.waiting(), 0);
        order.assert_fifo();
        assert_clean();
    }

    #[test]
    fn condvar_wait_timeout_times_out_relocked_and_leaves_nothing() {
        let lock = Lock::new(1);
        let cv = Condvar::new();
        let (g, res) = cv.wait_timeout(lock.lock(), ms(5));
        assert!(res.timed_out());
        assert_eq!(*g, 1, "the lock is held again");
        assert!(lock.is_locked());
        drop(g);
        assert_eq!(cv.waiting(), 0);
        assert_clean();

        let pair = Rc::new((Lock::new(()), Condvar::new()));
        let p = pair.clone();
        let notifier = eventlet::spawn(move || {
            eventlet::sleep(ms(5));
            p.1.notify_one();
        });
        let (g, res) = pair.1.wait_timeout(pair.0.lock(), Duration::from_secs(10));
        assert!(!res.timed_out());
        drop(g);
        notifier.join().unwrap();
        assert_clean();
    }

    #[test]
    fn condvar_notification_to_a_killed_waiter_goes_to_the_next() {
        let pair = Rc::new((Lock::new(Vec::new()), Condvar::new()));
        let spawn_waiter = |name: &'static str| {
            let p = pair.clone();
            eventlet::spawn(move || {
                let g = p.1.wait(p.0.lock());
                drop(g);
                p.0.lock().push(name);
            })
        };
        let first = spawn_waiter("first");
        let second = spawn_waiter("second");
        eventlet::yield_now();
        assert_eq!(pair.1.waiting(), 2);
        pair.1.notify_one(); // to `first`, which has not run yet
        first.kill();
        second.join().unwrap();
        assert_eq!(*pair.0.lock(), ["second"]);

        // And a waiter killed while waiting leaves the list.
        let third = spawn_waiter("third");
        eventlet::yield_now();
        assert_eq!(pair.1.waiting(), 1);
        third.kill();
        assert_eq!(pair.1.waiting(), 0);
        assert_clean();
    }

    #[test]
    fn rwlock_readers_share_writers_exclude_and_all_are_served_fifo() {
        let lock = Rc::new(RwLock::new(Vec::new()));
        let log = Rc::new(RefCell::new(Vec::new()));
        let w = lock.write();
        // Waiters in order: r0 r1 W2 r3 r4 W5.
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (lock, log) = (lock.clone(), log.clone());
                eventlet::spawn(move || {
                    if i % 3 == 2 {
                        let mut g = lock.write();
                        log.borrow_mut().push(format!("W{i} in"));
                        eventlet::sleep(ms(2));
                        g.push(i);
                        log.borrow_mut().push(format!("W{i} out"));
                    } else {
                        let g = lock.read();
                        log.borrow_mut().push(format!("r{i} in"));
                        eventlet::sleep(ms(2));
                        log.borrow_mut().push(format!("r{i} out ({} readers)", lock.readers()));
                        drop(g);
                    }
                })
            })
            .collect();
        eventlet::yield_now();
        assert_eq!(lock.waiting(), 6);
        // A newcomer reader queues behind the waiting writers.
        assert!(lock.try_read().is_none());
        drop(w);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(
            *log.borrow(),
            [
                "r0 in",
                "r1 in",
                "r0 out (2 readers)",
                "r1 out (1 readers)",
                "W2 in",
                "W2 out",
                "r3 in",
                "r4 in",
                "r3 out (2 readers)",
                "r4 out (1 readers)",
                "W5 in",
                "W5 out"
            ]
        );
        assert_eq!(*lock.read(), [2, 5]);
        assert_clean();
    }

    #[test]
    fn rwlock_writer_timing_out_lets_the_readers_behind_it_in() {
        let lock = Rc::new(RwLock::new(0));
        let r = lock.read();
        let l = lock.clone();
        let writer = eventlet::spawn(move || l.write_timeout(SEEN_FIRST).is_some());
        eventlet::yield_now();
        let l = lock.clone();
        let reader = eventlet::spawn(move || *l.read());
        eventlet::yield_now();
        assert_eq!(lock.waiting(), 2, "the reader queues behind the writer");
        assert!(!writer.join().unwrap());
        assert_eq!(reader.join().unwrap(), 0);
        assert_eq!(lock.waiting(), 0);
        drop(r);
        assert!(lock.try_write().is_some());
        assert_clean();
    }
}

mod queue {
    use super::*;
    use eventlet::queue::{GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError};
    use eventlet::{LifoQueue, PriorityQueue, Queue};

    #[test]
    fn getters_are_served_fifo() {
        let q = Queue::new();
        let got = Rc::new(RefCell::new(Vec::new()));
        let (q2, g) = (q.clone(), got.clone());
        let order = Order::spawn(8, move |i| {
            let item = q2.get().unwrap();
            g.borrow_mut().push((i, item));
        });
        assert_eq!(q.getting(), 8);
        for item in 0..8 {
            q.put(item * 100).unwrap();
        }
        assert!(q.is_empty(), "each item went straight to a getter");
        let started = order.started.borrow().clone();
        order.assert_fifo();
        let expected: Vec<_> = started.iter().zip(0..).map(|(&i, k)| (i, k * 100)).collect();
        assert_eq!(*got.borrow(), expected, "the k-th item went to the k-th getter");
        assert_clean();
    }

    #[test]
    fn putters_are_served_fifo() {
        let q = Queue::bounded(1);
        q.put(usize::MAX).unwrap();
        let q2 = q.clone();
        let order = Order::spawn(8, move |i| q2.put(i).unwrap());
        assert_eq!(q.putting(), 8);
        let mut got = Vec::new();
        for _ in 0..9 {
            got.push(q.get().unwrap());
        }
        let started = order.started.borrow().clone();
        order.assert_fifo();
        assert_eq!(got[0], usize::MAX);
        assert_eq!(got[1..], started[..], "items came in the order their putters began to wait");
        assert_clean();
    }

    #[test]
    fn bounded_queue_blocks_putters() {
        let q = Queue::bounded(2);
        assert_eq!(q.capacity(), Some(2));
        let done = Rc::new(Cell::new(0));
        let (q2, d) = (q.clone(), done.clone());
        let producer = eventlet::spawn(move || {
            for i in 0..5 {
                q2.put(i).unwrap();
                d.set(i + 1);
            }
        });
        eventlet::yield_now();
        assert_eq!(done.get(), 2, "the third put blocks");
        assert!(q.is_full());
        assert_eq!(q.putting(), 1);
        assert_eq!(q.get(), Ok(0));
        assert_eq!(q.len(), 2, "the waiting putter's item moved in at once");
        eventlet::yield_now();
        assert_eq!(done.get(), 3);
        let rest: Vec<_> = (0..4).map(|_| q.get().unwrap()).collect();
        producer.join().unwrap();
        assert_eq!(rest, [1, 2, 3, 4]);
        assert_clean();
    }

    #[test]
    fn rendezvous_put_waits_until_a_get_takes_the_item() {
        let q = Queue::bounded(0);
        assert!(q.is_full());
        assert_eq!(q.try_put("w"), Err(TryPutError::Full("w")), "no getter waiting");
        let returned = Rc::new(Cell::new(false));
        let (q2, r) = (q.clone(), returned.clone());
        let putter = eventlet::spawn(move || {
            q2.put("x").unwrap();
            r.set(true);
        });
        for _ in 0..5 {
            eventlet::yield_now();
        }
        assert!(!returned.get(), "put returned before any get");
        assert_eq!(q.len(), 0, "a rendezvous holds nothing");
        assert_eq!(q.putting(), 1);
        assert_eq!(q.try_get(), Ok("x"));
        putter.join().unwrap();
        assert!(returned.get());

        // A waiting getter lets try_put through.
        let q2 = q.clone();
        let getter = eventlet::spawn(move || q2.get());
        eventlet::yield_now();
        assert_eq!(q.try_put("y"), Ok(()));
        assert_eq!(getter.join().unwrap(), Ok("y"));
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
        assert_clean();
    }

    #[test]
    fn errors_hand_the_item_back() {
        let q = Queue::bounded(1);
        q.try_put(String::from("a")).unwrap();
        let e = q.try_put(String::from("b")).unwrap_err();
        assert!(e.is_full());
        assert_eq!(e.into_inner(), "b");
        let e = q.put_timeout(String::from("c"), ms(5)).unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(e.into_inner(), "c");
        assert_eq!(q.putting(), 0);
        q.close();
        assert_eq!(q.put(String::from("d")), Err(PutError(String::from("d"))));
        assert_eq!(q.try_put(String::from("e")), Err(TryPutError::Closed(String::from("e"))));
        assert_eq!(q.put_timeout(String::from("f"), ms(5)), Err(PutTimeoutError::Closed(String::from("f"))));
        assert_clean();
    }

    #[test]
    fn error_types_print_without_debug_items() {
        struct Opaque;
        assert_eq!(format!("{:?}", PutError(Opaque)), "PutError(..)");
        assert_eq!(format!("{:?}", TryPutError::Full(Opaque)), "Full(..)");
        assert_eq!(format!("{:?}", PutTimeoutError::Closed(Opaque)), "Closed(..)");
        assert_eq!(PutError(Opaque).to_string(), "putting on a closed queue");
        assert_eq!(TryPutError::Full(Opaque).to_string(), "putting on a full queue");
        assert_eq!(PutTimeoutError::Timeout(Opaque).to_string(), "timed out putting on a full queue");
        assert_eq!(GetError.to_string(), "getting from a closed and empty queue");
        assert_eq!(TryGetError::Empty.to_string(), "getting from an empty queue");
        assert_eq!(GetTimeoutError::Timeout.to_string(), "timed out getting from an empty queue");
        let boxed: Box<dyn std::error::Error> = Box::new(TryPutError::Closed(Opaque));
        assert_eq!(boxed.to_string(), "putting on a closed queue");
        let q = Queue::<Opaque>::bounded(3);
        assert_eq!(format!("{q:?}"), "Queue { len: 0, capacity: Some(3), closed: false, getting: 0, putting: 0 }");
    }

    #[test]
    fn timeouts_leave_no_timer_or_waiter() {
        let q = Queue::<u8>::bounded(1);
        let t = Instant::now();
        assert_eq!(q.get_timeout(ms(10)), Err(GetTimeoutError::Timeout));
        assert!(t.elapsed() >= ms(10));
        assert_eq!(q.getting(), 0);
        assert_clean();
        q.put(1).unwrap();
        assert_eq!(q.put_timeout(2, ms(5)), Err(PutTimeoutError::Timeout(2)));
        assert_eq!(q.putting(), 0);
        assert_clean();
        assert_eq!(q.get_timeout(ms(0)), Ok(1));
        assert_eq!(q.get_timeout(ms(0)), Err(GetTimeoutError::Timeout));

        // An item arriving in time.
        let q2 = q.clone();
        let putter = eventlet::spawn(move || {
            eventlet::sleep(ms(5));
            q2.put(3).unwrap();
        });
        assert_eq!(q.get_timeout(Duration::from_secs(10)), Ok(3));
        putter.join().unwrap();
        assert_clean();
    }

    #[test]
    fn getters_leaving_from_the_middle_keep_the_rest_in_order() {
        // Five getters; the second times out and the fourth is killed
        // while waiting. The others get the items in the order they came.
        let q = Queue::<u32>::new();
        let got = Rc::new(RefCell::new(Vec::new()));
        let getter = |i: u32, timeout: Option<Duration>| {
            let (q, got) = (q.clone(), got.clone());
            eventlet::spawn(move || {
                let item = match timeout {
                    Some(t) => q.get_timeout(t).ok(),
                    None => q.get().ok(),
                };
                got.borrow_mut().push((i, item));
            })
        };
        let hs = [getter(0, None), getter(1, Some(SEEN_FIRST)), getter(2, None), getter(3, None), getter(4, None)];
        eventlet::yield_now();
        assert_eq!(q.getting(), 5);
        hs[3].kill();
        // Until the second one's timeout has fired.
        while !hs[1].is_finished() {
            eventlet::sleep(ms(5));
        }
        assert_eq!(q.getting(), 3);
        for item in [10, 20, 30] {
            q.put(item).unwrap();
        }
        for h in hs {
            let _ = h.join();
        }
        assert_eq!(*got.borrow(), [(1, None), (0, Some(10)), (2, Some(20)), (4, Some(30))]);
        assert_eq!(q.getting(), 0);
        assert!(q.is_empty());
        assert_clean();
    }

    #[test]
    fn close_wakes_getters_and_putters_and_leaves_the_items_to_get() {
        // Waiting getters get Closed.
        let q = Queue::<u8>::new();
        let getters: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                eventlet::spawn(move || q.get())
            })
            .collect();
        let q2 = q.clone();
        let timed = eventlet::spawn(move || q2.get_timeout(Duration::from_secs(10)));
        eventlet::yield_now();
        assert_eq!(q.getting(), 4);
        q.close();
        assert!(q.is_closed());
        assert_eq!(q.getting(), 0);
        for g in getters {
            assert_eq!(g.join().unwrap(), Err(GetError));
        }
        assert_eq!(timed.join().unwrap(), Err(GetTimeoutError::Closed));

        // Waiting putters get their items back; what is in stays to get.
        let q = Queue::bounded(2);
        q.put(1).unwrap();
        q.put(2).unwrap();
        let q2 = q.clone();
        let putter = eventlet::spawn(move || q2.put(3));
        let q2 = q.clone();
        let timed = eventlet::spawn(move || q2.put_timeout(4, Duration::from_secs(10)));
        eventlet::yield_now();
        assert_eq!(q.putting(), 2);
        q.close();
        q.close();
        assert_eq!(putter.join().unwrap(), Err(PutError(3)));
        assert_eq!(timed.join().unwrap(), Err(PutTimeoutError::Closed(4)));
        assert_eq!(q.get(), Ok(1));
        assert_eq!(q.try_get(), Ok(2));
        assert_eq!(q.get(), Err(GetError));
        assert_eq!(q.try_get(), Err(TryGetError::Closed));
        assert_eq!(q.get_timeout(ms(5)), Err(GetTimeoutError::Closed));
        assert_clean();
    }

    #[test]
    fn task_done_and_join() {
        let q = Queue::new();
        let processed = Rc::new(Cell::new(0));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (q, processed) = (q.clone(), processed.clone());
                eventlet::spawn(move || {
                    while let Ok(n) = q.get() {
                        eventlet::sleep(ms(n));
                        processed.set(processed.get() + 1);
                        q.task_done();
                    }
                })
            })
            .collect();
        q.join(); // nothing put yet: returns at once
        for n in [3, 1, 2, 1, 3, 2, 1] {
            q.put(n).unwrap();
        }
        assert_eq!(q.unfinished_tasks(), 7);
        q.join();
        assert_eq!(processed.get(), 7, "join returned only once every item was done");
        assert_eq!(q.unfinished_tasks(), 0);
        q.close();
        for w in workers {
            w.join().unwrap();
        }
        assert_clean();
    }

    #[test]
    #[should_panic(expected = "task_done called more times than items were put")]
    fn task_done_too_many_times_panics() {
        let q = Queue::new();
        q.put(()).unwrap();
        q.task_done();
        q.task_done();
    }

    #[test]
    fn lifo_and_priority_order() {
        let q = LifoQueue::new();
        for i in 0..4 {
            q.put(i).unwrap();
        }
        assert_eq!((0..4).map(|_| q.get().unwrap()).collect::<Vec<_>>(), [3, 2, 1, 0]);

        let q = PriorityQueue::new();
        for (p, tag) in [(5, 'a'), (1, 'b'), (3, 'c'), (1, 'd'), (0, 'e')] {
            q.put((p, tag)).unwrap();
        }
        assert_eq!(q.len(), 5);
        let order: Vec<_> = (0..5).map(|_| q.get().unwrap()).collect();
        assert_eq!(order, [(0, 'e'), (1, 'b'), (1, 'd'), (3, 'c'), (5, 'a')]);

        // Ties come out in put order even when the items compare equal.
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
        struct Job {
            prio: u8,
        }
        let q = PriorityQueue::bounded(2);
        let (a, b) = (Rc::new(Job { prio: 1 }), Rc::new(Job { prio: 1 }));
        q.put(a.clone()).unwrap();
        q.put(b.clone()).unwrap();
        assert!(Rc::ptr_eq(&q.get().unwrap(), &a));
        assert!(Rc::ptr_eq(&q.get().unwrap(), &b));
    }

    #[test]
    fn lifo_and_priority_waiters_are_fifo_too() {
        let q = PriorityQueue::bounded(1);
        q.put(0).unwrap();
        let q2 = q.clone();
        let order = Order::spawn(6, move |i| q2.put(10 - i).unwrap());
        for _ in 0..7 {
            q.get().unwrap();
        }
        order.assert_fifo();

        let q = LifoQueue::new();
        let q2 = q.clone();
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        let order = Order::spawn(6, move |i| {
            let item = q2.get().unwrap();
            g.borrow_mut().push((i, item));
        });
        for k in 0..6 {
            q.put(k).unwrap();
        }
        let started = order.started.borrow().clone();
        order.assert_fifo();
        assert_eq!(*got.borrow(), started.iter().copied().zip(0..).collect::<Vec<_>>());
        assert_clean();
    }

    #[test]
    fn item_handed_to_a_killed_getter_is_not_lost() {
        let q = Queue::new();
        let q2 = q.clone();
        let first = eventlet::spawn(move || q2.get());
        let q2 = q.clone();
        let second = eventlet::spawn(move || q2.get());
        eventlet::yield_now();
        q.put("a").unwrap(); // to `first`, which has not run yet
        q.put("b").unwrap(); // to `second`
        first.kill();
        assert!(first.join().unwrap_err().is::<Killed>());
        assert_eq!(second.join().unwrap(), Ok("b"));
        assert_eq!(q.try_get(), Ok("a"), "the item went back to the head of the queue");
        assert_eq!(q.unfinished_tasks(), 2);

        // With another getter waiting, it goes straight to that one.
        let q2 = q.clone();
        let first = eventlet::spawn(move || q2.get());
        let q2 = q.clone();
        let second = eventlet::spawn(move || q2.get());
        eventlet::yield_now();
        q.put("c").unwrap();
        first.kill();
        assert_eq!(second.join().unwrap(), Ok("c"));
        assert!(q.is_empty());
        assert_clean();
    }

    #[test]
    fn killed_getters_and_putters_leave_the_lists() {
        let q = Queue::<u8>::bounded(0);
        let q2 = q.clone();
        let getter = eventlet::spawn(move || q2.get());
        eventlet::yield_now();
        assert_eq!(q.getting(), 1);
        getter.kill();
        assert_eq!(q.getting(), 0);
        assert_eq!(q.try_put(1), Err(TryPutError::Full(1)), "nobody is waiting any more");

        let q2 = q.clone();
        let putter = eventlet::spawn(move || q2.put(2));
        eventlet::yield_now();
        assert_eq!(q.putting(), 1);
        putter.kill();
        assert_eq!(q.putting(), 0);
        assert_eq!(q.try_get(), Err(TryGetError::Empty), "the killed putter's item is gone with it");
        assert_eq!(q.unfinished_tasks(), 0);
        assert_clean();
    }

    /// Spawns a green thread that gets from `q` once and yields until it
    /// waits there.
    fn waiting_getter(q: &Queue<&'static str>) -> JoinHandle<Result<&'static str, GetError>> {
        let q2 = q.clone();
        let before = q.getting();
        let g = eventlet::spawn(move || q2.get());
        yield_until("the getter waits", || q.getting() > before);
        g
    }

    #[test]
    fn rendezvous_getter_called_and_killed_before_it_came_passes_the_call_on() {
        let q = Queue::bounded(0);
        let first = waiting_getter(&q);
        let second = waiting_getter(&q);
        let q2 = q.clone();
        let putter = eventlet::spawn(move || q2.put("x"));
        // Run the putter: it calls `first` and waits for it. `first` has
        // not run yet when it is killed.
        yield_until("the putter waits", || q.putting() == 1);
        assert_eq!(q.getting(), 1, "`first` was called");
        first.kill();
        assert!(first.join().unwrap_err().is::<Killed>());
        assert_eq!(second.join().unwrap(), Ok("x"), "the call went on to `second`");
        putter.join().unwrap().unwrap();

        // With nobody else waiting, the putter waits on, and the next get
        // takes its item.
        let only = waiting_getter(&q);
        let q2 = q.clone();
        let putter = eventlet::spawn(move || q2.put("y"));
        yield_until("the putter waits", || q.putting() == 1);
        only.kill();
        assert!(only.join().unwrap_err().is::<Killed>());
        assert!(!putter.is_finished());
        assert_eq!(q.putting(), 1);
        assert_eq!(q.get(), Ok("y"));
        putter.join().unwrap().unwrap();
        assert_eq!(q.unfinished_tasks(), 2);
        assert_clean();
    }

    #[test]
    fn rendezvous_try_get_killed_in_its_yield_to_the_putter_keeps_the_item() {
        // `try_get` takes a waiting putter's item and yields so the putter
        // runs first. The putter kills the getter there: the item was
        // lost with the unwinding yield, though the put had returned `Ok`.
        let q = Queue::bounded(0);
        let getter_handle: Rc<RefCell<Option<Rc<JoinHandle<()>>>>> = Rc::default();
        let (q2, gh) = (q.clone(), getter_handle.clone());
        let putter = eventlet::spawn(move || {
            q2.put("x").unwrap();
            let g = gh.borrow().clone().unwrap();
            g.kill();
        });
        yield_until("the putter waits", || q.putting() == 1);
        let got = Rc::new(RefCell::new(None));
        let (q3, got2) = (q.clone(), got.clone());
        let getter = Rc::new(eventlet::spawn(move || {
            *got2.borrow_mut() = Some(q3.try_get());
            eventlet::sleep(Duration::from_secs(10)); // where the kill lands
        }));
        *getter_handle.borrow_mut() = Some(getter.clone());
        putter.join().unwrap();
        getter_handle.borrow_mut().take();
        let getter = Rc::try_unwrap(getter).unwrap();
        assert!(getter.join().unwrap_err().is::<Killed>());
        assert_eq!(*got.borrow(), Some(Ok("x")), "the getter kept the item its put delivered");
        assert_clean();
    }

    #[test]
    fn rendezvous_try_put_killed_in_its_yield_to_the_getter_returns_ok() {
        let q = Queue::bounded(0);
        let putter_handle: Rc<RefCell<Option<Rc<JoinHandle<()>>>>> = Rc::default();
        let (q2, ph) = (q.clone(), putter_handle.clone());
        let getter = eventlet::spawn(move || {
            let item = q2.get();
            let p = ph.borrow().clone().unwrap();
            p.kill();
            item
        });
        yield_until("the getter waits", || q.getting() == 1);
        let put = Rc::new(RefCell::new(None));
        let (q3, put2) = (q.clone(), put.clone());
        let putter = Rc::new(eventlet::spawn(move || {
            *put2.borrow_mut() = Some(q3.try_put("x"));
            eventlet::sleep(Duration::from_secs(10)); // where the kill lands
        }));
        *putter_handle.borrow_mut() = Some(putter.clone());
        assert_eq!(getter.join().unwrap(), Ok("x"));
        putter_handle.borrow_mut().take();
        let putter = Rc::try_unwrap(putter).unwrap();
        assert!(putter.join().unwrap_err().is::<Killed>());
        assert_eq!(*put.borrow(), Some(Ok(())), "the putter learnt its item was taken");
        assert_clean();
    }

    #[test]
    fn rendezvous_close_while_a_getter_is_called_fails_both_and_hands_the_item_back() {
        let q = Queue::bounded(0);
        let getter = waiting_getter(&q);
        let q2 = q.clone();
        let putter = eventlet::spawn(move || q2.put("x"));
        yield_until("the putter waits", || q.putting() == 1);
        q.close();
        assert_eq!(putter.join().unwrap(), Err(PutError("x")));
        assert_eq!(getter.join().unwrap(), Err(GetError));
        assert_clean();
    }

    #[test]
    fn rendezvous_put_timeout_of_zero_succeeds_with_a_getter_waiting() {
        let q = Queue::bounded(0);
        let getter = waiting_getter(&q);
        assert_eq!(q.put_timeout("x", Duration::ZERO), Ok(()), "the waiting getter took it");
        assert!(getter.is_finished());
        assert_eq!(getter.join().unwrap(), Ok("x"));
        assert_eq!(q.put_timeout("y", Duration::ZERO), Err(PutTimeoutError::Timeout("y")), "nobody waits");
        assert_clean();
    }

    #[test]
    fn resizing_a_rendezvous_with_a_called_getter_loses_nothing() {
        // The called getter finds the putter's item in the store, even if a
        // newcomer took that one first: then it waits for the next.
        let q = Queue::bounded(0);
        let called = waiting_getter(&q);
        let q2 = q.clone();
        let putter = eventlet::spawn(move || q2.put("x"));
        yield_until("the putter waits", || q.putting() == 1);
        q.resize(Some(1));
        assert_eq!((q.len(), q.putting()), (1, 0), "the putter's item went into the queue");
        assert_eq!(q.try_get(), Ok("x"), "a newcomer took it before the called getter ran");
        putter.join().unwrap().unwrap();
        yield_until("the called getter waits again", || q.getting() == 1);
        q.put("y").unwrap();
        assert_eq!(called.join().unwrap(), Ok("y"));
        assert_clean();
    }

    #[test]
    fn resizing_a_rendezvous_then_killing_the_called_getter_hands_the_item_to_the_next() {
        // The putter's item goes into the store for the called getter; that
        // getter is killed before it runs. The next waiting getter was
        // left asleep beside the stored item.
        let q = Queue::bounded(0);
        let called = waiting_getter(&q);
        let next = waiting_getter(&q);
        let q2 = q.clone();
        let putter = eventlet::spawn(move || q2.put("x"));
        yield_until("the putter waits", || q.putting() == 1);
        q.resize(Some(1));
        called.kill(); // before it runs
        assert!(called.join().unwrap_err().is::<Killed>());
        putter.join().unwrap().unwrap();
        assert_eq!(q.getting(), 0, "the next getter was handed the item");
        assert_eq!(next.join().unwrap(), Ok("x"));
        assert_clean();
    }

    #[test]
    fn growing_a_queue_lets_waiting_putters_in_oldest_first() {
        let q = Queue::bounded(1);
        q.put(0).unwrap();
        let putters: Vec<_> = (1..=3)
            .map(|i| {
                let q = q.clone();
                eventlet::spawn(move || q.put(i))
            })
            .collect();
        yield_until("three putters wait", || q.putting() == 3);
        q.resize(Some(3));
        assert_eq!((q.len(), q.putting()), (3, 1));
        q.resize(None);
        assert_eq!((q.len(), q.putting(), q.is_full()), (4, 0, false));
        for p in putters {
            p.join().unwrap().unwrap();
        }
        assert_eq!(std::iter::from_fn(|| q.try_get().ok()).collect::<Vec<_>>(), [0, 1, 2, 3]);
        // Shrunk below what it holds: puts wait until there is room.
        for i in 0..3 {
            q.put(i).unwrap();
        }
        q.resize(Some(1));
        assert_eq!(q.try_put(9), Err(TryPutError::Full(9)));
        assert_eq!(q.try_get(), Ok(0));
        assert_eq!(q.try_get(), Ok(1));
        assert_eq!(q.try_put(9), Err(TryPutError::Full(9)), "still one item, the capacity");
        assert_eq!(q.try_get(), Ok(2));
        assert_eq!(q.try_put(9), Ok(()));
        assert_clean();
    }

    #[test]
    fn a_rendezvous_stays_one_for_lifo_and_priority_queues() {
        let q = LifoQueue::bounded(0);
        let q2 = q.clone();
        let putter = eventlet::spawn(move || q2.put(1));
        eventlet::yield_now();
        assert!(!putter.is_finished());
        assert_eq!(q.try_get(), Ok(1));
        assert!(putter.is_finished(), "try_get let the putter run first");
        let q = PriorityQueue::bounded(0);
        let q2 = q.clone();
        let getter = eventlet::spawn(move || q2.get());
        eventlet::yield_now();
        q.put(5).unwrap();
        assert!(getter.is_finished(), "the getter ran before the put returned");
        assert_eq!(getter.join().unwrap(), Ok(5));
        assert_clean();
    }
}

mod example {
    use super::*;

    #[test]
    fn producer_consumer_crawls_the_fake_web_concurrently() {
        let lines = Rc::new(RefCell::new(Vec::<String>::new()));
        // The most fetches asleep at once, seen as each fetch begins: the
        // sleeping ones are the timers on this hub (counted, not timed, so a
        // loaded machine cannot fail it).
        let most_at_once = Rc::new(Cell::new(0));
        let (l, m) = (lines.clone(), most_at_once.clone());
        let seen = producer_consumer::run(Rc::new(move |line: &str| {
            if line.starts_with("fetching ") {
                m.set(m.get().max(eventlet::hub::stats().timers + 1));
            }
            l.borrow_mut().push(line.to_owned());
        }));

        let expected: Vec<String> = [
            "",
            "docs/",
            "docs/basic",
            "docs/modules",
            "docs/modules/event",
            "docs/modules/greenpool",
            "docs/modules/queue",
            "docs/patterns",
            "docs/patterns#crawler",
            "missing",
            "news/",
            "news/1",
            "news/2",
        ]
        .iter()
        .map(|p| format!("http://eventlet.example/{p}"))
        .collect();
        assert_eq!(seen.iter().cloned().collect::<Vec<_>>(), expected);

        let lines = lines.borrow();
        let mut fetched: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("fetching ")).collect();
        assert_eq!(fetched.len(), expected.len(), "each page is fetched once: {lines:#?}");
        assert_eq!(fetched[0], "http://eventlet.example/");
        fetched.sort();
        assert_eq!(fetched, expected);
        assert!(lines.iter().any(|l| l.starts_with("fetched 13 pages in ")), "{lines:#?}");
        // Overlapping fetches, at most the crawl's four at once, not
        // thirteen fetches in turn.
        let most = most_at_once.get();
        assert!((2..=4).contains(&most), "at most {most} fetches at once: {lines:#?}");
        assert_clean();
    }
}
