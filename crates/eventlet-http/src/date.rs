//! Dates for the `Date` header and the access log (UTC, no time zone data).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

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

thread_local! {
    static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends the current `Date` header value to `out`; it is formatted at
/// most once a second.
pub(crate) fn push_http_date_now(out: &mut Vec<u8>) {
    let now = now_secs();
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            *c = (now, http_date(now));
        }
        out.extend_from_slice(c.1.as_bytes());
    })
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
    }
}
