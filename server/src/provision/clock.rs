//! `GET /x.plgd.dev/time`: the server's clock, so that a device without one can check
//! certificate validity.

use time::OffsetDateTime;

use super::Provisioner;
use crate::proto::body::TimeResponse;

/// RFC 3339 in UTC with all nine fractional digits, e.g. `2024-05-01T12:00:00.123456789Z`.
fn rfc3339_nanos(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

impl Provisioner {
    /// The current time, UTC, RFC 3339 with nanoseconds.
    pub fn time(&self) -> TimeResponse {
        TimeResponse {
            time: rfc3339_nanos(OffsetDateTime::now_utc()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::test_support::provisioner;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn time_parses_back_as_rfc3339_close_to_now() {
        let before = OffsetDateTime::now_utc();
        let got = provisioner(Vec::new()).time().time;
        let after = OffsetDateTime::now_utc();
        let parsed = OffsetDateTime::parse(&got, &Rfc3339).expect("RFC 3339");
        assert!(before <= parsed && parsed <= after, "{got}");
        assert_eq!(parsed.offset(), time::UtcOffset::UTC);
        assert!(got.ends_with('Z'), "{got}");
        let fraction = got.split('.').nth(1).expect("fraction");
        assert_eq!(fraction.len(), 10, "nine digits and Z: {got}");
    }

    #[test]
    fn nanoseconds_are_zero_padded() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(5);
        assert_eq!(rfc3339_nanos(t), "1970-01-01T00:00:00.000000005Z");
        let offset = time::UtcOffset::from_hms(2, 0, 0).expect("offset");
        assert_eq!(
            rfc3339_nanos(OffsetDateTime::UNIX_EPOCH.to_offset(offset)),
            "1970-01-01T00:00:00.000000000Z"
        );
    }
}
