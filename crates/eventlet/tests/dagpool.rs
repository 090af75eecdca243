//! DAG pools: tasks run once their dependencies have values, with those
//! values; outcomes come out of `wait_each` in the order they were posted;
//! failures (panics, kills) reach every waiter as errors naming the key,
//! through any number of dependents; collisions hand the value back; no
//! green thread or timer is left behind.

mod util;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use eventlet::dagpool::DAGPool;
use util::{assert_clean, ms, sleep_until};

#[test]
fn tasks_run_after_their_dependencies_with_their_values() {
    let order = Rc::new(RefCell::new(Vec::new()));
    let pool: DAGPool<&str, i64> = DAGPool::new();
    let log = |name: &'static str| {
        let order = order.clone();
        move |deps: HashMap<&str, i64>| {
            order.borrow_mut().push(name);
            deps.values().sum::<i64>() + 1
        }
    };
    // Spawned in an order that is not a topological one.
    pool.spawn("d", ["b", "c"], log("d")).unwrap();
    pool.spawn("b", ["a"], log("b")).unwrap();
    pool.spawn("c", ["a", "b"], log("c")).unwrap();
    pool.spawn("a", [], log("a")).unwrap();
    assert_eq!(pool.running(), 4);
    // a = 1, b = 2, c = 1 + 2 + 1 = 4, d = 2 + 4 + 1 = 7
    assert_eq!(pool.get(&"d"), Ok(7));
    assert_eq!(*order.borrow(), ["a", "b", "c", "d"]);
    let all = pool.waitall();
    assert_eq!(all.len(), 4);
    assert_eq!(all[&"c"], Ok(4));
    assert_eq!(pool.running(), 0);
    assert_clean();
}

#[test]
fn posted_values_wake_tasks_and_getters() {
    let pool: DAGPool<u32, String> = DAGPool::with_values([(0, "zero".to_owned())]);
    pool.spawn(2, [0, 1], |d| format!("{}+{}", d[&0], d[&1])).unwrap();
    let p = pool.clone();
    let getter = eventlet::spawn(move || p.get(&2));
    eventlet::sleep(ms(5));
    assert_eq!(pool.running(), 1, "task 2 still waits for key 1");
    assert_eq!(pool.waiting(), 2, "the task and the getter wait");
    assert!(pool.try_get(&2).is_none());
    pool.post(1, "one".to_owned()).unwrap();
    assert_eq!(getter.join().unwrap().unwrap(), "zero+one");
    assert_eq!(pool.waiting(), 0);
    assert_clean();
}

#[test]
fn wait_each_yields_in_the_order_of_posting() {
    let pool: DAGPool<char, u64> = DAGPool::new();
    pool.post('x', 0).unwrap();
    // Deadlines from one instant: a stall between the tasks' starts must
    // not reorder them.
    let start = Instant::now();
    for (key, delay) in [('a', 30), ('b', 10), ('c', 20)] {
        pool.spawn(key, [], move |_| {
            sleep_until(start + ms(delay));
            delay
        })
        .unwrap();
    }
    let got: Vec<(char, u64)> = pool.wait_each(['a', 'b', 'c', 'x']).map(|(k, v)| (k, v.unwrap())).collect();
    assert_eq!(got, [('x', 0), ('b', 10), ('c', 20), ('a', 30)]);
    assert_eq!(pool.wait(['a', 'b']).unwrap(), HashMap::from([('a', 30), ('b', 10)]));
    assert_clean();
}

#[test]
fn a_panicking_task_fails_its_dependents_and_their_waiters() {
    let ran = Rc::new(RefCell::new(false));
    let pool: DAGPool<&str, u8> = DAGPool::new();
    pool.spawn("bad", [], |_| -> u8 { panic!("disk on fire") }).unwrap();
    let r = ran.clone();
    pool.spawn("mid", ["bad"], move |_| {
        *r.borrow_mut() = true;
        1
    })
    .unwrap();
    pool.spawn("top", ["ok", "mid"], |_| 2).unwrap();
    let p = pool.clone();
    let waiter = eventlet::spawn(move || p.get(&"top"));
    pool.post("ok", 0).unwrap();

    let err = waiter.join().unwrap().unwrap_err();
    assert_eq!(*err.key(), "top");
    assert_eq!(*err.dependency().unwrap().key(), "mid");
    assert_eq!(*err.root().key(), "bad");
    assert_eq!(err.root().panic_message(), Some("disk on fire"));
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(
        err.to_string(),
        r#"task "top" failed: its dependency "mid" failed: its dependency "bad" failed: it panicked: disk on fire"#
    );
    assert!(!*ran.borrow(), "a dependent of a failed task does not run");
    assert_eq!(pool.wait(["ok", "bad"]).unwrap_err().key(), &"bad");
    let each: Vec<_> = pool.wait_each(["top", "ok"]).map(|(k, v)| (k, v.is_ok())).collect();
    assert_eq!(each, [("ok", true), ("top", false)]);
    assert_clean();
}

#[test]
fn a_killed_task_posts_an_error_instead_of_hanging_its_waiters() {
    let pool: DAGPool<u8, u8> = DAGPool::new();
    pool.spawn(1, [0], |_| 1).unwrap(); // waits for 0 forever
    pool.spawn(2, [1], |_| 2).unwrap();
    pool.spawn(3, [], |_| 3).unwrap(); // killed before it starts
    assert!(pool.kill(&3));
    assert!(pool.get(&3).unwrap_err().is_killed());
    eventlet::yield_now();
    assert!(pool.kill(&1));
    let err = pool.get(&2).unwrap_err();
    assert!(err.root().is_killed() && *err.root().key() == 1);
    assert!(!pool.kill(&1), "nothing runs for key 1 any more");
    assert_eq!(pool.running(), 0);
    assert_clean();
}

#[test]
fn collisions_hand_the_value_back() {
    let pool: DAGPool<&str, i32> = DAGPool::new();
    pool.post("a", 1).unwrap();
    let e = pool.post("a", 2).unwrap_err();
    assert_eq!((e.key, e.value), ("a", 2));
    pool.spawn("b", ["c"], |_| 3).unwrap();
    assert_eq!(pool.post("b", 4).unwrap_err().value, 4, "b has a running task");
    let e = pool.spawn("a", [], |_| 5).unwrap_err();
    assert_eq!((e.value)(HashMap::new()), 5, "the function is handed back");
    assert_eq!(pool.get(&"a"), Ok(1), "the first value stays");
    pool.post("c", 0).unwrap();
    assert_eq!(pool.get(&"b"), Ok(3));
    let mut keys = pool.keys();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_clean();
}

#[test]
fn getters_wake_in_the_order_they_began_to_wait() {
    let pool: DAGPool<u8, u8> = DAGPool::new();
    let woke = Rc::new(RefCell::new(Vec::new()));
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let (p, woke) = (pool.clone(), woke.clone());
            eventlet::spawn(move || {
                for _ in 0..(4 - i) {
                    eventlet::yield_now();
                }
                p.get(&7).unwrap();
                woke.borrow_mut().push(i);
            })
        })
        .collect();
    for _ in 0..6 {
        eventlet::yield_now();
    }
    assert_eq!(pool.waiting(), 4);
    pool.post(7, 7).unwrap();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*woke.borrow(), [3, 2, 1, 0]);
    assert_clean();
}
