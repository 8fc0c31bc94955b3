//! Figures as people read them: the one formatter for pages, tiles and chart axes. CSV and JSON
//! never go through it: they keep the exact values `QueryResult::formatted_rows` gives.
//!
//! The input is that exact text (money with two decimals, ratios unrounded, percentages already
//! scaled to 100); the output is grouped with thousands separators, money with its currency's
//! symbol, rates as `46.2 %`, durations with their unit, and compact on tiles (`$26.8 B`). A
//! browser re-formats the same values in its own language's separators (`web/src/app.js`).

use prism_model::Format;

/// What a missing figure reads as.
pub const MISSING: &str = "—";

/// The symbol written before an amount of a currency (`USD` → `$`); the code itself otherwise.
pub fn currency_symbol(code: &str) -> String {
    match code {
        "USD" => "$".into(),
        "EUR" => "€".into(),
        "GBP" => "£".into(),
        "JPY" | "CNY" => "¥".into(),
        "INR" => "₹".into(),
        other => format!("{other} "),
    }
}

/// A figure for a person: `value` is the exact text of one cell, `format` its column's kind
/// (none: a dimension's value, shown as it is), `unit` a metric's unit, `compact` for tiles
/// and axes.
pub fn figure(
    value: &str,
    format: Option<Format>,
    unit: Option<&str>,
    currency: &str,
    compact: bool,
) -> String {
    let Some(format) = format else {
        return value.to_string();
    };
    if value.trim().is_empty() {
        return MISSING.to_string();
    }
    let Ok(x) = value.parse::<f64>() else {
        return value.to_string();
    };
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    match format {
        Format::Money if compact && a >= 1000.0 => {
            format!("{sign}{}{}", currency_symbol(currency), short(a))
        }
        // The exact cents, grouped: never through a float.
        Format::Money => {
            let text = value.trim().trim_start_matches('-');
            let (whole, cents) = text.split_once('.').unwrap_or((text, "00"));
            format!(
                "{sign}{}{}.{cents:0<2}",
                currency_symbol(currency),
                grouped(whole)
            )
        }
        Format::Ratio => format!("{sign}{:.1} %", a * 100.0),
        Format::Percent => format!("{sign}{a:.1} %"),
        Format::Integer if compact && a >= 1_000_000.0 => format!("{sign}{}", short(a)),
        Format::Integer => format!("{sign}{}", grouped(&format!("{a:.0}"))),
        Format::Number => {
            let text = match unit {
                Some(_) => format!("{a:.1}"),
                None => format!("{a:.2}"),
            };
            let (whole, decimals) = text.split_once('.').unwrap_or((&text, ""));
            let number = format!("{sign}{}.{decimals}", grouped(whole));
            match unit {
                Some("hours") => format!("{number} h"),
                Some(u) => format!("{number} {u}"),
                None => number,
            }
        }
    }
}

/// `1234567` → `1,234,567`.
fn grouped(digits: &str) -> String {
    let n = digits.len();
    let mut out = String::with_capacity(n + n / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (n - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A large magnitude in three significant figures at most: `26.8 B`, `4.38 M`, `12.5 K`.
fn short(a: f64) -> String {
    let (v, suffix) = if a >= 1e12 {
        (a / 1e12, "T")
    } else if a >= 1e9 {
        (a / 1e9, "B")
    } else if a >= 1e6 {
        (a / 1e6, "M")
    } else {
        (a / 1e3, "K")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(v: &str, f: Format) -> String {
        figure(v, Some(f), None, "USD", false)
    }

    #[test]
    fn money_is_grouped_exactly_with_its_symbol_and_compact_on_tiles() {
        assert_eq!(full("26828666496.44", Format::Money), "$26,828,666,496.44");
        assert_eq!(full("-49.75", Format::Money), "-$49.75");
        assert_eq!(full("0.00", Format::Money), "$0.00");
        assert_eq!(full("999.5", Format::Money), "$999.50");
        let tile = |v: &str, c: &str| figure(v, Some(Format::Money), None, c, true);
        assert_eq!(tile("26828666496.44", "EUR"), "€26.8 B");
        assert_eq!(tile("4384198691.18", "USD"), "$4.38 B");
        assert_eq!(tile("-1250000.00", "GBP"), "-£1.25 M");
        assert_eq!(tile("512.30", "CHF"), "CHF 512.30");
    }

    #[test]
    fn rates_counts_and_durations_read_with_their_unit() {
        assert_eq!(full("0.4567", Format::Ratio), "45.7 %");
        assert_eq!(full("100", Format::Percent), "100.0 %");
        assert_eq!(full("1234567", Format::Integer), "1,234,567");
        assert_eq!(full("0", Format::Integer), "0");
        assert_eq!(full("4.1234", Format::Number), "4.12");
        assert_eq!(
            figure("12.345", Some(Format::Number), Some("hours"), "USD", false),
            "12.3 h"
        );
        assert_eq!(
            figure("45", Some(Format::Number), Some("days"), "USD", false),
            "45.0 days"
        );
    }

    #[test]
    fn missing_values_read_as_a_dash_and_dimensions_as_they_are() {
        assert_eq!(full("", Format::Money), MISSING);
        assert_eq!(figure("EMEA", None, None, "USD", true), "EMEA");
        assert_eq!(full("(withheld)", Format::Ratio), "(withheld)");
    }
}
