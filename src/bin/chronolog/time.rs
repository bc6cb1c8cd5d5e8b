//! Times on the command line: RFC 3339 or integer nanoseconds since the Unix
//! epoch, both ways.
//!
//! Hand-written rather than a date crate: the tool needs exactly RFC 3339's
//! `date-time` (UTC `Z` or a `±hh:mm` offset, fractional seconds to the
//! nanosecond) over the range of a `u64` of nanoseconds (1970 to 2554), which
//! is a page of code and a table of tests.

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const SECONDS_PER_DAY: i128 = 86_400;

/// A time argument: integer nanoseconds since the Unix epoch, or RFC 3339.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map_err(|_| format!("{text} nanoseconds is past the largest time (u64::MAX)"));
    }
    parse_rfc3339(text).map_err(|detail| {
        format!("invalid time {text:?}: {detail} (expected RFC 3339 such as 2025-03-01T12:00:00Z, or integer nanoseconds since the Unix epoch)")
    })
}

/// Parses an RFC 3339 `date-time` into nanoseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let mut cursor = Cursor { bytes: text.as_bytes(), at: 0 };
    let year = cursor.digits(4, "year")?;
    cursor.expect(b'-')?;
    let month = cursor.digits(2, "month")?;
    cursor.expect(b'-')?;
    let day = cursor.digits(2, "day")?;
    match cursor.next() {
        // RFC 3339 allows a space (section 5.6, note) and lower case letters.
        Some(b'T' | b't' | b' ') => {}
        _ => return Err(format!("expected 'T' between date and time at byte {}", cursor.at.saturating_sub(1))),
    }
    let hour = cursor.digits(2, "hour")?;
    cursor.expect(b':')?;
    let minute = cursor.digits(2, "minute")?;
    cursor.expect(b':')?;
    let second = cursor.digits(2, "second")?;
    let mut nanos: i128 = 0;
    if cursor.peek() == Some(b'.') {
        cursor.at += 1;
        let start = cursor.at;
        while cursor.peek().is_some_and(|b| b.is_ascii_digit()) {
            cursor.at += 1;
        }
        let fraction = &text[start..cursor.at];
        if fraction.is_empty() {
            return Err("expected digits after the decimal point".into());
        }
        if fraction.len() > 9 {
            return Err("more than 9 fractional digits (the log keeps nanoseconds)".into());
        }
        let value: i128 = fraction.parse().map_err(|_| "invalid fraction".to_string())?;
        nanos = value * 10i128.pow(9 - fraction.len() as u32);
    }
    let offset_seconds: i128 = match cursor.next() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = cursor.digits(2, "offset hour")?;
            cursor.expect(b':')?;
            let minutes = cursor.digits(2, "offset minute")?;
            if hours > 23 || minutes > 59 {
                return Err("offset out of range".into());
            }
            let seconds = i128::from(hours * 3600 + minutes * 60);
            if sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        _ => return Err("expected a time zone: 'Z' or an offset such as +01:00".into()),
    };
    if cursor.at != cursor.bytes.len() {
        return Err(format!("unexpected characters after the time zone at byte {}", cursor.at));
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!("day {day} out of range for {year:04}-{month:02}"));
    }
    if hour > 23 || minute > 59 {
        return Err("hour or minute out of range".into());
    }
    if second == 60 {
        return Err("leap seconds (:60) cannot be represented in Unix time".into());
    }
    if second > 59 {
        return Err(format!("second {second} out of range"));
    }
    let days = days_from_civil(i128::from(year), i128::from(month), i128::from(day));
    let seconds = days * SECONDS_PER_DAY + i128::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    let total = seconds * NANOS_PER_SECOND + nanos;
    u64::try_from(total).map_err(|_| {
        if total < 0 {
            "before the Unix epoch (1970-01-01T00:00:00Z)".to_string()
        } else {
            "after the largest time a u64 of nanoseconds holds (2554-07-21T23:34:33.709551615Z)".to_string()
        }
    })
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 in UTC, with as many
/// fractional digits as needed in groups of three (none for a whole second).
pub fn format_rfc3339(timestamp_ns: u64) -> String {
    let total = i128::from(timestamp_ns);
    let seconds = total / NANOS_PER_SECOND;
    let nanos = total % NANOS_PER_SECOND;
    let days = seconds / SECONDS_PER_DAY;
    let in_day = seconds % SECONDS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if nanos != 0 {
        let mut fraction = format!("{nanos:09}");
        while fraction.len() > 3 && fraction.ends_with("000") {
            fraction.truncate(fraction.len() - 3);
        }
        text.push('.');
        text.push_str(&fraction);
    }
    text.push('Z');
    text
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, wanted: u8) -> Result<(), String> {
        match self.next() {
            Some(byte) if byte == wanted => Ok(()),
            _ => Err(format!("expected '{}' at byte {}", wanted as char, self.at.saturating_sub(1))),
        }
    }

    fn digits(&mut self, count: usize, what: &str) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + count)
            .filter(|digits| digits.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("expected {count} digits of the {what} at byte {}", self.at))?;
        self.at += count;
        Ok(digits.iter().fold(0, |value, digit| value * 10 + u32::from(digit - b'0')))
    }
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i128, month: i128, day: i128) -> i128 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_instants() {
        let cases: &[(&str, u64)] = &[
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:00.000000001Z", 1),
            ("1970-01-01T00:00:01.5Z", 1_500_000_000),
            ("2000-02-29T12:34:56Z", 951_827_696_000_000_000),
            ("2024-12-31T23:59:59.999999999Z", 1_735_689_599_999_999_999),
            ("2025-03-01T13:00:00+01:00", 1_740_830_400_000_000_000),
            ("2025-03-01t12:00:00z", 1_740_830_400_000_000_000),
            ("2025-03-01 07:30:00-04:30", 1_740_830_400_000_000_000),
            ("2025-03-01T12:00:00-00:00", 1_740_830_400_000_000_000),
            ("2554-07-21T23:34:33.709551615Z", u64::MAX),
        ];
        for &(text, expected) in cases {
            assert_eq!(parse_rfc3339(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_what_rfc_3339_does_not_allow() {
        for text in [
            "",
            "2025-03-01",
            "2025-03-01T12:00:00",
            "2025-3-01T12:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-03-01T24:00:00Z",
            "2025-03-01T12:60:00Z",
            "2025-03-01T12:00:60Z",
            "2025-03-01T12:00:00.Z",
            "2025-03-01T12:00:00.1234567890Z",
            "2025-03-01T12:00:00+0100",
            "2025-03-01T12:00:00+24:00",
            "2025-03-01T12:00:00Zjunk",
            "1969-12-31T23:59:59Z",
            "2554-07-21T23:34:33.709551616Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(parse_rfc3339(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn formats_and_round_trips() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_500_000_000), "1970-01-01T00:00:01.500Z");
        assert_eq!(format_rfc3339(1_000_001_000), "1970-01-01T00:00:01.000001Z");
        assert_eq!(format_rfc3339(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(format_rfc3339(951_827_696_000_000_000), "2000-02-29T12:34:56Z");
        assert_eq!(format_rfc3339(u64::MAX), "2554-07-21T23:34:33.709551615Z");
        let mut value = 7u64;
        for _ in 0..10_000 {
            // A spread of instants over the whole range, leap days included.
            value = value.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            assert_eq!(parse_rfc3339(&format_rfc3339(value)), Ok(value), "{value}");
        }
        for day in 0..200_000u64 {
            let ns = day * 86_400 * 1_000_000_000 + 43_200 * 1_000_000_000;
            assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Ok(ns), "day {day}");
        }
    }

    #[test]
    fn time_arguments_take_nanoseconds_or_rfc_3339() {
        assert_eq!(parse_time("42"), Ok(42));
        assert_eq!(parse_time(" 1970-01-01T00:00:01Z "), Ok(1_000_000_000));
        assert!(parse_time("18446744073709551616").is_err());
        assert!(parse_time("-1").is_err());
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
