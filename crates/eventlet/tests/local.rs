//! Green-local storage: each green thread (and each root) has its own
//! value, created lazily; values of finished green threads are dropped.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

eventlet::green_local! {
    static COUNT: Cell<u32> = Cell::new(0);
    static NAMES: RefCell<Vec<String>> = RefCell::new(Vec::new());
}

#[test]
fn each_green_thread_sees_its_own_value() {
    COUNT.set(100);
    let handles: Vec<_> = (0..10u32)
        .map(|i| {
            eventlet::spawn(move || {
                assert_eq!(COUNT.get(), 0, "a new green thread starts from the initializer");
                for _ in 0..i {
                    COUNT.with(|c| c.set(c.get() + 1));
                    // Everyone else runs in between.
                    eventlet::yield_now();
                }
                NAMES.with_borrow_mut(|n| n.push(format!("thread {i}")));
                eventlet::yield_now();
                (COUNT.get(), NAMES.with_borrow(|n| n.clone()))
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (count, names) = h.join().unwrap();
        assert_eq!(count, i as u32);
        assert_eq!(names, [format!("thread {i}")]);
    }
    // The root's own value was untouched by all of them.
    assert_eq!(COUNT.get(), 100);
    assert!(NAMES.with_borrow(|n| n.is_empty()));
    assert_eq!(COUNT.replace(5), 100);
    assert_eq!(COUNT.get(), 5);
}

#[test]
fn another_os_thread_has_its_own_values() {
    COUNT.set(7);
    let other = std::thread::spawn(|| {
        let root = COUNT.get();
        let green = eventlet::spawn(|| {
            COUNT.set(9);
            COUNT.get()
        })
        .join()
        .unwrap();
        (root, green, COUNT.get())
    });
    assert_eq!(other.join().unwrap(), (0, 9, 0));
    assert_eq!(COUNT.get(), 7);
}

static INITS: AtomicUsize = AtomicUsize::new(0);

eventlet::green_local! {
    /// Counts how often its initializer runs.
    static LAZY: u64 = {
        INITS.fetch_add(1, Ordering::SeqCst);
        42
    };
    // The initializer may itself use green-locals.
    static DERIVED: u64 = LAZY.with(|v| v + 1)
}

#[test]
fn values_are_created_lazily_once_per_green_thread_and_may_nest() {
    let before = INITS.load(Ordering::SeqCst);
    let h = eventlet::spawn(|| {
        let a = LAZY.with(|v| *v);
        let b = LAZY.with(|v| *v);
        // Nested use of another key inside `with`.
        let c = LAZY.with(|v| DERIVED.with(|d| *v + *d));
        (a, b, c)
    });
    assert_eq!(h.join().unwrap(), (42, 42, 85));
    assert_eq!(INITS.load(Ordering::SeqCst) - before, 1);
    // A green thread that never touches it never creates it.
    eventlet::spawn(|| ()).join().unwrap();
    assert_eq!(INITS.load(Ordering::SeqCst) - before, 1);
}

struct DropCount(Rc<Cell<usize>>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

eventlet::green_local! {
    static GUARD: RefCell<Option<DropCount>> = RefCell::new(None);
}

#[test]
fn values_of_finished_green_threads_are_dropped() {
    let drops = Rc::new(Cell::new(0));
    let batch = |n: usize, killed: bool| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let d = drops.clone();
                eventlet::spawn(move || {
                    GUARD.set(Some(DropCount(d)));
                    if killed {
                        eventlet::sleep(std::time::Duration::from_secs(60));
                    }
                })
            })
            .collect();
        if killed {
            eventlet::yield_now();
            for h in &hs {
                h.kill();
            }
        }
        for h in hs {
            let _ = h.join();
        }
    };
    // Values go when their green thread ends, killed or not.
    batch(300, false);
    assert_eq!(drops.get(), 300);
    batch(100, true);
    assert_eq!(drops.get(), 400);
    // The root's value stays.
    GUARD.set(Some(DropCount(drops.clone())));
    batch(1, false);
    assert_eq!(drops.get(), 401);
    assert!(GUARD.with_borrow(Option::is_some));
}

struct OnDrop(Rc<Cell<Option<u64>>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        // Destructors run on the green thread itself and may block.
        eventlet::sleep(std::time::Duration::from_millis(1));
        self.0.set(Some(eventlet::current().id()));
    }
}

eventlet::green_local! {
    static ON_DROP: RefCell<Option<OnDrop>> = RefCell::new(None);
}

#[test]
fn values_are_dropped_on_their_own_green_thread_before_join_returns() {
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    let h = eventlet::spawn(move || ON_DROP.set(Some(OnDrop(s))));
    let id = h.thread().id();
    h.join().unwrap();
    assert_eq!(seen.get(), Some(id));
}
