//! Dates for the `Date` header and the access log (UTC, no time zone data).

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

struct Civil {
    year: i64,
    month: usize,
    day: u32,
    hour: u64,
    min: u64,
    sec: u64,
    weekday: usize,
}

/// Howard Hinnant's `civil_from_days`.
fn civil(secs: u64) -> Civil {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
        weekday: ((days + 4).rem_euclid(7)) as usize,
    }
}

/// RFC 9110's IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(secs: u64) -> String {
    let c = civil(secs);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday],
        c.day,
        MONTHS[c.month - 1],
        c.year,
        c.hour,
        c.min,
        c.sec
    )
}

/// eventlet's (`BaseHTTPRequestHandler.log_date_time_string`) form:
/// `06/Nov/1994 08:49:37`, here in UTC.
pub(crate) fn log_date(secs: u64) -> String {
    let c = civil(secs);
    format!("{:02}/{}/{:04} {:02}:{:02}:{:02}", c.day, MONTHS[c.month - 1], c.year, c.hour, c.min, c.sec)
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The length of a `Date` header line: `Date: ` and an IMF-fixdate of
/// a four-digit year (29 bytes), and its line break.
pub(crate) const LINE: usize = 37;

/// The `Date` header line of the current second, and until when it holds.
#[derive(Clone, Copy)]
struct DateLine {
    until: Option<Instant>,
    line: [u8; LINE],
}

thread_local! {
    static CACHED: Cell<DateLine> = const { Cell::new(DateLine { until: None, line: [0; LINE] }) };
}

/// The `Date` header line (`Date: ...\r\n`) of the current second:
/// formatted once a second. Each call reads the monotonic clock (no
/// system call: the vDSO) to tell whether the second has turned, so the
/// line is right to the second however long a handler ran.
pub(crate) fn date_line() -> [u8; LINE] {
    current(Instant::now()).line
}

/// The line of the second `now` is in, and until when (`until` is read
/// from the wall clock after `now`, so it is never past the turn of the
/// second).
fn current(now: Instant) -> DateLine {
    CACHED.with(|c| {
        let cached = c.get();
        if cached.until.is_some_and(|until| now < until) {
            return cached;
        }
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let rest_of_second = Duration::from_secs(1) - Duration::from_nanos(u64::from(wall.subsec_nanos()));
        // (Four-digit years: the last second of 9999 at most.)
        let text = format!("Date: {}\r\n", http_date(wall.as_secs().min(LAST_SECOND)));
        let mut line = [b' '; LINE];
        let n = text.len().min(LINE);
        line[..n].copy_from_slice(&text.as_bytes()[..n]);
        let fresh = DateLine { until: now.checked_add(rest_of_second), line };
        c.set(fresh);
        fresh
    })
}

/// A copy of the `Date` line kept by a loop that writes many responses
/// (a batch of pipelined ones): checking it costs a read of the monotonic
/// clock and no copy, and it is as fresh as [`date_line`].
pub(crate) struct Dates(DateLine);

impl Dates {
    pub(crate) fn new() -> Dates {
        Dates(DateLine { until: None, line: [0; LINE] })
    }

    /// The `Date` line now.
    #[inline]
    pub(crate) fn line(&mut self) -> &[u8; LINE] {
        let now = Instant::now();
        if self.0.until.is_none_or(|until| now >= until) {
            self.0 = current(now);
        }
        &self.0.line
    }
}

/// 9999-12-31 23:59:59 UTC.
const LAST_SECOND: u64 = 253_402_300_799;

/// Appends the `Date` header line (see [`date_line`]) to `out`.
#[inline]
pub(crate) fn push_date_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&date_line());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(log_date(784_111_777), "06/Nov/1994 08:49:37");
        assert_eq!(http_date(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
        assert_eq!(http_date(LAST_SECOND), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn date_header_is_the_current_second() {
        let mut out = Vec::new();
        let before = now_secs();
        push_date_header(&mut out);
        let after = now_secs();
        let line = String::from_utf8(out).unwrap();
        assert!(
            line == format!("Date: {}\r\n", http_date(before)) || line == format!("Date: {}\r\n", http_date(after)),
            "{line:?}"
        );
        // A second later, the line has moved on.
        eventlet::sleep(Duration::from_millis(1100));
        let mut again = Vec::new();
        push_date_header(&mut again);
        assert_ne!(again, line.as_bytes());
        assert!(String::from_utf8(again).unwrap().starts_with("Date: "));
    }
}
