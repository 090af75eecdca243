//! Resource pools: items are reused, at most `max_size` exist, waiters are
//! served in arrival order with direct hand-over, discarded items free
//! their place, create errors reach the caller, and kills and timeouts
//! leave no stale waiter, timer or lost place behind.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use eventlet::pools::{Pool, TryPool};
use util::{assert_clean, ms};

/// A pool whose items are numbered as they are made.
fn counting_pool(min: usize, max: usize) -> (Pool<usize>, Rc<Cell<usize>>) {
    let made = Rc::new(Cell::new(0));
    let m = made.clone();
    let pool = Pool::new(min, max, move || {
        m.set(m.get() + 1);
        m.get()
    });
    (pool, made)
}

#[test]
fn min_size_items_are_made_eagerly_and_reused() {
    let (pool, made) = counting_pool(2, 4);
    assert_eq!(made.get(), 2);
    assert_eq!((pool.len(), pool.free(), pool.max_size()), (2, 4, 4));
    let a = pool.get();
    assert_eq!(*a, 1, "free items go out oldest first");
    drop(a);
    assert_eq!(*pool.get(), 2);
    assert_eq!(*pool.get(), 1, "item 1 was given back first");
    assert_eq!(made.get(), 2, "nothing new was made");
    assert_clean();
}

#[test]
fn at_most_max_size_items_exist_then_try_get_fails() {
    let (pool, made) = counting_pool(0, 2);
    let a = pool.get();
    let b = pool.get();
    assert_eq!((*a, *b), (1, 2));
    assert_eq!(pool.free(), 0);
    assert!(pool.try_get().is_none());
    let t0 = Instant::now();
    assert!(pool.get_timeout(ms(20)).is_none());
    assert!(t0.elapsed() >= ms(20));
    assert_eq!((made.get(), pool.len(), pool.waiting()), (2, 2, 0));
    drop(a);
    assert_eq!(pool.try_get().as_deref(), Some(&1));
    drop(b);
    assert_clean();
}

#[test]
fn waiters_are_served_in_arrival_order_with_direct_handover() {
    let (pool, _) = counting_pool(0, 1);
    let held = pool.get();
    let served = Rc::new(RefCell::new(Vec::new()));
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let (pool, served) = (pool.clone(), served.clone());
            eventlet::spawn(move || {
                // Begin to wait in the order 4, 3, 2, 1, 0.
                for _ in 0..(5 - i) {
                    eventlet::yield_now();
                }
                let item = pool.get();
                served.borrow_mut().push(i);
                eventlet::yield_now();
                drop(item);
            })
        })
        .collect();
    for _ in 0..10 {
        eventlet::yield_now();
    }
    assert_eq!(pool.waiting(), 5);
    drop(held);
    // Handed over: a latecomer cannot barge in before the waiters wake.
    assert_eq!(pool.waiting(), 4);
    assert!(pool.try_get().is_none(), "the item was handed to the longest waiter");
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*served.borrow(), [4, 3, 2, 1, 0]);
    assert_eq!((pool.len(), pool.free()), (1, 1));
    assert_clean();
}

#[test]
fn discard_frees_the_place_for_a_new_item_even_for_a_waiter() {
    let (pool, made) = counting_pool(1, 1);
    let broken = pool.get();
    let p = pool.clone();
    let waiter = eventlet::spawn(move || *p.get());
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 1);
    broken.discard();
    assert_eq!(waiter.join().unwrap(), 2, "the waiter made a fresh item");
    assert_eq!((made.get(), pool.len()), (2, 1));
    let taken = pool.get().into_inner();
    assert_eq!((taken, pool.len(), pool.free()), (2, 0, 1));
    assert_eq!(*pool.get(), 3);
    assert_clean();
}

#[test]
fn a_killed_waiter_leaves_no_trace_and_passes_on_a_handover() {
    let (pool, _) = counting_pool(0, 1);
    let held = pool.get();
    let p = pool.clone();
    let first = eventlet::spawn(move || *p.get());
    let p = pool.clone();
    let second = eventlet::spawn(move || *p.get());
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 2);
    // Killed while queued: it leaves the queue.
    first.kill();
    assert!(first.join().unwrap_err().is::<eventlet::Killed>());
    assert_eq!(pool.waiting(), 1);

    // Killed after the hand-over and before it woke: the item goes on.
    let p = pool.clone();
    let third = eventlet::spawn(move || *p.get());
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 2);
    drop(held); // handed to `second`
    second.kill();
    assert!(second.join().unwrap_err().is::<eventlet::Killed>());
    assert_eq!(third.join().unwrap(), 1, "the item reached the next waiter");
    assert_eq!((pool.len(), pool.free(), pool.waiting()), (1, 1, 0));
    assert_clean();
}

#[test]
fn a_timed_out_waiter_leaves_the_queue() {
    let (pool, _) = counting_pool(0, 1);
    let held = pool.get();
    let p = pool.clone();
    let w = eventlet::spawn(move || p.get_timeout(ms(10)).is_none());
    assert!(w.join().unwrap());
    assert_eq!(pool.waiting(), 0);
    drop(held);
    assert_eq!(pool.free(), 1);
    assert_clean();
}

#[test]
fn items_come_back_when_their_holder_panics() {
    let (pool, _) = counting_pool(0, 1);
    let p = pool.clone();
    let h = eventlet::spawn(move || {
        let _item = p.get();
        panic!("boom");
    });
    assert!(h.join().is_err());
    assert_eq!((pool.len(), pool.free()), (1, 1));
    assert_eq!(*pool.get(), 1, "the same item came back");
    assert_clean();
}

#[test]
fn try_pool_reports_create_errors_and_frees_the_place() {
    let fail = Rc::new(Cell::new(true));
    let made = Rc::new(Cell::new(0));
    let (f, m) = (fail.clone(), made.clone());
    let pool: TryPool<usize, String> = TryPool::new(0, 1, move || {
        // Creating takes a while, as a connect does.
        eventlet::sleep(ms(1));
        if f.get() {
            return Err("refused".to_owned());
        }
        m.set(m.get() + 1);
        Ok(m.get())
    })
    .unwrap();
    assert_eq!(pool.get().unwrap_err(), "refused");
    assert_eq!(pool.try_get().unwrap_err(), "refused");
    assert_eq!((pool.len(), pool.free()), (0, 1), "failed attempts took no place");
    fail.set(false);
    let g = pool.get().unwrap();
    assert_eq!((*g, pool.len(), pool.free()), (1, 1, 0));
    assert!(matches!(pool.get_timeout(ms(5)), Ok(None)));
    g.discard();
    fail.set(true);
    assert_eq!(pool.get_timeout(ms(5)).unwrap_err(), "refused");
    assert_eq!((pool.len(), pool.free(), pool.waiting()), (0, 1, 0));
    assert_eq!(made.get(), 1);

    let failing = TryPool::<u8, &str>::new(1, 2, || Err("down"));
    assert_eq!(failing.unwrap_err(), "down");
    assert_clean();
}

#[test]
fn a_failed_create_hands_its_place_to_the_next_waiter() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let pool: TryPool<u32, &str> = TryPool::new(0, 1, move || {
        c.set(c.get() + 1);
        eventlet::sleep(ms(1));
        if c.get() == 1 {
            Err("first attempt fails")
        } else {
            Ok(c.get())
        }
    })
    .unwrap();
    let p = pool.clone();
    let first = eventlet::spawn(move || p.get().map(|g| *g));
    let p = pool.clone();
    let second = eventlet::spawn(move || p.get().map(|g| *g));
    assert_eq!(first.join().unwrap(), Err("first attempt fails"));
    assert_eq!(second.join().unwrap(), Ok(2), "the waiter got the freed place and made an item");
    assert_eq!((pool.len(), pool.free(), calls.get()), (1, 1, 2));
    assert_clean();
}

#[test]
#[should_panic(expected = "min_size")]
fn min_above_max_panics() {
    let _ = Pool::new(3, 2, || ());
}

/// Counts the items dropped.
struct Item(usize, Rc<Cell<usize>>);

impl Drop for Item {
    fn drop(&mut self) {
        self.1.set(self.1.get() + 1);
    }
}

fn dropping_pool(min: usize, max: usize) -> (Pool<Item>, Rc<Cell<usize>>) {
    let dropped = Rc::new(Cell::new(0));
    let (made, d) = (Cell::new(0), dropped.clone());
    let pool = Pool::new(min, max, move || {
        made.set(made.get() + 1);
        Item(made.get(), d.clone())
    });
    (pool, dropped)
}

#[test]
fn shrinking_drops_free_items_now_and_items_out_as_they_come_back() {
    let (pool, dropped) = dropping_pool(4, 4);
    let (a, b) = (pool.get(), pool.get());
    assert_eq!((a.0, b.0), (1, 2));
    pool.resize(1);
    assert_eq!(dropped.get(), 2, "the two free items beyond the new size were dropped at once");
    assert_eq!((pool.len(), pool.free(), pool.max_size()), (2, 0, 1));
    // A waiter waits until the pool is back within its size.
    let p = pool.clone();
    let waiter = eventlet::spawn(move || p.get().0);
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 1);
    drop(a);
    assert_eq!(dropped.get(), 3, "given back above the size: dropped");
    assert_eq!((pool.len(), pool.waiting()), (1, 1));
    drop(b);
    assert_eq!(waiter.join().unwrap(), 2, "within the size again: handed to the waiter");
    assert_eq!(dropped.get(), 3);
    assert_eq!((pool.len(), pool.free()), (1, 1));
    drop(pool);
    assert_eq!(dropped.get(), 4, "nothing leaked");
    assert_clean();
}

#[test]
fn growing_lets_waiters_make_new_items_oldest_first() {
    let (pool, made) = counting_pool(0, 1);
    let held = pool.get();
    let order = Rc::new(RefCell::new(Vec::new()));
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let (p, o) = (pool.clone(), order.clone());
            eventlet::spawn(move || {
                let item = p.get();
                o.borrow_mut().push(i);
                eventlet::sleep(ms(5));
                *item
            })
        })
        .collect();
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 3);
    pool.resize(3);
    assert_eq!(pool.waiting(), 1, "two new places, to the two oldest waiters");
    eventlet::yield_now();
    assert_eq!(*order.borrow(), [0, 1]);
    drop(held);
    let got: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(*order.borrow(), [0, 1, 2]);
    assert_eq!(got, [2, 3, 1], "two made anew, then the first item handed over");
    assert_eq!(made.get(), 3);
    assert_clean();
}

#[test]
fn order_as_stack_reuses_the_warmest_items_for_try_pools_too() {
    let made = Rc::new(Cell::new(0));
    let m = made.clone();
    let pool = TryPool::new(0, 3, move || {
        m.set(m.get() + 1);
        Ok::<_, ()>(m.get())
    })
    .unwrap()
    .order_as_stack();
    let (a, b, c) = (pool.get().unwrap(), pool.get().unwrap(), pool.get().unwrap());
    drop(b);
    drop(a);
    drop(c);
    let got: Vec<usize> = (0..3).map(|_| pool.get().unwrap().into_inner()).collect();
    assert_eq!(got, [3, 1, 2], "last given back first");
    pool.resize(4);
    assert_eq!(pool.max_size(), 4);
}
