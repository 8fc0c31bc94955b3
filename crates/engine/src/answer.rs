//! Typed answers: each cell of a `QueryResult` as a `Value` of its kind — money as exact cents,
//! counts, rates, dates, text, and the direct channel as a value of its own — read by column
//! name. The analyses and the web read answers this way; text is made only at the edges: `exact`
//! (CSV, JSON, the CLI's plain output) and `readable` (tables meant for reading).

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use prism_model::Format;
use serde::{Serialize, Serializer};

use crate::{QueryResult, rescale_to_cents};

/// How a brand-owner user's answer labels the rows of direct sales in a partner column: they
/// have no partner, and are the brand owner's own channel.
pub const DIRECT_LABEL: &str = "(direct)";

/// Exact money, in cents. Shown and sent with exactly two decimals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i128);

impl Money {
    /// Reads money as Prism writes it (`-1234.50`, `7`, `0.5`); empty or malformed is none.
    pub fn parse(s: &str) -> Option<Money> {
        if s.is_empty() {
            return None;
        }
        let (neg, digits) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (a, b) = digits.split_once('.').unwrap_or((digits, "0"));
        if a.is_empty() || b.is_empty() || !b.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let cents = a.parse::<i128>().ok()? * 100 + format!("{b:0<2}")[..2].parse::<i128>().ok()?;
        Some(Money(if neg { -cents } else { cents }))
    }

    /// The amount in whole currency units, for ranks and charts only (never for sums).
    pub fn units(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:02}", self.0.abs() / 100, self.0.abs() % 100)
    }
}

impl Serialize for Money {
    /// A string with two decimals, so that no JSON reader turns money into a float.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// One cell of an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// No value: a sum over no rows, a ratio over nothing, a withheld benchmark.
    Missing,
    /// The direct channel, in a partner column of a brand-owner user's answer.
    Direct,
    /// Text: a dimension's value.
    Text(String),
    /// A day.
    Date(NaiveDate),
    /// A count.
    Count(i64),
    /// Money, exact to the cent.
    Money(Money),
    /// A rate, an average or a ratio.
    Number(f64),
    /// A percentage (`45.4` is 45.4 %).
    Percent(f64),
}

impl Value {
    /// The text of a dimension's member; none for the direct channel or a missing value.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The amount, when the value is money.
    pub fn money(&self) -> Option<Money> {
        match self {
            Value::Money(m) => Some(*m),
            _ => None,
        }
    }

    /// The count, when the value is a count.
    pub fn count(&self) -> Option<i64> {
        match self {
            Value::Count(n) => Some(*n),
            _ => None,
        }
    }

    /// Any figure as a number (money in currency units), for ranking and scoring.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Count(n) => Some(*n as f64),
            Value::Money(m) => Some(m.units()),
            Value::Number(v) | Value::Percent(v) => Some(*v),
            _ => None,
        }
    }

    /// Whether it is the direct channel.
    pub fn is_direct(&self) -> bool {
        matches!(self, Value::Direct)
    }

    /// Whether there is no value.
    pub fn is_missing(&self) -> bool {
        matches!(self, Value::Missing)
    }

    /// The text a CSV file or JSON gets: every digit kept (money with exactly two decimals),
    /// empty when missing. The same as `Display`.
    pub fn exact(&self) -> String {
        self.to_string()
    }

    /// The text of a table meant for reading: a percentage with one decimal, another rate or
    /// average with at most two; everything else exact.
    pub fn readable(&self) -> String {
        match self {
            Value::Percent(v) => format!("{v:.1}"),
            Value::Number(v) => {
                let text = format!("{v:.2}");
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Missing => Ok(()),
            Value::Direct => f.write_str(DIRECT_LABEL),
            Value::Text(s) => f.write_str(s),
            Value::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Value::Count(n) => write!(f, "{n}"),
            Value::Money(m) => write!(f, "{m}"),
            // The shortest text that reads back as the same float, as Arrow writes it.
            Value::Number(v) | Value::Percent(v) => f.write_str(ryu::Buffer::new().format(*v)),
        }
    }
}

impl Serialize for Value {
    /// As the JSON API sends a cell: null when missing, counts and rates as numbers, money,
    /// members and days as strings (no JSON reader turns money into a float).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Missing => s.serialize_none(),
            Value::Count(n) => s.serialize_i64(*n),
            Value::Number(v) | Value::Percent(v) if v.is_finite() => s.serialize_f64(*v),
            Value::Number(_) | Value::Percent(_) => s.serialize_none(),
            other => s.serialize_str(&other.exact()),
        }
    }
}

impl From<Option<Money>> for Value {
    fn from(v: Option<Money>) -> Value {
        v.map_or(Value::Missing, Value::Money)
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        v.map_or(Value::Missing, Value::Count)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

/// One row of an answer, read by column name.
#[derive(Clone, Debug)]
pub struct Row {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of a column (`partner.partner_id`, `closed_revenue`, `win_rate@previous`).
    ///
    /// # Panics
    /// When the answer has no such column: the caller asked the question, so it names its
    /// columns; a wrong name is a bug in the caller, not a condition of the data.
    pub fn get(&self, column: &str) -> &Value {
        match self.names.iter().position(|n| n == column) {
            Some(i) => &self.values[i],
            None => panic!(
                "the answer has no column `{column}` (its columns: {})",
                self.names.join(", ")
            ),
        }
    }

    /// A dimension's member as text; none for the direct channel or a missing value.
    pub fn text(&self, column: &str) -> Option<&str> {
        self.get(column).text()
    }

    /// A column's money, when it has some.
    pub fn money(&self, column: &str) -> Option<Money> {
        self.get(column).money()
    }

    /// A column's count, when it has one.
    pub fn count(&self, column: &str) -> Option<i64> {
        self.get(column).count()
    }

    /// Any figure as a number (see `Value::number`).
    pub fn number(&self, column: &str) -> Option<f64> {
        self.get(column).number()
    }

    /// The values in the answer's column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The row's values, in the answer's column order.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

impl QueryResult {
    /// Every row, typed.
    pub fn rows(&self) -> Vec<Row> {
        let names: Arc<[String]> = self.columns.iter().map(|c| c.name.clone()).collect();
        let mut out = Vec::new();
        for b in &self.batches {
            for row in 0..b.num_rows() {
                out.push(Row {
                    names: names.clone(),
                    values: self
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| value_of(b.column(i).as_ref(), row, c.format, &c.name))
                        .collect(),
                });
            }
        }
        out
    }

    /// The first row; a row of missing values when there is none (a total over no rows).
    pub fn first_row(&self) -> Row {
        self.rows().into_iter().next().unwrap_or_else(|| Row {
            names: self.columns.iter().map(|c| c.name.clone()).collect(),
            values: vec![Value::Missing; self.columns.len()],
        })
    }
}

/// A cell of an Arrow array as a `Value`: by the array's type first, then by the metric's
/// format (a decimal is money only for a money metric; a float is a percentage for a percent).
pub(crate) fn value_of(
    array: &dyn Array,
    row: usize,
    format: Option<Format>,
    column: &str,
) -> Value {
    use arrow::datatypes as t;
    if array.is_null(row) {
        return Value::Missing;
    }
    let figure = |v: f64| match format {
        Some(Format::Percent) => Value::Percent(v),
        _ => Value::Number(v),
    };
    match array.data_type() {
        DataType::Decimal128(_, scale) => {
            let v = array.as_primitive::<t::Decimal128Type>().value(row);
            if format == Some(Format::Money) {
                Value::Money(Money(rescale_to_cents(v, *scale)))
            } else {
                figure(v as f64 / 10f64.powi(i32::from(*scale)))
            }
        }
        DataType::Int8 => integer(
            array.as_primitive::<t::Int8Type>().value(row).into(),
            format,
        ),
        DataType::Int16 => integer(
            array.as_primitive::<t::Int16Type>().value(row).into(),
            format,
        ),
        DataType::Int32 => integer(
            array.as_primitive::<t::Int32Type>().value(row).into(),
            format,
        ),
        DataType::Int64 => integer(array.as_primitive::<t::Int64Type>().value(row), format),
        DataType::UInt8 => integer(
            array.as_primitive::<t::UInt8Type>().value(row).into(),
            format,
        ),
        DataType::UInt16 => integer(
            array.as_primitive::<t::UInt16Type>().value(row).into(),
            format,
        ),
        DataType::UInt32 => integer(
            array.as_primitive::<t::UInt32Type>().value(row).into(),
            format,
        ),
        DataType::UInt64 => match i64::try_from(array.as_primitive::<t::UInt64Type>().value(row)) {
            Ok(v) => integer(v, format),
            Err(_) => figure(array.as_primitive::<t::UInt64Type>().value(row) as f64),
        },
        DataType::Float32 => figure(array.as_primitive::<t::Float32Type>().value(row).into()),
        DataType::Float64 => figure(array.as_primitive::<t::Float64Type>().value(row)),
        DataType::Date32 => array
            .as_primitive::<t::Date32Type>()
            .value_as_date(row)
            .map_or(Value::Missing, Value::Date),
        _ => {
            let text = arrow::util::display::array_value_to_string(array, row).unwrap_or_default();
            // Only a partner column of a brand-owner user's answer holds direct sales.
            if format.is_none() && column.starts_with("partner.") && text == DIRECT_LABEL {
                Value::Direct
            } else {
                Value::Text(text)
            }
        }
    }
}

fn integer(v: i64, format: Option<Format>) -> Value {
    match format {
        Some(Format::Money) => Value::Money(Money(i128::from(v) * 100)),
        Some(Format::Percent) => Value::Percent(v as f64),
        Some(Format::Number | Format::Ratio) => Value::Number(v as f64),
        Some(Format::Integer) | None => Value::Count(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Float64Array, Int64Array, StringArray};

    #[test]
    fn money_reads_and_prints_exactly() {
        assert_eq!(Money::parse("-1234.5"), Some(Money(-123450)));
        assert_eq!(Money::parse("7"), Some(Money(700)));
        assert_eq!(Money(-5).to_string(), "-0.05");
        assert_eq!(Money::parse(""), None);
        assert_eq!(Money::parse("12."), None);
        assert_eq!(Money::parse("abc"), None);
    }

    #[test]
    fn cells_take_the_kind_of_their_column() {
        // 2499.5 at scale 6, as a ratio of money divides; rounded half away from zero to cents.
        let money = Decimal128Array::from(vec![Some(2_499_500_000i128), Some(-49_745_000), None])
            .with_precision_and_scale(38, 6)
            .unwrap();
        assert_eq!(
            value_of(&money, 0, Some(Format::Money), "closed_revenue"),
            Value::Money(Money(249950))
        );
        assert_eq!(
            value_of(&money, 1, Some(Format::Money), "closed_revenue"),
            Value::Money(Money(-4975))
        );
        assert_eq!(
            value_of(&money, 2, Some(Format::Money), "closed_revenue"),
            Value::Missing
        );
        // A decimal that is not money (an average of hours) is a number.
        assert_eq!(
            value_of(&money, 0, Some(Format::Number), "avg"),
            Value::Number(2499.5)
        );
        let counts = Int64Array::from(vec![3]);
        assert_eq!(
            value_of(&counts, 0, Some(Format::Integer), "n"),
            Value::Count(3)
        );
        let rates = Float64Array::from(vec![45.4]);
        assert_eq!(
            value_of(&rates, 0, Some(Format::Percent), "win_rate"),
            Value::Percent(45.4)
        );
        let partners = StringArray::from(vec!["P-1", DIRECT_LABEL]);
        assert_eq!(
            value_of(&partners, 0, None, "partner.partner_id"),
            Value::Text("P-1".into())
        );
        assert_eq!(
            value_of(&partners, 1, None, "partner.partner_id"),
            Value::Direct
        );
        // Outside a partner column the label is a customer's name like any other.
        assert_eq!(
            value_of(&partners, 1, None, "customer.customer_name"),
            Value::Text(DIRECT_LABEL.into())
        );
    }

    #[test]
    fn exact_text_keeps_every_digit_and_readable_text_rounds() {
        assert_eq!(Value::Percent(14.583333).exact(), "14.583333");
        assert_eq!(Value::Percent(50.0).exact(), "50.0");
        assert_eq!(Value::Percent(14.583333).readable(), "14.6");
        assert_eq!(Value::Number(3.456).readable(), "3.46");
        assert_eq!(Value::Number(0.5).readable(), "0.5");
        assert_eq!(Value::Number(3.0).readable(), "3");
        assert_eq!(Value::Number(-0.001).readable(), "-0");
        assert_eq!(Value::Money(Money(-4975)).readable(), "-49.75");
        assert_eq!(Value::Count(12).readable(), "12");
        assert_eq!(Value::Missing.readable(), "");
        assert_eq!(Value::Direct.exact(), "(direct)");
    }
}
