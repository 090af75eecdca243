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
//! A green thread's values are dropped when its body ends (returns, panics
//! or is killed), on that green thread, so their destructors may block and
//! use green-locals. The root context's values are dropped when its OS
//! thread exits; a green-local used from a destructor that runs after the
//! thread's hub is gone gets a fresh value that is dropped at once. So are
//! the values of a green thread still parked when its OS thread exits
//! (which is leaked with its stack, never resumed): there, a destructor
//! that panics is reported and the others still run, and one that blocks
//! finds the hub gone (a panic, contained likewise).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use crate::hub::try_with_hub;

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
        let found = with_current_locals(|l| l.borrow().as_ref().and_then(|m| m.get(&key).cloned()));
        let value = match found {
            Some(Some(v)) => v,
            Some(None) => {
                // Initialize outside the borrow: the initializer may use
                // green-locals itself. If it set this one meanwhile, that
                // value stays (as the first one made).
                let v: Rc<dyn Any> = Rc::new((self.init)());
                let stored = with_current_locals(|l| {
                    l.borrow_mut().get_or_insert_with(Default::default).entry(key).or_insert_with(|| v.clone()).clone()
                });
                stored.unwrap_or(v)
            }
            None => Rc::new((self.init)()),
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

/// Runs `f` with the running green thread's (or root's) green-locals, or
/// returns `None` while this OS thread is being torn down (its hub is gone).
fn with_current_locals<R>(f: impl FnOnce(&RefCell<Option<Box<Locals>>>) -> R) -> Option<R> {
    try_with_hub(|h| f(&h.current().locals))
}

crate::green_local! {
    /// What the runtime keeps for a green thread until it ends (see
    /// [`keep_until_end`]).
    static KEPT: RefCell<Vec<Box<dyn Any>>> = RefCell::new(Vec::new());
}

/// Keeps `value` with the running green thread's green-locals: it is
/// dropped when the green thread ends, or, if the green thread is still
/// parked when its OS thread exits, by the exiting hub. For guards that
/// must answer whoever waits for the green thread from elsewhere even if
/// it never ends (a `RemoteJoinHandle`, a `GreenFuture`).
pub(crate) fn keep_until_end(value: Box<dyn Any>) {
    KEPT.with_borrow_mut(|k| k.push(value));
}
