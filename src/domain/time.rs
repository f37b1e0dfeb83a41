//! Time as a parameter: the core asks a [`Clock`], never the wall clock directly, so tests can
//! move time with a [`ManualClock`]. [`Time`] is microseconds since the Unix epoch in UTC, the
//! precision both stores keep.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// An instant in UTC with microsecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(i64);

impl Time {
    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// Builds a time from protobuf `seconds`/`nanos`, saturating at the representable range.
    pub fn from_unix_parts(seconds: i64, nanos: i32) -> Self {
        Self(
            seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(nanos) / 1_000),
        )
    }

    /// `(seconds, nanos)` with nanos in `0..1e9`, as protobuf timestamps want them.
    pub fn unix_parts(self) -> (i64, i32) {
        let seconds = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        // `micros` is below 1e6, so the product fits in an i32.
        (seconds, (micros * 1_000) as i32)
    }

    /// Adds a duration, saturating instead of overflowing.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// RFC 3339 in UTC with a `Z` suffix and as many fractional digits as needed.
    pub fn to_rfc3339(self) -> String {
        let (seconds, nanos) = self.unix_parts();
        match time::OffsetDateTime::from_unix_timestamp(seconds) {
            Ok(t) => {
                let t = t.replace_nanosecond(nanos as u32).unwrap_or(t);
                format_rfc3339(t)
            }
            Err(_) => String::from("9999-12-31T23:59:59Z"),
        }
    }

    /// Parses RFC 3339 with any offset.
    pub fn parse_rfc3339(value: &str) -> Option<Self> {
        let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
            .ok()?;
        let micros = t.unix_timestamp_nanos() / 1_000;
        i64::try_from(micros).ok().map(Self)
    }
}

fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let date = t.date();
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        date.year(),
        u8::from(date.month()),
        date.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        // protojson writes 3, 6 or 9 fractional digits.
        if nanos.is_multiple_of(1_000_000) {
            out.push_str(&format!(".{:03}", nanos / 1_000_000));
        } else if nanos.is_multiple_of(1_000) {
            out.push_str(&format!(".{:06}", nanos / 1_000));
        } else {
            out.push_str(&format!(".{nanos:09}"));
        }
    }
    out.push('Z');
    out
}

/// Where the current time comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Time;
}

/// The wall clock. The only place that reads it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Time {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Time) -> Self {
        Self(Arc::new(AtomicI64::new(start.0)))
    }

    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Time {
        Time(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_uses_z_and_protojson_precision() {
        assert_eq!(
            Time::from_unix_micros(0).to_rfc3339(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            Time::from_unix_micros(1_741_101_213_203_000).to_rfc3339(),
            "2025-03-04T15:13:33.203Z"
        );
        assert_eq!(
            Time::from_unix_micros(1_500_001).to_rfc3339(),
            "1970-01-01T00:00:01.500001Z"
        );
    }

    #[test]
    fn unix_parts_round_trip_negative_times() {
        let t = Time::from_unix_micros(-1);
        assert_eq!(t.unix_parts(), (-1, 999_999_000));
        assert_eq!(Time::from_unix_parts(-1, 999_999_000), t);
    }

    #[test]
    fn parses_offsets() {
        let t = Time::parse_rfc3339("2025-03-04T16:13:33.203+01:00");
        assert_eq!(t, Some(Time::from_unix_micros(1_741_101_213_203_000)));
    }
}
