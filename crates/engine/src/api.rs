//! The JSON form of a query and its answer, as the web API and `prism query --format json`
//! exchange them. Versioned: a request names the version it was written for, and an answer
//! says which version it is, so that a dashboard or a script written today keeps working.
//!
//! A request uses the same text forms a user types on the command line and in URLs
//! (`"partner.tier=Gold|Platinum"`, `"2024-Q2"`, `"closed_revenue:desc"`), so there is one
//! syntax to learn and one parser.

use serde::{Deserialize, Serialize};

use crate::{EngineError, Filter, Order, Period, Query, QueryResult};
use prism_model::Format;

/// The version of the JSON API this build speaks.
pub const API_VERSION: u32 = 1;

fn current_version() -> u32 {
    API_VERSION
}

/// A query as JSON: `{"api_version": 1, "metrics": ["closed_revenue"], "by": ["partner.tier"],
/// "filters": ["partner.region=EMEA"], "period": "2024-Q2", "order": ["closed_revenue:desc"],
/// "limit": 10}`. Unknown fields are refused, so a misspelt one is an error and not ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The version of the API the request was written for (the current one when left out).
    #[serde(default = "current_version")]
    pub api_version: u32,
    /// Metrics and derived forms (`closed_revenue:change_pct`).
    pub metrics: Vec<String>,
    /// Dimensions (`partner.tier`, `time.quarter`).
    #[serde(default)]
    pub by: Vec<String>,
    /// Filters as typed (`partner.region=EMEA`).
    #[serde(default)]
    pub filters: Vec<String>,
    /// A period as typed (`2024-Q2`).
    #[serde(default)]
    pub period: Option<String>,
    /// Orders as typed (`closed_revenue:desc`).
    #[serde(default)]
    pub order: Vec<String>,
    /// At most this many rows.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl QueryRequest {
    /// Reads a request from JSON text; every problem is an `EngineError::Parse` naming the field.
    pub fn from_json(text: &str) -> Result<QueryRequest, EngineError> {
        serde_json::from_str(text).map_err(|e| EngineError::Parse(format!("query request: {e}")))
    }

    /// The query, with every text form parsed.
    pub fn to_query(&self) -> Result<Query, EngineError> {
        if self.api_version != API_VERSION {
            return Err(EngineError::Parse(format!(
                "query request: api_version {} is not supported; this server speaks version {API_VERSION}",
                self.api_version
            )));
        }
        Ok(Query {
            metrics: self.metrics.clone(),
            by: self.by.clone(),
            filters: self
                .filters
                .iter()
                .map(|f| Filter::parse(f))
                .collect::<Result<_, _>>()?,
            period: self.period.as_deref().map(Period::parse).transpose()?,
            order: self
                .order
                .iter()
                .map(|o| Order::parse(o))
                .collect::<Result<_, _>>()?,
            limit: self.limit,
        })
    }
}

/// How a column's values read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// A dimension's value, as text.
    Dimension,
    /// A decimal with two places, sent as a string so that no reader turns it into a float.
    Money,
    /// A count.
    Integer,
    /// Any other number.
    Number,
    /// A percentage: 25.0 is 25 %.
    Percent,
    /// A ratio: 0.25 is 25 %.
    Ratio,
}

/// A column of an answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Its name as asked (`closed_revenue`, `partner.tier`).
    pub name: String,
    /// How its values read.
    pub kind: ColumnKind,
}

/// An answer: `{"api_version": 1, "columns": [{"name": "partner.tier", "kind": "dimension"},
/// {"name": "closed_revenue", "kind": "money"}], "rows": [{"partner.tier": "Gold",
/// "closed_revenue": "1234.50"}]}`. Money is a string with exactly two decimals; counts and
/// ratios are numbers; a value that does not exist is null.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The version of the API this answer is written in.
    pub api_version: u32,
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// Each row by column name.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl QueryResponse {
    /// The JSON form of an answer.
    pub fn from_result(result: &QueryResult) -> QueryResponse {
        let columns: Vec<Column> = result
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                kind: match c.format {
                    None => ColumnKind::Dimension,
                    Some(Format::Money) => ColumnKind::Money,
                    Some(Format::Integer) => ColumnKind::Integer,
                    Some(Format::Number) => ColumnKind::Number,
                    Some(Format::Percent) => ColumnKind::Percent,
                    Some(Format::Ratio) => ColumnKind::Ratio,
                },
            })
            .collect();
        let rows = result
            .rows()
            .into_iter()
            .map(|row| {
                columns
                    .iter()
                    .zip(row.into_values())
                    .map(|(c, v)| {
                        let value = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
                        (c.name.clone(), value)
                    })
                    .collect()
            })
            .collect();
        QueryResponse {
            api_version: API_VERSION,
            columns,
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_the_text_forms_users_type() {
        let r = QueryRequest::from_json(
            r#"{"metrics": ["closed_revenue"], "by": ["partner.tier"], "filters": ["partner.region=EMEA|APAC"], "period": "2024-Q2", "order": ["closed_revenue:desc"], "limit": 5}"#,
        )
        .unwrap();
        assert_eq!(
            r.api_version, 1,
            "a request without a version is of the current one"
        );
        let q = r.to_query().unwrap();
        assert_eq!(
            q.filters[0],
            Filter::parse("partner.region=EMEA|APAC").unwrap()
        );
        assert_eq!(q.period, Some(Period::parse("2024-Q2").unwrap()));
        assert!(q.order[0].descending);
        assert_eq!(q.limit, Some(5));
    }

    #[test]
    fn a_misspelt_field_another_version_or_a_bad_period_is_refused_with_its_reason() {
        let e = QueryRequest::from_json(
            r#"{"metrics": ["closed_revenue"], "filter": ["partner.tier=Gold"]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `filter`"), "{e}");
        let e = QueryRequest::from_json(r#"{"api_version": 2, "metrics": ["closed_revenue"]}"#)
            .unwrap()
            .to_query()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "query request: api_version 2 is not supported; this server speaks version 1"
        );
        let e = QueryRequest::from_json(r#"{"metrics": ["closed_revenue"], "period": "2024-Q5"}"#)
            .unwrap()
            .to_query()
            .unwrap_err();
        assert!(e.to_string().starts_with("period \"2024-Q5\""), "{e}");
    }
}
