//! The clock the time-driven parts of the workflow read (follow-up due times, alert SLAs, KPI
//! days). The system clock in production; tests move it forward instead of sleeping. One clock is
//! shared by every service of an `App`, so a test that advances it advances them all.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

#[derive(Clone, Default, Debug)]
pub struct Clock {
    /// Milliseconds added to the system time.
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    /// RFC 3339 with milliseconds, like `domain::now()` (sorts lexically in SQLite).
    pub fn stamp(&self) -> String {
        stamp(self.now())
    }

    /// Move time forward (tests, and the `follow-up` CLI's `--at`).
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_copy() {
        let c = Clock::system();
        let copy = c.clone();
        let before = copy.now();
        c.advance(Duration::hours(48));
        let moved = copy.now() - before;
        assert!(moved >= Duration::hours(48) && moved < Duration::hours(48) + Duration::seconds(5));
        assert_eq!(parse(&stamp(before)).map(|t| t.timestamp_millis()), Some(before.timestamp_millis()));
    }
}
