//! Green-local storage: [`green_local!`](crate::green_local) is
//! `thread_local!` per green thread.
//!
//! ```
//! use std::cell::Cell;
//!
//! eventlet::green_local! {
//!     static REQUESTS: Cell<u32> = Cell::new(0);
//! }
//!
//! let handles: Vec<_> = (1..=3)
//!     .map(|n| {
//!         eventlet::spawn(move || {
//!             for _ in 0..n {
//!                 REQUESTS.with(|r| r.set(r.get() + 1));
//!                 eventlet::yield_now(); // the others run in between
//!             }
//!             REQUESTS.with(Cell::get)
//!         })
//!     })
//!     .collect();
//! let counts: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
//! assert_eq!(counts, [1, 2, 3]);
//! // The root context (here, the test's main) has its own value.
//! assert_eq!(REQUESTS.with(Cell::get), 0);
//! ```
//!
//! Each green thread (and each OS thread's root context) sees its own
//! value of every green-local, created by the initializer on its first
//! use there. As with `thread_local!`, the value is reached through
//! [`LocalKey::with`] and shared only by reference: wrap it in a `Cell` or
//! `RefCell` to change it. Values need not be `Send` (green threads never
//! change OS thread).
//!
//! # When values are dropped
//!
//! The runtime keeps no storage slot in its green threads yet, so for now
//! the values live in a per-OS-thread table keyed by green thread id. A
//! finished green thread's values are dropped the next time the table is
//! swept: when a green thread first uses a green-local and the table has
//! doubled since the last sweep. So they are dropped, but late and on
//! another green thread; the root context's values live until its OS
//! thread exits.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use crate::greenthread::{current, GreenThread};

/// One green thread's green-local values, by key address.
pub(crate) type Locals = HashMap<usize, Rc<dyn Any>>;

/// Declares green-local statics, like [`std::thread_local!`]:
///
/// ```
/// use std::cell::RefCell;
///
/// eventlet::green_local! {
///     /// The names this green thread has seen.
///     pub static SEEN: RefCell<Vec<String>> = RefCell::new(Vec::new());
///     static DEPTH: std::cell::Cell<usize> = std::cell::Cell::new(0);
/// }
///
/// SEEN.with_borrow_mut(|s| s.push("root".into()));
/// let h = eventlet::spawn(|| SEEN.with_borrow(|s| s.len()));
/// assert_eq!(h.join().unwrap(), 0);
/// assert_eq!(SEEN.with_borrow(|s| s.clone()), ["root"]);
/// # DEPTH.with(|d| d.set(1));
/// ```
///
/// Each static is a [`LocalKey`]; see the [module docs](crate::local).
#[macro_export]
macro_rules! green_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])* $vis static $name: $crate::local::LocalKey<$t> = $crate::local::LocalKey::new({
            fn __eventlet_green_local_init() -> $t {
                $init
            }
            __eventlet_green_local_init
        });
        $crate::green_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $crate::green_local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}

/// A green-local key, declared with [`green_local!`](crate::green_local).
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
}

impl<T: 'static> LocalKey<T> {
    /// Used by [`green_local!`](crate::green_local); not meant to be called
    /// directly.
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey { init }
    }

    /// Runs `f` with the running green thread's value, creating it first
    /// if this green thread has not used it yet.
    ///
    /// `f` and the initializer may use other green-locals, and this one
    /// again (the value is shared by reference).
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self as *const LocalKey<T> as usize;
        let found = with_current_locals(|l| l.borrow().get(&key).cloned());
        let value = match found {
            Some(v) => v,
            None => {
                // Initialize outside the borrow: the initializer may use
                // green-locals itself. If it set this one meanwhile, that
                // value stays (as the first one made).
                let v: Rc<dyn Any> = Rc::new((self.init)());
                with_current_locals(|l| l.borrow_mut().entry(key).or_insert(v).clone())
            }
        };
        f(value.downcast_ref::<T>().expect("a green-local key maps to its own type"))
    }
}

impl<T: 'static> LocalKey<Cell<T>> {
    /// Sets the running green thread's value.
    pub fn set(&'static self, value: T) {
        self.with(|c| c.set(value))
    }

    /// Replaces the running green thread's value, returning the old one.
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }
}

impl<T: Copy + 'static> LocalKey<Cell<T>> {
    /// A copy of the running green thread's value.
    pub fn get(&'static self) -> T {
        self.with(Cell::get)
    }
}

impl<T: 'static> LocalKey<RefCell<T>> {
    /// Runs `f` with a shared borrow of the running green thread's value.
    ///
    /// # Panics
    ///
    /// If the value is mutably borrowed.
    pub fn with_borrow<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        self.with(|c| f(&c.borrow()))
    }

    /// Runs `f` with a mutable borrow of the running green thread's value.
    ///
    /// # Panics
    ///
    /// If the value is borrowed.
    pub fn with_borrow_mut<R>(&'static self, f: impl FnOnce(&mut T) -> R) -> R {
        self.with(|c| f(&mut c.borrow_mut()))
    }

    /// Sets the running green thread's value.
    ///
    /// # Panics
    ///
    /// If the value is borrowed.
    pub fn set(&'static self, value: T) {
        self.with(|c| *c.borrow_mut() = value)
    }
}

impl<T: 'static> fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// TEMPORARY: per-green-thread storage kept outside the hub.
//
// The hook this module needs from the hub is
//
//     pub(crate) fn with_current_locals<R>(f: impl FnOnce(&RefCell<Locals>) -> R) -> R
//
// backed by a `locals: RefCell<Locals>` field in `hub::Task` (the root has
// one too), emptied at the end of the green thread's body inside its
// coroutine, so that values are dropped when the green thread ends, on that
// green thread. Until then, the table below stands in for it: values are
// keyed by green thread id, and entries of finished green threads are
// removed by an occasional sweep (the hub has no "green thread finished"
// hook this module could use).

/// The per-OS-thread table of green-local values.
struct Table {
    by_thread: HashMap<u64, (GreenThread, Rc<RefCell<Locals>>)>,
    /// Sweep when the table has this many entries.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 64;

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table { by_thread: HashMap::new(), sweep_at: FIRST_SWEEP });
}

/// Runs `f` with the running green thread's (or root's) green-locals.
fn with_current_locals<R>(f: impl FnOnce(&RefCell<Locals>) -> R) -> R {
    let me = current();
    let id = me.id();
    let (locals, swept) = TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if let Some((_, l)) = t.by_thread.get(&id) {
            return (l.clone(), Vec::new());
        }
        let mut swept = Vec::new();
        if t.by_thread.len() >= t.sweep_at {
            let dead: Vec<u64> = t.by_thread.iter().filter(|(_, (g, _))| g.is_finished()).map(|(&k, _)| k).collect();
            swept = dead.into_iter().filter_map(|k| t.by_thread.remove(&k)).collect();
            t.sweep_at = (2 * t.by_thread.len()).max(FIRST_SWEEP);
        }
        let l = Rc::new(RefCell::new(Locals::new()));
        t.by_thread.insert(id, (me, l.clone()));
        (l, swept)
    });
    // Finished green threads' values are dropped outside the table's
    // borrow: their destructors may use green-locals.
    drop(swept);
    f(&locals)
}
