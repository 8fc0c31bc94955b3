//! Fuzzing the query language on stable Rust: periods, filters, orders, metric names with
//! derived forms, and the model's YAML, from arbitrary text and from text near the grammar.
//! Each is parsed or refused with a message; nothing panics, and a query that parses compiles
//! or is refused, under a partner's scope and as a benchmark. Failures proptest finds are kept
//! in `fuzz.proptest-regressions` and run first on every run.

use prism_engine::{Audience, Engine, Filter, Order, Period, Query};
use prism_model::Model;
use proptest::prelude::*;

/// Text near the grammar: its pieces (keywords, numbers, separators) in any order, which
/// reaches far more of a parser than random bytes do.
fn near(pieces: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(pieces).prop_map(String::from),
            "\\PC{0,3}"
        ],
        0..8,
    )
    .prop_map(|v| v.concat())
}

const PERIOD: &[&str] = &[
    "2024",
    "-Q",
    "Q4",
    "-",
    "..",
    "01",
    "13",
    "31",
    "00",
    "99999999",
    "2024-02-29",
    "2023-02-29",
    " ",
    "W",
    "-H",
    "H2",
    "0",
];
const FILTER: &[&str] = &[
    "partner.tier",
    "time.month",
    "customer.industry",
    "=",
    "!=",
    ":",
    "..",
    ",",
    "Gold",
    "'",
    "\"",
    " ",
    "2024-01",
    "~",
    "in",
    "not",
];
const ORDER: &[&str] = &[
    "closed_revenue",
    ":",
    "desc",
    "asc",
    ":rank",
    " ",
    ",",
    "win_rate",
];
const METRIC: &[&str] = &[
    "closed_revenue",
    "win_rate",
    "avg_deal_size",
    ":",
    "rank",
    "pct_of_total",
    "cumulative_pct",
    "change",
    "change_pct",
    "previous",
    "year_before",
    "_",
    "@",
    " ",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn periods_parse_or_are_refused_with_a_message(s in prop_oneof![near(PERIOD), any::<String>()]) {
        match Period::parse(&s) {
            Ok(p) => {
                prop_assert!(p.from <= p.to, "{s:?} gave {p:?}");
                // A parsed period's neighbours are computable too.
                let _ = (p.previous(), p.year_before(), p.days(), p.whole_months());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn filters_and_orders_parse_or_are_refused(f in prop_oneof![near(FILTER), any::<String>()], o in prop_oneof![near(ORDER), any::<String>()]) {
        if let Err(e) = Filter::parse(&f) {
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = Order::parse(&o) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Whatever is asked, compiling gives SQL or a refusal, for a partner and as a benchmark.
    #[test]
    fn any_query_compiles_or_is_refused(
        metrics in proptest::collection::vec(prop_oneof![near(METRIC), any::<String>()], 0..3),
        by in proptest::collection::vec(prop_oneof![near(FILTER), Just("time.quarter".to_string()), Just("partner.tier".to_string())], 0..3),
        filter in proptest::option::of(near(FILTER)),
        order in proptest::option::of(near(ORDER)),
        period in proptest::option::of(near(PERIOD)),
        limit in proptest::option::of(any::<usize>()),
    ) {
        let engine = Engine::new(Model::shipped());
        let query = Query {
            metrics,
            by,
            filters: filter.and_then(|f| Filter::parse(&f).ok()).into_iter().collect(),
            order: order.and_then(|o| Order::parse(&o).ok()).into_iter().collect(),
            period: period.and_then(|p| Period::parse(&p).ok()),
            limit,
        };
        for compiled in [engine.compile(&query, &Audience::partner("P-1").unwrap()), engine.compile_benchmark(&query)] {
            if let Err(e) = compiled {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// The model's YAML, mangled: a model or a located error, never a panic.
    #[test]
    fn any_model_text_loads_or_is_refused(cut in any::<prop::sample::Index>(), insert in "\\PC{0,12}", drop in 0usize..40) {
        let shipped = include_str!("../../../model/prm.yaml");
        let at = cut.index(shipped.len());
        let at = (0..=at).rev().find(|i| shipped.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + drop..=shipped.len()).find(|i| shipped.is_char_boundary(*i)).unwrap_or(shipped.len());
        let text = format!("{}{insert}{}", &shipped[..at], &shipped[end..]);
        if let Err(e) = Model::parse("prm.yaml", &text) {
            prop_assert!(e.to_string().contains("prm.yaml"), "{e}");
        }
    }
}
