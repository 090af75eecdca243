//! Deadlines: the one place a duration becomes an instant.
//!
//! `Instant::now() + Duration::MAX` overflows and panics; every wait of the
//! crate turns its duration into a deadline here instead, where a duration
//! too long to represent means "no deadline" (as `std::thread::sleep`
//! treats it: it sleeps on).

use std::time::{Duration, Instant};

/// The instant `timeout` from now; `None` (no deadline) if that is too far
/// off to represent.
#[inline]
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Whether `deadline` has passed (never, for no deadline).
#[inline]
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_too_long_mean_no_deadline() {
        assert_eq!(deadline_after(Duration::MAX), None);
        assert!(deadline_after(Duration::from_secs(1)).is_some());
        assert!(!expired(None));
        assert!(expired(deadline_after(Duration::ZERO)));
    }
}
