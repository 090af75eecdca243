//! Timing loops that stop on a time budget: batches that grow until the
//! budget is spent, so that reading the clock costs nothing measurable and
//! the loop never runs much past its budget.
//!
//! ```text
//! let mut m = Meter::new(Duration::from_secs(1));
//! while let Some(k) = m.next_batch() {
//!     for _ in 0..k { /* one operation */ }
//! }
//! let ns = m.ns_per_iter();
//! ```
//!
//! A [`Meter`] works the same in synchronous code and inside an `async`
//! block, which is why it hands out batch sizes instead of taking a closure.

use std::time::{Duration, Instant};

/// The most iterations one meter hands out, whatever the budget: a bound
/// for operations so cheap (or a clock so coarse) that the budget would
/// take too long to spend.
pub(crate) const MAX_ITERS: u64 = 1 << 32;

/// Hands out batch sizes until its time budget is spent, then says how long
/// one iteration took.
#[derive(Debug)]
pub(crate) struct Meter {
    budget: Duration,
    start: Option<Instant>,
    /// Iterations of the batches that have finished.
    done: u64,
    /// The size of the batch handed out last (running now).
    batch: u64,
    /// Time from the first `next_batch` to the last.
    elapsed: Duration,
}

impl Meter {
    /// A meter that runs for about `budget`.
    pub(crate) fn new(budget: Duration) -> Meter {
        Meter { budget, start: None, done: 0, batch: 0, elapsed: Duration::ZERO }
    }

    /// The size of the next batch to run, or `None` when the budget is
    /// spent. The clock starts at the first call.
    pub(crate) fn next_batch(&mut self) -> Option<u64> {
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        self.step(now - start)
    }

    /// [`next_batch`](Meter::next_batch) with the time since the first call
    /// given: the pure part, for tests.
    fn step(&mut self, elapsed: Duration) -> Option<u64> {
        self.done += self.batch;
        self.batch = 0;
        self.elapsed = elapsed;
        if elapsed >= self.budget || self.done >= MAX_ITERS {
            return None;
        }
        let next = if self.done == 0 {
            1
        } else {
            // Double the total, but aim the batch at what is left of the budget.
            let per_iter = (elapsed.as_nanos() / u128::from(self.done)).max(1);
            let fits = (self.budget - elapsed).as_nanos() / per_iter;
            let fits = u64::try_from(fits).unwrap_or(u64::MAX).max(1);
            (self.done + 1).min(fits)
        };
        self.batch = next.min(MAX_ITERS - self.done);
        Some(self.batch)
    }

    /// Iterations run so far (finished batches).
    #[cfg(test)]
    pub(crate) fn iters(&self) -> u64 {
        self.done
    }

    /// Nanoseconds per iteration over the finished batches (0 if none).
    pub(crate) fn ns_per_iter(&self) -> f64 {
        if self.done == 0 {
            0.0
        } else {
            self.elapsed.as_nanos() as f64 / self.done as f64
        }
    }
}

/// The two phases of a measurement: a warm-up of a tenth of the budget
/// (stack pools, allocator, caches), whose result is thrown away, then the
/// measured budget.
pub(crate) fn phases(budget: Duration) -> [Duration; 2] {
    [budget / 10, budget]
}

/// Runs `batch(k)` (k iterations of one operation) through the warm-up and
/// the measured phase, and returns nanoseconds per iteration of the latter.
pub(crate) fn measure(budget: Duration, mut batch: impl FnMut(u64)) -> f64 {
    let mut ns = 0.0;
    for phase in phases(budget) {
        let mut m = Meter::new(phase);
        while let Some(k) = m.next_batch() {
            batch(k);
        }
        ns = m.ns_per_iter();
    }
    ns
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn batches_grow_then_stop_at_the_budget() {
        let mut m = Meter::new(100 * MS);
        // Every iteration takes 1 us on this fake clock.
        let mut now = Duration::ZERO;
        let mut sizes = Vec::new();
        while let Some(k) = m.step(now) {
            sizes.push(k);
            now += Duration::from_micros(k);
            assert!(sizes.len() < 100, "the meter never stopped: {sizes:?}");
        }
        assert_eq!(&sizes[..4], &[1, 2, 4, 8]);
        // The last batch is aimed at the end of the budget, not past it.
        assert_eq!(m.iters(), 100_000);
        assert!((m.ns_per_iter() - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn a_spent_budget_hands_out_nothing_more() {
        let mut m = Meter::new(MS);
        assert_eq!(m.step(Duration::ZERO), Some(1));
        assert_eq!(m.step(2 * MS), None);
        assert_eq!(m.iters(), 1);
        assert_eq!(m.step(3 * MS), None);
        assert_eq!(m.iters(), 1, "a finished meter counts no phantom batch");
    }

    #[test]
    fn a_frozen_clock_still_ends() {
        // A clock that never moves must not make the loop endless.
        let mut m = Meter::new(MS);
        let mut total = 0u64;
        let mut calls = 0;
        while let Some(k) = m.step(Duration::ZERO) {
            total += k;
            calls += 1;
            assert!(calls < 10_000);
        }
        assert_eq!(total, MAX_ITERS);
    }

    #[test]
    fn nothing_run_is_zero_not_nan() {
        assert_eq!(Meter::new(MS).ns_per_iter(), 0.0);
    }

    #[test]
    fn measure_runs_warm_up_then_budget() {
        let mut n = 0u64;
        let ns = measure(5 * MS, |k| n += k);
        assert!(n > 0 && ns >= 0.0);
    }
}
