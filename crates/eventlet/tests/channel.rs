//! Channels across hubs and OS threads: FIFO service, errors that hand the
//! message back, timeouts that leave no timer and no registration, select,
//! kills at every point of a wait, and a million messages between two
//! hubs with nothing lost or duplicated.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlet::channel::{
    self, Receiver, RecvError, RecvTimeoutError, Select, SendError, SendTimeoutError, Sender, TryRecvError,
    TrySendError, Waiting,
};
use eventlet::{JoinHandle, Killed};
use util::{assert_clean, ms};

fn nobody_waits<T>(rx: &Receiver<T>) {
    assert_eq!(rx.waiting(), Waiting::default(), "registrations left behind");
}

/// Yields until `cond` holds; fails after a while rather than hanging.
fn yield_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        eventlet::yield_now();
    }
}

/// Counts drops, to show a message was dropped exactly once (not lost in
/// a list, not duplicated).
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>, u32);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Green threads blocked in a wait, from [`spawn_waiters`].
struct Waiters<R> {
    /// The order they began to wait in.
    order: Vec<usize>,
    handles: Vec<JoinHandle<R>>,
    /// The order their waits returned in.
    served: Rc<RefCell<Vec<usize>>>,
}

/// Spawns `n` green threads that begin to wait (with `wait(i)`) in an
/// order other than spawn order; returns once all of them wait.
fn spawn_waiters<R: 'static>(n: usize, wait: impl Fn(usize) -> R + Clone + 'static) -> Waiters<R> {
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
                let r = wait(i);
                served.borrow_mut().push(i);
                r
            })
        })
        .collect();
    let s = started.clone();
    yield_until("all waiters started", || s.borrow().len() == n);
    eventlet::yield_now();
    assert!(served.borrow().is_empty(), "a waiter did not block");
    let order = started.borrow().clone();
    assert_ne!(order, (0..n).collect::<Vec<_>>(), "the waiters should not wait in spawn order");
    Waiters { order, handles, served }
}

mod fifo {
    use super::*;

    #[test]
    fn receivers_are_served_in_the_order_they_began_to_wait() {
        let (tx, rx) = channel::unbounded::<usize>();
        let Waiters { order, handles, served } = spawn_waiters(8, move |_| rx.recv().unwrap());
        assert_eq!(tx.waiting().receivers, 8);
        for v in 0..8 {
            tx.send(v).unwrap();
        }
        // Each message went to one waiter: none is left in the channel.
        assert_eq!(tx.len(), 0);
        let got: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // The k-th waiter got the k-th message and ran k-th.
        for (k, &i) in order.iter().enumerate() {
            assert_eq!(got[i], k, "waiter {i} (the {k}th to wait) got message {}", got[i]);
        }
        assert_eq!(*served.borrow(), order);
        assert_eq!(tx.waiting(), Waiting::default());
        assert_clean();
    }

    #[test]
    fn blocked_senders_are_let_in_in_the_order_they_began_to_wait() {
        for cap in [0, 1] {
            let (tx, rx) = channel::bounded::<usize>(cap);
            if cap == 1 {
                tx.send(usize::MAX).unwrap();
            }
            let t = tx.clone();
            let Waiters { order, handles, .. } = spawn_waiters(6, move |i| t.send(i).unwrap());
            assert_eq!(rx.waiting().senders, 6);
            if cap == 1 {
                assert_eq!(rx.recv(), Ok(usize::MAX));
            }
            let got: Vec<usize> = (0..6).map(|_| rx.recv().unwrap()).collect();
            assert_eq!(got, order, "capacity {cap}");
            for h in handles {
                h.join().unwrap();
            }
            nobody_waits(&rx);
            assert_clean();
        }
    }

    #[test]
    fn messages_keep_their_order() {
        let (tx, rx) = channel::bounded(3);
        let producer = eventlet::spawn(move || {
            for i in 0..100 {
                tx.send(i).unwrap();
            }
        });
        assert_eq!(rx.iter().collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
        producer.join().unwrap();
        assert_clean();
    }
}

mod errors {
    use super::*;

    #[test]
    fn send_errors_hand_the_message_back() {
        let (tx, rx) = channel::bounded(1);
        tx.try_send(vec![1]).unwrap();
        assert_eq!(tx.try_send(vec![2]), Err(TrySendError::Full(vec![2])));
        assert!(tx.is_full());
        let t = Instant::now();
        assert_eq!(tx.send_timeout(vec![3], ms(10)), Err(SendTimeoutError::Timeout(vec![3])));
        assert!(t.elapsed() >= ms(10));
        drop(rx);
        assert_eq!(tx.send(vec![4]), Err(SendError(vec![4])));
        assert_eq!(tx.try_send(vec![5]), Err(TrySendError::Disconnected(vec![5])));
        assert_eq!(tx.send_timeout(vec![6], ms(10)), Err(SendTimeoutError::Disconnected(vec![6])));

        let e = tx.try_send(vec![7]).unwrap_err();
        assert!(e.is_disconnected() && !e.is_full());
        assert_eq!(format!("{e:?}"), "Disconnected(..)");
        assert_eq!(e.to_string(), "sending on a disconnected channel");
        assert_eq!(e.into_inner(), [7]);
        assert_eq!(format!("{:?}", SendError(1)), "SendError(..)");
        assert_clean();
    }

    #[test]
    fn receive_errors() {
        let (tx, rx) = channel::unbounded::<u8>();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.recv_timeout(ms(5)), Err(RecvTimeoutError::Timeout));
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        // What was sent is still received after the senders are gone.
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv_timeout(ms(5)), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.recv_timeout(ms(5)), Err(RecvTimeoutError::Disconnected));
        assert_eq!(RecvError.to_string(), "receiving on an empty and disconnected channel");
        assert_clean();
    }

    #[test]
    fn a_blocked_sender_gets_its_message_back_when_the_receivers_go() {
        let (tx, rx) = channel::bounded(0);
        let sender = eventlet::spawn(move || tx.send("kept"));
        eventlet::yield_now();
        assert_eq!(rx.waiting().senders, 1);
        drop(rx);
        assert_eq!(sender.join().unwrap(), Err(SendError("kept")));
        assert_clean();
    }

    #[test]
    fn a_blocked_receiver_is_told_when_the_senders_go() {
        let (tx, rx) = channel::unbounded::<u8>();
        let receiver = eventlet::spawn(move || rx.recv());
        eventlet::yield_now();
        let tx2 = tx.clone();
        drop(tx);
        eventlet::yield_now();
        assert!(!receiver.is_finished(), "a sender clone is still alive");
        drop(tx2);
        assert_eq!(receiver.join().unwrap(), Err(RecvError));
        assert_clean();
    }

    #[test]
    fn dropping_the_last_receiver_drops_the_messages_left_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = channel::unbounded();
        for i in 0..5 {
            tx.send(Counted(drops.clone(), i)).unwrap();
        }
        let rx2 = rx.clone();
        drop(rx);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(rx2);
        assert_eq!(drops.load(Ordering::SeqCst), 5);
        let e = tx.send(Counted(drops.clone(), 9)).unwrap_err();
        assert_eq!(e.0 .1, 9);
        drop(e);
        assert_eq!(drops.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn rendezvous_send_waits_for_a_receiver() {
        let (tx, rx) = channel::bounded(0);
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        let sender = eventlet::spawn(move || {
            tx.send(1).unwrap();
            g.borrow_mut().push("sent");
        });
        eventlet::sleep(ms(5));
        assert!(got.borrow().is_empty(), "a rendezvous send returned with no receiver");
        assert_eq!(rx.recv(), Ok(1));
        sender.join().unwrap();
        assert_eq!(*got.borrow(), ["sent"]);
        assert_clean();
    }
}

mod timeouts {
    use super::*;

    #[test]
    fn timed_out_waits_leave_no_timer_and_no_registration() {
        let (tx, rx) = channel::bounded::<u8>(0);
        for _ in 0..3 {
            assert_eq!(rx.recv_timeout(ms(2)), Err(RecvTimeoutError::Timeout));
            assert_eq!(tx.send_timeout(1, ms(2)), Err(SendTimeoutError::Timeout(1)));
        }
        nobody_waits(&rx);
        assert_clean();
        // A deadline in the past does not wait.
        let t = Instant::now();
        assert_eq!(rx.recv_deadline(t - ms(1)), Err(RecvTimeoutError::Timeout));
        assert_eq!(tx.send_deadline(2, t), Err(SendTimeoutError::Timeout(2)));
        // A huge timeout is no deadline; a message ends it.
        let t2 = tx.clone();
        eventlet::spawn(move || t2.send(3).unwrap());
        assert_eq!(rx.recv_timeout(Duration::MAX), Ok(3));
        nobody_waits(&rx);
        assert_clean();
    }

    #[test]
    fn a_wait_that_succeeds_before_its_deadline_leaves_no_timer() {
        let (tx, rx) = channel::unbounded();
        eventlet::spawn_after(ms(2), move || tx.send(5).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(5));
        assert_clean();
    }
}

mod scoped_timeouts {
    use super::*;

    #[test]
    fn a_timeout_guard_ends_channel_waits_and_leaves_no_registration() {
        let (tx, rx) = channel::bounded::<u8>(0);
        // A wait without a deadline of its own unwinds out of with_timeout.
        assert!(eventlet::with_timeout(ms(5), || rx.recv()).is_err());
        assert!(eventlet::with_timeout(ms(5), || tx.send(1)).is_err());
        assert!(eventlet::with_timeout(ms(5), || Select::new().recv(&rx, |_| ()).wait()).is_err());
        // One with its own (later) deadline returns its timeout error.
        let r = eventlet::with_timeout(ms(5), || rx.recv_timeout(Duration::from_secs(10)));
        assert_eq!(r, Ok(Err(RecvTimeoutError::Timeout)));
        nobody_waits(&rx);
        assert_clean();
    }
}

mod kills {
    use super::*;

    #[test]
    fn a_killed_receiver_leaves_no_registration() {
        let (tx, rx) = channel::unbounded::<u8>();
        let h = eventlet::spawn(move || rx.recv());
        eventlet::yield_now();
        assert_eq!(tx.waiting().receivers, 1);
        h.kill();
        assert!(h.join().unwrap_err().is::<Killed>());
        assert_eq!(tx.waiting(), Waiting::default());
        assert_clean();
    }

    #[test]
    fn a_message_handed_to_a_killed_receiver_goes_to_the_next() {
        let (tx, rx) = channel::unbounded::<u8>();
        let r1 = rx.clone();
        let first = eventlet::spawn(move || r1.recv());
        eventlet::yield_now();
        let second = eventlet::spawn(move || rx.recv());
        eventlet::yield_now();
        assert_eq!(tx.waiting().receivers, 2);
        // The message is handed to `first` (woken, not yet run); killing it
        // then must pass the message on, not lose it.
        tx.send(42).unwrap();
        first.kill();
        assert!(first.join().unwrap_err().is::<Killed>());
        assert_eq!(second.join().unwrap(), Ok(42));
        assert_eq!(tx.waiting(), Waiting::default());
        assert_eq!(tx.len(), 0);
        assert_clean();
    }

    #[test]
    fn a_killed_sender_drops_its_message_once_and_leaves_no_registration() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = channel::bounded(0);
        let d = drops.clone();
        let h = eventlet::spawn(move || tx.send(Counted(d, 1)));
        eventlet::yield_now();
        assert_eq!(rx.waiting().senders, 1);
        h.kill();
        assert!(h.join().unwrap_err().is::<Killed>());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        nobody_waits(&rx);
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
        assert_clean();
    }
}

mod select {
    use super::*;

    #[test]
    fn picks_the_ready_case() {
        let (tx_a, rx_a) = channel::unbounded::<u32>();
        let (tx_b, rx_b) = channel::unbounded::<&str>();
        for round in 0..20 {
            tx_b.send("b").unwrap();
            let got = Select::new()
                .recv(&rx_a, |r| format!("a {r:?}"))
                .recv(&rx_b, |r| format!("b {r:?}"))
                .try_wait()
                .unwrap();
            assert_eq!(got, "b Ok(\"b\")", "round {round}");
        }
        tx_a.send(1).unwrap();
        assert_eq!(Select::new().recv(&rx_a, |r| r.unwrap()).recv(&rx_b, |_| 0).wait(), 1);
        assert!(Select::new().recv(&rx_a, |_| ()).recv(&rx_b, |_| ()).try_wait().is_err());
        assert_clean();
    }

    #[test]
    fn blocks_until_one_case_completes_and_leaves_no_registration() {
        let (tx_a, rx_a) = channel::unbounded::<u32>();
        let (tx_b, rx_b) = channel::unbounded::<u32>();
        let (tx_c, rx_c) = channel::bounded::<u32>(0);
        let t = tx_b.clone();
        eventlet::spawn_after(ms(3), move || t.send(2).unwrap());
        let got = Select::new()
            .recv(&rx_a, |r| ("a", r))
            .recv(&rx_b, |r| ("b", r))
            .send(&tx_c, 3, |r| ("c", r.map(|()| 0).map_err(|_| RecvError)))
            .wait_timeout(Duration::from_secs(10))
            .unwrap();
        assert_eq!(got, ("b", Ok(2)));
        nobody_waits(&rx_a);
        nobody_waits(&rx_b);
        nobody_waits(&rx_c);
        // The send case's message was not sent.
        assert_eq!(rx_c.try_recv(), Err(TryRecvError::Empty));
        drop((tx_a, tx_b));
        assert_clean();
    }

    #[test]
    fn a_send_case_completes_when_a_receiver_comes() {
        let (tx, rx) = channel::bounded::<u32>(0);
        let (_tx_other, rx_other) = channel::unbounded::<u32>();
        let receiver = eventlet::spawn_after(ms(3), move || rx.recv());
        let got = Select::new()
            .recv(&rx_other, |_| "other")
            .send(&tx, 9, |r| {
                r.unwrap();
                "sent"
            })
            .wait();
        assert_eq!(got, "sent");
        assert_eq!(receiver.join().unwrap(), Ok(9));
        nobody_waits(&rx_other);
        assert_clean();
    }

    #[test]
    fn times_out_and_leaves_no_timer_and_no_registration() {
        let (tx_a, rx_a) = channel::unbounded::<u32>();
        let (tx_b, rx_b) = channel::bounded::<u32>(0);
        let t = Instant::now();
        let got = Select::new().recv(&rx_a, |_| 1).send(&tx_b, 5, |_| 2).wait_timeout(ms(10));
        assert!(got.is_err());
        assert!(t.elapsed() >= ms(10));
        nobody_waits(&rx_a);
        nobody_waits(&rx_b);
        assert_eq!(rx_b.try_recv(), Err(TryRecvError::Empty));
        assert_clean();
        // A select with no case times out too.
        assert!(Select::<()>::new().wait_timeout(ms(1)).is_err());
        drop(tx_a);
        assert_clean();
    }

    #[test]
    fn disconnection_counts_as_ready() {
        let (tx_a, rx_a) = channel::unbounded::<u32>();
        let (_tx_b, rx_b) = channel::unbounded::<u32>();
        eventlet::spawn_after(ms(2), move || drop(tx_a));
        let got = Select::new().recv(&rx_a, |r| ("a", r)).recv(&rx_b, |r| ("b", r)).wait();
        assert_eq!(got, ("a", Err(RecvError)));
        nobody_waits(&rx_b);

        let (tx, rx) = channel::bounded::<&str>(0);
        eventlet::spawn_after(ms(2), move || drop(rx));
        let got = Select::new().send(&tx, "back", |r| r).wait();
        assert_eq!(got, Err(SendError("back")));
        assert_clean();
    }

    #[test]
    fn both_ready_cases_get_picked_over_many_rounds() {
        let (tx_a, rx_a) = channel::unbounded::<u8>();
        let (tx_b, rx_b) = channel::unbounded::<u8>();
        let mut picked = [0; 2];
        for _ in 0..200 {
            tx_a.send(0).unwrap();
            tx_b.send(1).unwrap();
            let i = Select::new().recv(&rx_a, |r| r.unwrap()).recv(&rx_b, |r| r.unwrap()).wait();
            picked[usize::from(i)] += 1;
            // Drain the other one.
            let _ = rx_a.try_recv();
            let _ = rx_b.try_recv();
        }
        assert!(picked[0] > 20 && picked[1] > 20, "unfair choice: {picked:?}");
    }

    #[test]
    fn a_killed_select_leaves_no_registration_and_passes_a_handed_message_on() {
        let (tx_a, rx_a) = channel::unbounded::<u32>();
        let (tx_b, rx_b) = channel::unbounded::<u32>();
        let (ra, rb) = (rx_a.clone(), rx_b.clone());
        let selector = eventlet::spawn(move || Select::new().recv(&ra, |r| r).recv(&rb, |r| r).wait());
        eventlet::yield_now();
        assert_eq!(tx_a.waiting().receivers, 1);
        assert_eq!(tx_b.waiting().receivers, 1);
        // Hand it a message on `a`, then kill it before it runs.
        tx_a.send(7).unwrap();
        selector.kill();
        assert!(selector.join().unwrap_err().is::<Killed>());
        nobody_waits(&rx_a);
        nobody_waits(&rx_b);
        assert_eq!(rx_a.try_recv(), Ok(7), "the message handed to the killed select was lost");

        let (ra, rb) = (rx_a.clone(), rx_b.clone());
        let selector = eventlet::spawn(move || Select::new().recv(&ra, |r| r).recv(&rb, |r| r).wait());
        eventlet::yield_now();
        selector.kill();
        assert!(selector.join().unwrap_err().is::<Killed>());
        nobody_waits(&rx_a);
        nobody_waits(&rx_b);
        drop(tx_b);
        assert_clean();
    }

    #[test]
    fn select_across_hubs() {
        let (tx_a, rx_a) = channel::unbounded::<u64>();
        let (tx_b, rx_b) = channel::unbounded::<u64>();
        const N: u64 = 2000;
        let pa = std::thread::spawn(move || (0..N).for_each(|i| tx_a.send(i).unwrap()));
        let pb = std::thread::spawn(move || (0..N).for_each(|i| tx_b.send(i).unwrap()));
        let (mut sum, mut count) = (0, 0);
        loop {
            let r = Select::new()
                .recv(&rx_a, |r| ("a", r))
                .recv(&rx_b, |r| ("b", r))
                .wait_timeout(Duration::from_secs(10))
                .expect("select across hubs timed out");
            match r {
                (_, Ok(v)) => {
                    sum += v;
                    count += 1;
                }
                (closed, Err(RecvError)) => {
                    // A disconnected channel is always ready: drain the
                    // other one on its own.
                    let other = if closed == "a" { &rx_b } else { &rx_a };
                    for v in other.iter() {
                        sum += v;
                        count += 1;
                    }
                    break;
                }
            }
        }
        pa.join().unwrap();
        pb.join().unwrap();
        assert_eq!(count, 2 * N);
        assert_eq!(sum, N * (N - 1));
        nobody_waits(&rx_a);
        nobody_waits(&rx_b);
        assert_clean();
    }
}

mod across_threads {
    use super::*;

    /// Messages from each producer: (producer, sequence number).
    fn run_hub_to_hub(total: u64, producers: u64, cap: Option<usize>) {
        let (tx, rx) = match cap {
            Some(c) => channel::bounded::<(u64, u64)>(c),
            None => channel::unbounded(),
        };
        let per = total / producers;
        let sending = std::thread::spawn(move || {
            let hs: Vec<_> = (0..producers)
                .map(|p| {
                    let tx = tx.clone();
                    eventlet::spawn(move || {
                        for i in 0..per {
                            tx.send((p, i)).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(eventlet::hub::stats().timers, 0);
        });
        let receiving = std::thread::spawn(move || {
            let h = eventlet::spawn(move || {
                let mut next = vec![0u64; producers as usize];
                let mut count = 0u64;
                for (p, i) in rx.iter() {
                    assert_eq!(i, next[p as usize], "producer {p}: lost, duplicated or reordered");
                    next[p as usize] += 1;
                    count += 1;
                }
                (count, next)
            });
            h.join().unwrap()
        });
        sending.join().unwrap();
        let (count, next) = receiving.join().unwrap();
        assert_eq!(count, per * producers);
        assert!(next.iter().all(|&n| n == per), "{next:?}");
    }

    #[test]
    fn a_million_messages_between_two_hubs() {
        let total = 1_000_000;
        let t = Instant::now();
        run_hub_to_hub(total, 4, Some(256));
        eprintln!("{total} messages hub to hub (bounded 256, 4 producers) in {:?}", t.elapsed());
    }

    #[test]
    fn unbounded_and_rendezvous_between_two_hubs() {
        run_hub_to_hub(100_000, 3, None);
        run_hub_to_hub(20_000, 2, Some(0));
    }

    #[test]
    fn many_consumers_on_two_hubs_get_everything_once() {
        const N: u64 = 100_000;
        let (tx, rx) = channel::bounded::<u64>(64);
        let total = Arc::new(AtomicUsize::new(0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (rx, total) = (rx.clone(), total.clone());
                std::thread::spawn(move || {
                    let hs: Vec<_> = (0..3)
                        .map(|_| {
                            let (rx, total) = (rx.clone(), total.clone());
                            eventlet::spawn(move || {
                                let (mut sum, mut n) = (0u64, 0u64);
                                for v in rx.iter() {
                                    sum += v;
                                    n += 1;
                                }
                                total.fetch_add(n as usize, Ordering::SeqCst);
                                sum
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                })
            })
            .collect();
        drop(rx);
        let producer = eventlet::spawn(move || (0..N).for_each(|v| tx.send(v).unwrap()));
        producer.join().unwrap();
        let sum: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(total.load(Ordering::SeqCst) as u64, N);
        assert_eq!(sum, N * (N - 1) / 2);
        assert_clean();
    }

    #[test]
    fn a_plain_thread_talks_to_green_threads() {
        let (to_green, from_plain) = channel::bounded::<u32>(0);
        let (to_plain, from_green) = channel::unbounded::<u32>();
        // No green code on this OS thread: plain sends and receives.
        let plain = std::thread::spawn(move || {
            for i in 0..1000 {
                to_green.send(i).unwrap();
                assert_eq!(from_green.recv(), Ok(i * 2));
            }
            drop(to_green);
            assert_eq!(from_green.recv(), Err(RecvError));
        });
        let green = eventlet::spawn(move || {
            for v in from_plain.iter() {
                to_plain.send(v * 2).unwrap();
            }
        });
        // Another green thread keeps running meanwhile: the waits park
        // green threads, not the hub.
        let ticks = Rc::new(std::cell::Cell::new(0));
        let t = ticks.clone();
        let ticker = eventlet::spawn(move || {
            for _ in 0..5 {
                eventlet::sleep(ms(1));
                t.set(t.get() + 1);
            }
        });
        green.join().unwrap();
        ticker.join().unwrap();
        plain.join().unwrap();
        assert_eq!(ticks.get(), 5);
        assert_clean();
    }

    #[test]
    fn the_root_context_of_another_thread_waits_for_a_green_sender() {
        let (tx, rx) = channel::unbounded::<&str>();
        let waiter = std::thread::spawn(move || {
            // The root parks, running this thread's (empty) hub; the live
            // registration keeps it from reporting a deadlock.
            let r = rx.recv_timeout(Duration::from_secs(10));
            (r, eventlet::hub::stats().timers)
        });
        eventlet::sleep(ms(20));
        tx.send("hello").unwrap();
        assert_eq!(waiter.join().unwrap(), (Ok("hello"), 0));
    }

    #[test]
    fn senders_and_receivers_are_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Sender<Vec<u8>>>();
        check::<Receiver<Vec<u8>>>();
    }
}
