//! Parsing of single field values, exactly as the contract spells them.
//!
//! Each parser returns the stored representation (days, microseconds, cents) or the reason a
//! person can act on. They are hand-written rather than format-string driven because they run
//! once per field of tens of millions of rows, and because the contract is narrower than what
//! general parsers accept (no thousands separators, no exponents, no time-zone names).

use chrono::NaiveDate;

const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn digits(bytes: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

/// `YYYY-MM-DD` to days since 1970-01-01.
pub fn parse_date(s: &str) -> Result<i32, String> {
    let b = s.as_bytes();
    let bad = || format!("not a date: expected YYYY-MM-DD, found {s:?}");
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, m, d) = match (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10])) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => return Err(bad()),
    };
    let date = NaiveDate::from_ymd_opt(y as i32, m, d)
        .ok_or_else(|| format!("not a calendar date: {s:?}"))?;
    Ok(days_since_epoch(date))
}

/// Days since 1970-01-01: how Arrow's Date32 holds a date.
pub fn days_since_epoch(date: NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// The date of a Date32 value.
pub fn date_from_days(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE).expect("date in range")
}

/// `YYYY-MM-DDTHH:MM:SS[.f…][Z|±HH:MM]` to microseconds since the epoch, in UTC. A timestamp
/// without an offset is UTC.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let bad = || {
        format!(
            "not a timestamp: expected YYYY-MM-DDTHH:MM:SS with optional fraction and Z or ±HH:MM, found {s:?}"
        )
    };
    if b.len() < 19 || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let days = parse_date(&s[..10]).map_err(|_| bad())?;
    let (h, mi, sec) = match (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19])) {
        (Some(h), Some(mi), Some(sec)) => (h, mi, sec),
        _ => return Err(bad()),
    };
    if h > 23 || mi > 59 || sec > 59 {
        return Err(format!("not a time of day: {s:?}"));
    }
    let mut rest = &b[19..];
    let mut micros: i64 = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return Err(bad());
        }
        // Digits past microseconds are truncated: the warehouse keeps microseconds.
        for i in 0..6 {
            micros = micros * 10
                + frac
                    .get(i)
                    .filter(|_| i < n)
                    .map_or(0, |d| i64::from(d - b'0'));
        }
        rest = &frac[n..];
    }
    let offset_seconds: i64 = match rest {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), hh @ ..] if hh.len() == 5 && hh[2] == b':' => {
            let (oh, om) = match (digits(&hh[0..2]), digits(&hh[3..5])) {
                (Some(oh), Some(om)) if oh <= 23 && om <= 59 => (oh, om),
                _ => return Err(bad()),
            };
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' { off } else { -off }
        }
        _ => return Err(bad()),
    };
    let seconds = i64::from(days) * 86_400 + i64::from(h * 3600 + mi * 60 + sec) - offset_seconds;
    Ok(seconds * 1_000_000 + micros)
}

/// Money with up to two decimals to an exact count of cents.
pub fn parse_money(s: &str) -> Result<i128, String> {
    let b = s.as_bytes();
    let bad = |why: &str| format!("not an amount: {why}, found {s:?}");
    let (neg, body) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (int_part, frac_part) = match body.iter().position(|&c| c == b'.') {
        Some(p) => (&body[..p], Some(&body[p + 1..])),
        None => (body, None),
    };
    if int_part.is_empty() && frac_part.is_none_or(<[u8]>::is_empty) {
        return Err(bad("no digits"));
    }
    if !int_part.iter().all(u8::is_ascii_digit) {
        return Err(bad(
            "only digits and one '.' are allowed (no thousands separators)",
        ));
    }
    if int_part.len() > 16 {
        return Err(bad("too large"));
    }
    let mut cents: i128 = 0;
    for &d in int_part {
        cents = cents * 10 + i128::from(d - b'0');
    }
    cents *= 100;
    if let Some(frac) = frac_part {
        if !frac.iter().all(u8::is_ascii_digit) {
            return Err(bad("only digits and one '.' are allowed"));
        }
        if frac.len() > 2 {
            return Err(bad("more than 2 decimals"));
        }
        let mut f: i128 = 0;
        for i in 0..2 {
            f = f * 10 + frac.get(i).map_or(0, |d| i128::from(d - b'0'));
        }
        cents += f;
    }
    Ok(if neg { -cents } else { cents })
}

/// An integer as written, or why it is not one.
pub fn parse_integer(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .map_err(|_| format!("not an integer: {s:?}"))
}

/// A boolean: `true`/`false`, `1`/`0` or `yes`/`no`, in any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "not a boolean: expected true/false, 1/0 or yes/no, found {s:?}"
        )),
    }
}

/// Cents to the text a person reads and the CSV carries: always two decimals.
pub fn format_money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_the_epoch_and_reject_impossible_days() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2024-03-01"), Ok(19_783)); // 54 years incl. 13 leap days + 60 days
        assert_eq!(parse_date("1969-12-31"), Ok(-1));
        assert!(parse_date("2023-02-29").unwrap_err().contains("calendar"));
        assert!(parse_date("2024/03/01").is_err());
        assert!(parse_date("2024-3-1").is_err());
        assert_eq!(
            date_from_days(19_783),
            NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()
        );
    }

    #[test]
    fn timestamps_with_fractions_and_offsets_are_normalised_to_utc() {
        let base = 19_783i64 * 86_400 * 1_000_000; // 2024-03-01T00:00:00Z
        assert_eq!(parse_timestamp("2024-03-01T00:00:00"), Ok(base));
        assert_eq!(parse_timestamp("2024-03-01T00:00:00Z"), Ok(base));
        assert_eq!(parse_timestamp("2024-03-01T02:30:00+02:30"), Ok(base));
        assert_eq!(parse_timestamp("2024-02-29T22:00:00-02:00"), Ok(base));
        assert_eq!(parse_timestamp("2024-03-01T00:00:00.5"), Ok(base + 500_000));
        assert_eq!(
            parse_timestamp("2024-03-01T00:00:00.123456789Z"),
            Ok(base + 123_456)
        );
        assert!(parse_timestamp("2024-03-01 00:00:00").is_err());
        assert!(parse_timestamp("2024-03-01T24:00:00").is_err());
        assert!(parse_timestamp("2024-03-01T00:00:00+0200").is_err());
        assert!(parse_timestamp("2024-03-01T00:00:00.").is_err());
    }

    #[test]
    fn money_is_exact_cents_with_at_most_two_decimals() {
        assert_eq!(parse_money("0"), Ok(0));
        assert_eq!(parse_money("12.5"), Ok(1250));
        assert_eq!(parse_money("-0.07"), Ok(-7));
        assert_eq!(parse_money(".5"), Ok(50));
        assert_eq!(parse_money("1234567.89"), Ok(123_456_789));
        assert!(parse_money("1,234.00").unwrap_err().contains("thousands"));
        assert!(parse_money("1.234").unwrap_err().contains("2 decimals"));
        assert!(parse_money("1e3").is_err());
        assert!(parse_money("-").is_err());
        assert_eq!(format_money(-7), "-0.07");
        assert_eq!(format_money(123_456_789), "1234567.89");
    }

    #[test]
    fn booleans_accept_every_spelling_of_the_contract() {
        for t in ["true", "TRUE", "1", "yes", "Yes"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "False", "0", "no", "NO"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("y").is_err());
    }
}
