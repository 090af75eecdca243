//! A one-shot value that any number of green threads can wait for
//! (eventlet's `event` module).

use std::cell::RefCell;
use std::fmt;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::time::{deadline_after, expired};
use crate::waitlist::{Wait, WaitList};

/// A value sent once and received by every green thread that waits for it
/// (eventlet's `Event`).
///
/// Cloning an `Event` gives another handle to the same event. Waiters are
/// woken in the order they began to wait (eventlet wakes them in no
/// defined order). There is no `send_exception`: send a `Result` instead.
/// [`reset`](Self::reset) makes a sent event unsent, so it can be sent
/// again (eventlet keeps `reset` undocumented and advises a new event
/// instead; so do we).
///
/// # Examples
///
/// ```
/// use eventlet::Event;
///
/// let ev = Event::new();
/// let waiters: Vec<_> = (0..3)
///     .map(|i| {
///         let ev = ev.clone();
///         eventlet::spawn(move || ev.wait() + i)
///     })
///     .collect();
/// eventlet::yield_now(); // they are waiting now
/// ev.send(10).unwrap();
/// assert_eq!(ev.send(11).unwrap_err().into_inner(), 11, "an event is sent once");
/// let got: Vec<i32> = waiters.into_iter().map(|h| h.join().unwrap()).collect();
/// assert_eq!(got, [10, 11, 12]);
/// ```
pub struct Event<T> {
    inner: Rc<Inner<T>>,
}

struct Inner<T> {
    /// The value sent (shared with the waiters it was handed to, so a
    /// `reset` does not take it from a waiter that has not run yet).
    value: RefCell<Option<Rc<T>>>,
    /// Waiters; each is handed the value in its slot.
    waiters: WaitList<Rc<T>>,
}

impl<T> Event<T> {
    /// A new event, not sent yet.
    pub fn new() -> Event<T> {
        Event { inner: Rc::new(Inner { value: RefCell::new(None), waiters: WaitList::new() }) }
    }

    /// Sends the value and wakes every waiter, in the order they began to
    /// wait; each of them gets this value, even if the event is reset
    /// before it runs.
    ///
    /// # Errors
    ///
    /// [`SendError`] with `value` if the event was sent already (eventlet
    /// raises `AssertionError`); the first value stays.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.ready() {
            return Err(SendError(value));
        }
        let value = Rc::new(value);
        *self.inner.value.borrow_mut() = Some(value.clone());
        while let Some(w) = self.inner.waiters.pop_front() {
            w.grant_with(value.clone());
        }
        Ok(())
    }

    /// Whether the event has been sent (and not reset since).
    pub fn ready(&self) -> bool {
        self.inner.value.borrow().is_some()
    }

    /// Makes a sent event unsent again (eventlet's `reset`): [`ready`]
    /// turns false, waits block until the next [`send`](Self::send), which
    /// may now succeed. Waiters woken by the last send still get its
    /// value. Returns whether the event had been sent (eventlet raises
    /// `AssertionError` on resetting an unsent event; here it is `false`,
    /// and nothing changes).
    ///
    /// [`ready`]: Self::ready
    ///
    /// ```
    /// let ev = eventlet::Event::new();
    /// assert!(!ev.reset(), "not sent yet");
    /// ev.send(1).unwrap();
    /// assert!(ev.reset());
    /// assert!(!ev.ready());
    /// ev.send(2).unwrap();
    /// assert_eq!(ev.wait(), 2);
    /// ```
    pub fn reset(&self) -> bool {
        let old = self.inner.value.borrow_mut().take();
        old.is_some()
    }

    /// Green threads (or the root) waiting for the event.
    pub fn waiting(&self) -> usize {
        self.inner.waiters.len()
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Option<Rc<T>> {
        if let Some(v) = self.inner.value.borrow().as_ref() {
            return Some(v.clone());
        }
        if expired(deadline) {
            return None;
        }
        let wait = pin!(Wait::new(&self.inner.waiters, None, |_, _| {}));
        let wait = wait.enqueue();
        wait.park(deadline);
        wait.waiter().take_value()
    }
}

impl<T: Clone> Event<T> {
    /// The value, if the event has been sent; never blocks.
    pub fn get(&self) -> Option<T> {
        self.inner.value.borrow().as_deref().cloned()
    }

    /// Blocks the calling green thread (or the root) until the event is
    /// sent and returns (a clone of) its value; returns at once if it was
    /// sent already. For a value that is not `Clone`, send an `Rc`.
    pub fn wait(&self) -> T {
        match self.wait_until(None) {
            Some(v) => T::clone(&v),
            None => unreachable!("an untimed event wait returned without a value"),
        }
    }

    /// Like [`wait`](Self::wait), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`WaitTimeoutError`] if the event was not sent in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<T, WaitTimeoutError> {
        self.wait_until(deadline_after(timeout)).map(|v| T::clone(&v)).ok_or(WaitTimeoutError { _private: () })
    }
}

impl<T> Clone for Event<T> {
    fn clone(&self) -> Event<T> {
        Event { inner: self.inner.clone() }
    }
}

impl<T> Default for Event<T> {
    fn default() -> Event<T> {
        Event::new()
    }
}

impl<T> fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("ready", &self.ready()).field("waiting", &self.waiting()).finish()
    }
}

/// The error of [`Event::send`] on an event sent already; holds the value
/// that was not sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("event was already sent")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// The error of [`Event::wait_timeout`]: the event was not sent in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutError {
    _private: (),
}

impl fmt::Display for WaitTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for an event")
    }
}

impl std::error::Error for WaitTimeoutError {}
