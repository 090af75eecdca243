//! Values whose drops are counted: a stress test tracks what its green
//! threads own and checks at the end that each was dropped exactly once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// Counts every value made and checks each is dropped exactly once.
#[derive(Default)]
pub struct Ledger {
    next: Cell<usize>,
    dropped: RefCell<Vec<bool>>,
    kinds: RefCell<Vec<&'static str>>,
}

impl Ledger {
    /// A new value of `kind`; a `sleepy` one blocks in its drop.
    pub fn track(self: &Rc<Self>, sleepy: bool, kind: &'static str) -> Tracked {
        let id = self.next.get();
        self.next.set(id + 1);
        self.dropped.borrow_mut().push(false);
        self.kinds.borrow_mut().push(kind);
        Tracked { id, ledger: self.clone(), sleepy }
    }

    /// Values made so far.
    pub fn made(&self) -> usize {
        self.next.get()
    }

    /// Values not dropped yet.
    pub fn live(&self) -> Vec<usize> {
        self.dropped.borrow().iter().enumerate().filter(|(_, d)| !**d).map(|(i, _)| i).collect()
    }

    /// Panics naming (some of) the values not dropped yet, if any.
    pub fn assert_all_dropped(&self) {
        let live = self.live();
        let kinds: Vec<_> = live.iter().take(20).map(|&i| (i, self.kinds.borrow()[i])).collect();
        assert!(live.is_empty(), "{} of {} values never dropped: {kinds:?}", live.len(), self.made());
    }
}

/// A value whose drop is recorded; a `sleepy` one blocks in its drop.
pub struct Tracked {
    pub id: usize,
    ledger: Rc<Ledger>,
    sleepy: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let twice = std::mem::replace(&mut self.ledger.dropped.borrow_mut()[self.id], true);
        assert!(!twice, "value {} dropped twice", self.id);
        if self.sleepy {
            // Blocks, unless its green thread unwinds (then it returns at once).
            eventlet::sleep(Duration::from_micros(200));
        }
    }
}
