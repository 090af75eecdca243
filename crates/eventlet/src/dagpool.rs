//! Keyed tasks that wait for the results of other tasks (eventlet's
//! `dagpool` module): [`DAGPool`].
//!
//! Each key of a pool gets one value, at most once: either
//! [`post`](DAGPool::post)ed directly, or computed by a green thread
//! [`spawn`](DAGPool::spawn)ed for that key with a list of keys it depends
//! on. The green thread starts at once, waits until a value exists for
//! every dependency, then calls its function with them (a map from key to
//! value) and posts what it returns. Anyone can wait for a key with
//! [`get`](DAGPool::get), for several as they arrive with
//! [`wait_each`](DAGPool::wait_each), or for every spawned task with
//! [`waitall`](DAGPool::waitall).
//!
//! A task that panics or is killed posts a [`PropagateError`] naming its
//! key instead of a value; the tasks that depend on it post their own
//! `PropagateError` (whose [`source`](std::error::Error::source) is the
//! dependency's) without running, and everyone waiting for any of those
//! keys gets the error, so a failure never leaves a waiter hanging.
//!
//! Waiters are woken in the order they began to wait whenever a value is
//! posted, and look for the keys they want; that costs a little for each
//! waiter on each post, which suits graphs of tens to thousands of tasks.
//!
//! # Differences from eventlet
//!
//! The function receives all its dependencies' values at once, not an
//! iterator over them as they arrive. Posting to a key that has a value or
//! a running task fails ([`Collision`], handing the value back) rather
//! than replacing; there is no `replace` flag.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::rc::Rc;

use crate::greenthread::{spawn, JoinHandle};
use crate::hub::Killed;
use crate::waitlist::{Wait, WaitList};

/// The outcome posted for one key.
type Outcome<K, V> = Result<V, PropagateError<K>>;

/// Outcomes by key, each with the number of the post that made it.
type Outcomes<K, V> = HashMap<K, (u64, Outcome<K, V>)>;

struct Shared<K, V> {
    /// Outcomes, each with the number of the post that made it (for
    /// `wait_each`, which hands out outcomes in the order they came).
    values: RefCell<Outcomes<K, V>>,
    posts: Cell<u64>,
    /// Spawned tasks that have not posted yet.
    running: RefCell<HashMap<K, Rc<JoinHandle<()>>>>,
    /// Everyone waiting for some post.
    waiters: WaitList<()>,
}

impl<K: Eq + Hash + Clone, V: Clone> Shared<K, V> {
    fn post(&self, key: K, outcome: Outcome<K, V>) {
        let n = self.posts.get() + 1;
        self.posts.set(n);
        self.values.borrow_mut().insert(key, (n, outcome));
        self.waiters.grant_all();
    }

    fn outcome(&self, key: &K) -> Option<Outcome<K, V>> {
        self.values.borrow().get(key).map(|(_, o)| o.clone())
    }

    /// Parks until the next post (or spuriously).
    fn wait_for_post(&self) {
        let wait = pin!(Wait::new(&self.waiters, None, |_, _| {}));
        let wait = wait.enqueue();
        wait.park(None);
    }

    /// Waits until every key in `keys` has an outcome and returns their
    /// values, or the error of the first one (in `keys` order) that failed.
    fn gather(&self, keys: &[K]) -> Result<HashMap<K, V>, PropagateError<K>> {
        while !keys.iter().all(|k| self.values.borrow().contains_key(k)) {
            self.wait_for_post();
        }
        let values = self.values.borrow();
        keys.iter()
            .map(|k| match &values[k].1 {
                Ok(v) => Ok((k.clone(), v.clone())),
                Err(e) => Err(e.clone()),
            })
            .collect()
    }
}

/// Posts a `Killed` error for its key unless the task posted something:
/// the task was killed (perhaps before it started) or its function could
/// not be called.
struct PostOnDrop<K: Eq + Hash + Clone, V: Clone> {
    shared: Rc<Shared<K, V>>,
    key: Option<K>,
}

impl<K: Eq + Hash + Clone, V: Clone> PostOnDrop<K, V> {
    fn post(mut self, outcome: Outcome<K, V>) {
        if let Some(key) = self.key.take() {
            self.shared.running.borrow_mut().remove(&key);
            self.shared.post(key, outcome);
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Drop for PostOnDrop<K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.shared.running.borrow_mut().remove(&key);
            let err = PropagateError { key: key.clone(), cause: Cause::Killed };
            self.shared.post(key, Err(err));
        }
    }
}

/// A pool of keyed tasks that wait for each other's results (eventlet's
/// `DAGPool`). See the [module docs](self).
///
/// Cloning a `DAGPool` gives another handle to the same pool. It belongs
/// to one OS thread (it is not `Send`).
///
/// # Examples
///
/// ```
/// use eventlet::dagpool::DAGPool;
///
/// // a ── b ── d
/// //  └── c ──┘
/// let pool = DAGPool::new();
/// pool.spawn("b", ["a"], |deps| deps["a"] + 1).unwrap();
/// pool.spawn("c", ["a"], |deps| deps["a"] * 10).unwrap();
/// pool.spawn("d", ["b", "c"], |deps| deps["b"] + deps["c"]).unwrap();
/// pool.post("a", 2).unwrap(); // b and c can run now
/// assert_eq!(pool.get(&"d"), Ok(23));
///
/// // A panicking task fails its dependents instead of hanging them.
/// pool.spawn("e", [], |_| panic!("no luck")).unwrap();
/// pool.spawn("f", ["e", "d"], |deps| deps["d"]).unwrap();
/// let err = pool.get(&"f").unwrap_err();
/// assert_eq!(err.key(), &"f");
/// assert_eq!(err.root().key(), &"e");
/// assert_eq!(err.to_string(), r#"task "f" failed: its dependency "e" failed: it panicked: no luck"#);
/// ```
pub struct DAGPool<K, V> {
    shared: Rc<Shared<K, V>>,
}

impl<K, V> DAGPool<K, V>
where
    K: Eq + Hash + Clone + 'static,
    V: Clone + 'static,
{
    /// An empty pool.
    pub fn new() -> DAGPool<K, V> {
        DAGPool {
            shared: Rc::new(Shared {
                values: RefCell::new(HashMap::new()),
                posts: Cell::new(0),
                running: RefCell::new(HashMap::new()),
                waiters: WaitList::new(),
            }),
        }
    }

    /// A pool with values for some keys already (eventlet's `preload`).
    pub fn with_values(values: impl IntoIterator<Item = (K, V)>) -> DAGPool<K, V> {
        let pool = DAGPool::new();
        for (k, v) in values {
            pool.shared.post(k, Ok(v));
        }
        pool
    }

    /// Spawns a green thread that waits for a value for each key in
    /// `deps`, then calls `f` with them and posts its result for `key`.
    ///
    /// If a dependency failed, `f` is not called and the task posts a
    /// [`PropagateError`] whose source is the dependency's; if `f` panics
    /// or the task is killed (see [`kill`](Self::kill)), it posts one
    /// naming the panic or the kill.
    ///
    /// # Errors
    ///
    /// [`Collision`] with `f` if `key` has a value already or a task
    /// running for it.
    pub fn spawn<F>(&self, key: K, deps: impl IntoIterator<Item = K>, f: F) -> Result<(), Collision<K, F>>
    where
        F: FnOnce(HashMap<K, V>) -> V + 'static,
    {
        if self.has_key(&key) {
            return Err(Collision { key, value: f });
        }
        let deps: Vec<K> = deps.into_iter().collect();
        let k = key.clone();
        let guard = PostOnDrop { shared: self.shared.clone(), key: Some(key.clone()) };
        let h = spawn(move || {
            let shared = guard.shared.clone();
            let outcome = match shared.gather(&deps) {
                Ok(values) => match panic::catch_unwind(AssertUnwindSafe(|| f(values))) {
                    Ok(v) => Ok(v),
                    Err(p) if p.is::<Killed>() => panic::resume_unwind(p),
                    Err(p) => Err(PropagateError {
                        key: key.clone(),
                        cause: Cause::Panicked(crate::report::payload_text(p.as_ref()).into_owned()),
                    }),
                },
                Err(dep) => Err(PropagateError { key: key.clone(), cause: Cause::Dependency(Box::new(dep)) }),
            };
            guard.post(outcome);
        });
        self.shared.running.borrow_mut().insert(k, Rc::new(h));
        Ok(())
    }

    /// Posts `value` for `key`, waking whoever waits for it.
    ///
    /// # Errors
    ///
    /// [`Collision`] with `value` if `key` has a value already or a task
    /// running for it.
    pub fn post(&self, key: K, value: V) -> Result<(), Collision<K, V>> {
        if self.has_key(&key) {
            return Err(Collision { key, value });
        }
        self.shared.post(key, Ok(value));
        Ok(())
    }

    /// Blocks the calling green thread (or the root) until `key` has an
    /// outcome and returns it (the value is cloned). Waits forever for a
    /// key that nobody spawns or posts.
    ///
    /// # Errors
    ///
    /// The [`PropagateError`] of a task that failed.
    pub fn get(&self, key: &K) -> Result<V, PropagateError<K>> {
        loop {
            if let Some(o) = self.shared.outcome(key) {
                return o;
            }
            self.shared.wait_for_post();
        }
    }

    /// The outcome for `key` if it has one now; never blocks.
    pub fn try_get(&self, key: &K) -> Option<Result<V, PropagateError<K>>> {
        self.shared.outcome(key)
    }

    /// Waits for every key in `keys` and returns their values.
    ///
    /// # Errors
    ///
    /// The [`PropagateError`] of the first key (in `keys` order) whose task
    /// failed, once all have an outcome.
    pub fn wait(&self, keys: impl IntoIterator<Item = K>) -> Result<HashMap<K, V>, PropagateError<K>> {
        let keys: Vec<K> = keys.into_iter().collect();
        self.shared.gather(&keys)
    }

    /// An iterator over `(key, outcome)` for each key in `keys`, in the
    /// order the outcomes were posted: those posted already first, then
    /// blocking for each of the others as it comes.
    pub fn wait_each(&self, keys: impl IntoIterator<Item = K>) -> WaitEach<K, V> {
        WaitEach { shared: self.shared.clone(), pending: keys.into_iter().collect() }
    }

    /// Waits until no spawned task is running (including tasks spawned
    /// meanwhile) and returns every outcome posted.
    pub fn waitall(&self) -> HashMap<K, Result<V, PropagateError<K>>> {
        while !self.shared.running.borrow().is_empty() {
            self.shared.wait_for_post();
        }
        self.shared.values.borrow().iter().map(|(k, (_, o))| (k.clone(), o.clone())).collect()
    }

    /// Kills the task running for `key`, if any: it posts a
    /// [`PropagateError`] saying so. Returns whether there was one.
    pub fn kill(&self, key: &K) -> bool {
        // The handle stays in `running` until the task posts (from its
        // guard, as it unwinds), so the key stays taken meanwhile.
        let h = self.shared.running.borrow().get(key).cloned();
        match h {
            Some(h) => {
                h.kill();
                true
            }
            None => false,
        }
    }

    /// Tasks spawned that have not posted yet.
    pub fn running(&self) -> usize {
        self.shared.running.borrow().len()
    }

    /// Keys with an outcome (a value or an error).
    pub fn keys(&self) -> Vec<K> {
        self.shared.values.borrow().keys().cloned().collect()
    }

    /// Green threads (or the root) blocked waiting for some outcome
    /// (including spawned tasks waiting for their dependencies).
    pub fn waiting(&self) -> usize {
        self.shared.waiters.len()
    }

    fn has_key(&self, key: &K) -> bool {
        self.shared.values.borrow().contains_key(key) || self.shared.running.borrow().contains_key(key)
    }
}

impl<K, V> Default for DAGPool<K, V>
where
    K: Eq + Hash + Clone + 'static,
    V: Clone + 'static,
{
    fn default() -> DAGPool<K, V> {
        DAGPool::new()
    }
}

impl<K, V> Clone for DAGPool<K, V> {
    fn clone(&self) -> DAGPool<K, V> {
        DAGPool { shared: self.shared.clone() }
    }
}

impl<K, V> fmt::Debug for DAGPool<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DAGPool")
            .field("outcomes", &self.shared.values.borrow().len())
            .field("running", &self.shared.running.borrow().len())
            .field("waiting", &self.shared.waiters.len())
            .finish()
    }
}

/// The iterator of [`DAGPool::wait_each`].
pub struct WaitEach<K, V> {
    shared: Rc<Shared<K, V>>,
    pending: Vec<K>,
}

impl<K: Eq + Hash + Clone, V: Clone> Iterator for WaitEach<K, V> {
    type Item = (K, Result<V, PropagateError<K>>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_empty() {
            return None;
        }
        loop {
            let first = {
                let values = self.shared.values.borrow();
                self.pending
                    .iter()
                    .enumerate()
                    .filter_map(|(i, k)| values.get(k).map(|(n, _)| (*n, i)))
                    .min()
                    .map(|(_, i)| i)
            };
            if let Some(i) = first {
                let key = self.pending.swap_remove(i);
                let outcome = self.shared.outcome(&key)?;
                return Some((key, outcome));
            }
            self.shared.wait_for_post();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), Some(self.pending.len()))
    }
}

impl<K, V> fmt::Debug for WaitEach<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitEach").field("pending", &self.pending.len()).finish()
    }
}

/// Why a task failed.
#[derive(Clone, PartialEq, Eq)]
enum Cause<K> {
    Panicked(String),
    Killed,
    Dependency(Box<PropagateError<K>>),
}

/// The outcome of a task that failed (eventlet's `PropagateError`): it
/// panicked, was killed, or a task it depends on failed.
#[derive(Clone, PartialEq, Eq)]
pub struct PropagateError<K> {
    key: K,
    cause: Cause<K>,
}

impl<K> PropagateError<K> {
    /// The key of the task that failed.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The error of the dependency that made this task fail, if that is
    /// why it failed.
    pub fn dependency(&self) -> Option<&PropagateError<K>> {
        match &self.cause {
            Cause::Dependency(e) => Some(e),
            _ => None,
        }
    }

    /// The error at the end of the chain of dependencies: the task that
    /// itself panicked or was killed.
    pub fn root(&self) -> &PropagateError<K> {
        let mut e = self;
        while let Some(d) = e.dependency() {
            e = d;
        }
        e
    }

    /// The panic message, if this task itself panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.cause {
            Cause::Panicked(m) => Some(m),
            _ => None,
        }
    }

    /// Whether this task itself was killed.
    pub fn is_killed(&self) -> bool {
        matches!(self.cause, Cause::Killed)
    }
}

impl<K: fmt::Debug> fmt::Debug for PropagateError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PropagateError");
        d.field("key", &self.key);
        match &self.cause {
            Cause::Panicked(m) => d.field("panicked", m),
            Cause::Killed => d.field("killed", &true),
            Cause::Dependency(e) => d.field("dependency", e),
        };
        d.finish()
    }
}

impl<K: fmt::Debug> fmt::Display for PropagateError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {:?} failed: ", self.key)?;
        let mut cause = &self.cause;
        loop {
            match cause {
                Cause::Panicked(m) => return write!(f, "it panicked: {m}"),
                Cause::Killed => return f.write_str("it was killed"),
                Cause::Dependency(e) => {
                    write!(f, "its dependency {:?} failed: ", e.key)?;
                    cause = &e.cause;
                }
            }
        }
    }
}

impl<K: fmt::Debug + 'static> std::error::Error for PropagateError<K> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.dependency().map(|e| e as _)
    }
}

/// The error of [`DAGPool::spawn`] and [`DAGPool::post`]: the key has a
/// value or a running task already. Holds the key and the function or
/// value that was not used.
pub struct Collision<K, T> {
    /// The key.
    pub key: K,
    /// The function or value handed back.
    pub value: T,
}

impl<K: fmt::Debug, T> fmt::Debug for Collision<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collision").field("key", &self.key).finish_non_exhaustive()
    }
}

impl<K: fmt::Debug, T> fmt::Display for Collision<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?} has a value or a running task already", self.key)
    }
}

impl<K: fmt::Debug, T> std::error::Error for Collision<K, T> {}
