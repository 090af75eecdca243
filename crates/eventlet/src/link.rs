//! Callbacks linked to a green thread's end ([`JoinHandle::link`](crate::JoinHandle::link)).
//!
//! Where they wait: in the green thread's own green-local map, under a
//! key of their own, as one [`Links`] entry. Its body already takes that
//! map at its end, on its own stack, and drops each entry inside
//! `catch_unwind`; it takes the links entry first ([`take`]), and dropping
//! it runs the callbacks, oldest first, with the result the body has just
//! put in the slot. So a green thread nobody links to pays nothing for
//! the feature (no field to fill at spawn, no check at its end beyond the
//! look at its green-locals it makes anyway).
//!
//! Why the callbacks always have a result to see: a `JoinHandle` dropped
//! while callbacks are linked does not detach the green thread (which
//! would drop its value at once); the links remember it, and detach it
//! after the callbacks ran, so its body drops the result then.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use crate::hub::{Killed, Packet, Task, Typed};
use crate::local::Locals;
use crate::report;

/// The keys of a green thread's [`Links`], and of the flag its dropped
/// `JoinHandle` sets, in its green-local map: the addresses of these
/// statics, which no `green_local!` key can have.
static KEYS: [u8; 2] = [0; 2];

fn key() -> usize {
    &KEYS[0] as *const u8 as usize
}

fn dropped_key() -> usize {
    &KEYS[1] as *const u8 as usize
}

type Callback<T> = Box<dyn FnOnce(&std::thread::Result<T>)>;

/// The callbacks linked to one green thread; dropping it runs them.
struct Links<T: 'static> {
    /// The green thread: its result, and its detached flag.
    task: Typed<Packet<T>>,
    /// The key the next link gets (from 1; 0 is never linked).
    next_key: Cell<u64>,
    list: RefCell<VecDeque<(u64, Callback<T>)>>,
    /// Whether its `JoinHandle` was dropped: the green thread is detached
    /// once the callbacks ran. Also in the green-local map by itself, for
    /// `JoinHandle::drop`, which does not know `T` is `'static`.
    handle_dropped: Rc<Cell<bool>>,
}

impl<T: 'static> Drop for Links<T> {
    /// Runs the callbacks, oldest first, on the green thread that ends
    /// (the only place its links entry is dropped; see the module docs).
    fn drop(&mut self) {
        loop {
            // The borrow ends before the callback runs: it may link (into
            // a fresh entry, run after this one) or unlink.
            let next = self.list.borrow_mut().pop_front();
            let Some((_, callback)) = next else { break };
            let result = self.task.slot().borrow();
            let ran = match result.as_ref() {
                Some(r) => panic::catch_unwind(AssertUnwindSafe(|| callback(r))),
                // Not reached: the body keeps the result while links exist.
                None => Ok(()),
            };
            drop(result);
            if let Err(p) = ran {
                if !p.is::<Killed>() {
                    report::green_panic(&self.task, p.as_ref());
                }
                report::drop_payload(p);
            }
        }
        if self.handle_dropped.get() {
            self.task.detached.set(true);
        }
    }
}

/// The links entry of `task`, if any.
fn find<T: 'static>(task: &Typed<Packet<T>>) -> Option<Rc<Links<T>>> {
    let locals = task.locals.borrow();
    let entry = locals.as_ref()?.get(&key())?.clone();
    entry.downcast::<Links<T>>().ok()
}

/// Links `f` to the end of `task`, which has not ended; returns its key.
pub(crate) fn link<T: 'static>(task: &Typed<Packet<T>>, f: Callback<T>) -> u64 {
    let links = match find(task) {
        Some(l) => l,
        None => {
            let dropped = Rc::new(Cell::new(false));
            let l = Rc::new(Links {
                task: task.clone(),
                next_key: Cell::new(1),
                list: RefCell::new(VecDeque::new()),
                handle_dropped: dropped.clone(),
            });
            let entry: Rc<dyn Any> = l.clone();
            let mut locals = task.locals.borrow_mut();
            let locals = locals.get_or_insert_with(Default::default);
            locals.insert(key(), entry);
            locals.insert(dropped_key(), dropped);
            l
        }
    };
    let k = links.next_key.get();
    links.next_key.set(k + 1);
    links.list.borrow_mut().push_back((k, f));
    k
}

/// Removes the callback linked under `k`; returns whether it was there.
pub(crate) fn unlink<T: 'static>(task: &Typed<Packet<T>>, k: u64) -> bool {
    let Some(links) = find(task) else { return false };
    let removed = {
        let mut list = links.list.borrow_mut();
        list.iter().position(|(lk, _)| *lk == k).and_then(|i| list.remove(i))
    };
    // Dropped outside the borrow: its destructor may link again.
    removed.is_some()
}

/// Notes that the `JoinHandle` of `task` (not ended) is dropped. Returns
/// whether callbacks are linked: then the green thread is detached after
/// they ran, not now.
pub(crate) fn handle_dropped(task: &Task) -> bool {
    let locals = task.locals.borrow();
    let flag = locals.as_ref().and_then(|m| m.get(&dropped_key())).and_then(|e| e.downcast_ref::<Cell<bool>>());
    match flag {
        Some(flag) => {
            flag.set(true);
            true
        }
        None => false,
    }
}

/// Takes the links entry out of a green thread's green-locals, for its
/// body to drop (which runs the callbacks) before the others.
pub(crate) fn take(locals: &mut Locals) -> Option<Rc<dyn Any>> {
    locals.remove(&key())
}
