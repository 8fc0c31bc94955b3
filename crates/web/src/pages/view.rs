//! Pages as HTML: the view models the templates read, and the rendering.

use super::*;

pub struct TileView {
    pub label: String,
    pub value: String,
    /// The figure in full, on hover.
    pub exact: String,
    /// The exact value and its kind, for the browser to write in its own language.
    pub raw: String,
    pub format: &'static str,
    pub currency: String,
    pub change: String,
    pub change_class: &'static str,
    /// The trend line: one SVG polyline per run of months with a value.
    pub spark: Vec<String>,
    /// The trend line's months and figures, read on hover.
    pub spark_title: String,
    pub definition: String,
    pub sql: String,
}

pub struct CellView {
    pub text: String,
    pub href: String,
    pub numeric: bool,
    /// The exact value and its kind (empty when the column is not a metric's), for the browser
    /// to write in its own language.
    pub raw: String,
    pub format: &'static str,
    pub currency: String,
    /// A percentile rank or score (0–100) drawn as a bar behind the figure; empty otherwise.
    pub bar: String,
    /// On hover: why a missing figure is missing, or a long name in full.
    pub title: String,
}

/// Series named after metrics take the metrics' labels (a legend is read, not parsed), and
/// their kind, unit and currency, so that axes and tooltips write figures as the tiles do.
pub(crate) fn labelled(model: &prism_model::Model, series: &mut [Series]) {
    for s in series {
        if let Some((format, unit)) = model.column_format(&s.name) {
            s.name = model.label(&s.name);
            s.format = format_name(format);
            s.unit = match unit.as_deref() {
                Some("hours") => "h".into(),
                Some(u) => u.to_string(),
                None => String::new(),
            };
            s.currency = model.currency.clone();
        }
    }
}

pub(super) fn format_name(f: prism_model::Format) -> &'static str {
    use prism_model::Format;
    match f {
        Format::Money => "money",
        Format::Integer => "integer",
        Format::Number => "number",
        Format::Percent => "percent",
        Format::Ratio => "ratio",
    }
}

/// Width and height of a tile's trend line, in the SVG's own units (the CSS scales it).
const SPARK_WIDTH: f64 = 100.0;
const SPARK_HEIGHT: f64 = 24.0;

/// A trend line as SVG polylines: months spread evenly across the width, the lowest figure at
/// the bottom and the highest at the top (a flat line in the middle when they are equal); a
/// month without a figure breaks the line rather than being drawn as zero.
pub(super) fn sparkline(trend: &[TrendPoint]) -> Vec<String> {
    let values: Vec<f64> = trend.iter().filter_map(|p| p.value).collect();
    let (Some(low), Some(high)) = (
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
    ) else {
        return Vec::new();
    };
    let step = SPARK_WIDTH / (trend.len().max(2) - 1) as f64;
    let y = |v: f64| {
        if high > low {
            // One unit of margin so that the line's stroke is not cut at the edges.
            1.0 + (high - v) / (high - low) * (SPARK_HEIGHT - 2.0)
        } else {
            SPARK_HEIGHT / 2.0
        }
    };
    // A month alone between gaps is drawn as a dot: a line of no length with round caps.
    let close = |run: Vec<(f64, f64)>| {
        let mut points: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        if let [(x, y)] = run[..] {
            points.push(format!("{:.1},{y:.1}", x + 0.1));
        }
        points.join(" ")
    };
    let mut lines = Vec::new();
    let mut run = Vec::new();
    for (i, p) in trend.iter().enumerate() {
        match p.value {
            Some(v) => run.push((i as f64 * step, y(v))),
            None if !run.is_empty() => lines.push(close(std::mem::take(&mut run))),
            None => {}
        }
    }
    if !run.is_empty() {
        lines.push(close(run));
    }
    lines
}

/// Each row's link to its partner's page; none for direct sales, which are no partner's.
pub(super) fn partner_links(r: &QueryResult) -> Vec<Option<String>> {
    r.rows()
        .iter()
        .map(|row| {
            row.text("partner.partner_id")
                .map(|id| format!("/partners/{id}"))
        })
        .collect()
}

/// A cell as people read it: a metric's value by its kind (money grouped with its symbol, rates
/// as `46.2 %`, a missing one as a dash); anything else as before.
pub(crate) fn cell_view(
    model: &prism_model::Model,
    column: &str,
    value: &str,
    href: String,
) -> CellView {
    match model.column_format(column) {
        Some((format, unit)) => CellView {
            text: prism_engine::display::figure(
                value,
                Some(format),
                unit.as_deref(),
                &model.currency,
                false,
            ),
            href,
            numeric: true,
            raw: value.to_string(),
            format: format_name(format),
            currency: model.currency.clone(),
            bar: String::new(),
            title: if value.trim().is_empty() {
                model.missing_reason(column).unwrap_or_default()
            } else {
                String::new()
            },
        },
        None => {
            let (text, numeric) = display(value);
            CellView {
                text,
                href,
                numeric,
                raw: String::new(),
                format: "",
                currency: String::new(),
                bar: String::new(),
                title: String::new(),
            }
        }
    }
}

pub struct PanelView {
    pub kind: &'static str,
    pub id: String,
    pub title: String,
    pub tiles: Vec<TileView>,
    pub chart_json: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<CellView>>,
    pub export_href: String,
    pub note: String,
    pub plan_fields: Vec<(String, String)>,
}

/// One scorecard attribute's weight, as its number input shows it.
pub struct WeightInput {
    /// The attribute's name in `Weights::parse` (`win_rate`); the input is `w_NAME`.
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
}

/// The scorecard's weights as inputs: the weights asked for, or the defaults when the asked
/// ones do not parse (the page then says why, from the analysis).
fn weight_inputs(prompts: &Prompts) -> (Vec<WeightInput>, String) {
    let weights = prompts
        .weights()
        .and_then(|w| prism_analyses::scorecard::Weights::parse(&w).ok())
        .unwrap_or_default();
    let named = weights.named();
    let total: f64 = named.iter().map(|(_, w)| w).sum();
    let inputs = named
        .into_iter()
        .map(|(name, value)| WeightInput {
            name,
            label: match name {
                "revenue" => "Revenue",
                "pipeline" => "Pipeline",
                "win_rate" => "Win rate",
                "csat" => "CSAT",
                "responsiveness" => "Responsiveness",
                "certified_people" => "Certified people",
                other => other,
            },
            value: value.to_string(),
        })
        .collect();
    (inputs, format!("{total:.2}"))
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "page.html")]
pub struct PageTemplate {
    pub user_name: String,
    pub role: String,
    pub nav: Vec<(String, String)>,
    pub csrf: String,
    pub title: String,
    pub headline: Vec<String>,
    pub notes: Vec<String>,
    pub panels: Vec<PanelView>,
    pub periods: Vec<Choice>,
    pub regions: Vec<Choice>,
    pub tiers: Vec<Choice>,
    pub types: Vec<Choice>,
    pub lines: Vec<Choice>,
    pub show_weights: bool,
    /// The scorecard's weights, one input per attribute, and their total.
    pub weight_inputs: Vec<WeightInput>,
    pub weights_total: String,
    pub chips: Vec<Chip>,
    pub show_products: bool,
    pub products: Vec<Choice>,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    pub csrf: String,
    pub message: String,
}

impl SignInPage {
    pub fn render(&self) -> String {
        Template::render(self).unwrap_or_else(|e| format!("template: {e}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub user_name: String,
    pub nav: Vec<(String, String)>,
    pub status: u16,
    pub message: String,
}

impl ErrorPage {
    pub fn render(&self) -> String {
        Template::render(self).unwrap_or_else(|e| format!("template: {e}"))
    }
}

/// A number for a person: at most two decimals for fractions; money and counts as they are.
pub(crate) fn display(v: &str) -> (String, bool) {
    match v.parse::<f64>() {
        Ok(f) if v.contains('.') && v.split('.').nth(1).is_some_and(|d| d.len() > 2) => {
            (format!("{f:.2}"), true)
        }
        Ok(_) => (v.to_string(), true),
        Err(_) => (v.to_string(), false),
    }
}

pub(super) fn query_string(prompts: &Prompts, table: Option<&str>) -> String {
    let mut parts = Vec::new();
    let weights = prompts.weights();
    for (k, v) in [
        ("period", &prompts.period),
        ("region", &prompts.region),
        ("tier", &prompts.tier),
        ("partner_type", &prompts.partner_type),
        ("product_line", &prompts.product_line),
        ("weights", &weights),
        ("product", &prompts.product),
        ("segment", &prompts.segment),
    ] {
        if let Some(v) = given(v) {
            parts.push(format!("{k}={}", url(v)));
        }
    }
    if let Some(t) = table {
        parts.push(format!("table={}", url(t)));
    }
    parts.join("&")
}

/// A prompt the page answers for, shown above its panels with a link that removes it.
pub struct Chip {
    pub label: String,
    /// The same page without this prompt.
    pub href: String,
}

/// The prompts given, each as a chip whose link is the same page without it. Removing the
/// product also removes the segment, whose target list is the product's.
pub(super) fn chips(path: &str, prompts: &Prompts) -> Vec<Chip> {
    let base = Prompts {
        weights: prompts.weights(),
        w_revenue: None,
        w_pipeline: None,
        w_win_rate: None,
        w_csat: None,
        w_responsiveness: None,
        w_certified_people: None,
        table: None,
        ..prompts.clone()
    };
    type Field = fn(&mut Prompts) -> &mut Option<String>;
    let fields: [(&str, Field); 8] = [
        ("Period", |p| &mut p.period),
        ("Region", |p| &mut p.region),
        ("Tier", |p| &mut p.tier),
        ("Partner type", |p| &mut p.partner_type),
        ("Product line", |p| &mut p.product_line),
        ("Weights", |p| &mut p.weights),
        ("Product", |p| &mut p.product),
        ("Segment", |p| &mut p.segment),
    ];
    let mut out = Vec::new();
    for (label, field) in fields {
        let mut without = base.clone();
        let Some(value) = given(field(&mut without)).map(str::to_string) else {
            continue;
        };
        *field(&mut without) = None;
        if label == "Product" {
            without.segment = None;
        }
        let query = query_string(&without, None);
        out.push(Chip {
            label: format!("{label}: {value}"),
            href: if query.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{query}")
            },
        });
    }
    out
}

/// The periods offered: all data, this year to date, the last eight quarters and three years.
pub(super) fn periods(selected: Option<&str>) -> Vec<Choice> {
    let today = chrono::Utc::now().date_naive();
    let mut v = vec![("".to_string(), "All loaded data".to_string())];
    v.push((
        format!("{}-01-01..{today}", today.year()),
        format!("{} year to date", today.year()),
    ));
    let (mut y, mut q) = (today.year(), (today.month() - 1) / 3 + 1);
    for _ in 0..8 {
        v.push((format!("{y}-Q{q}"), format!("{y} Q{q}")));
        if q == 1 {
            y -= 1;
            q = 4;
        } else {
            q -= 1;
        }
    }
    for y in (today.year() - 2..=today.year()).rev() {
        v.push((y.to_string(), y.to_string()));
    }
    let mut out: Vec<Choice> = v
        .into_iter()
        .map(|(value, label)| Choice {
            selected: Some(value.as_str()) == selected.or(Some("")),
            value,
            label,
        })
        .collect();
    // A custom range typed in the URL stays selected.
    if let Some(s) = selected
        && !out.iter().any(|c| c.value == s)
    {
        out.push(Choice {
            value: s.to_string(),
            label: s.to_string(),
            selected: true,
        });
    }
    out
}

pub(crate) fn choices(values: Vec<String>, selected: Option<&str>) -> Vec<Choice> {
    let mut out = vec![Choice {
        value: String::new(),
        label: "All".into(),
        selected: selected.is_none(),
    }];
    out.extend(values.into_iter().map(|v| Choice {
        selected: Some(v.as_str()) == selected,
        label: v.clone(),
        value: v,
    }));
    out
}

/// The distinct values of some attributes of a dimension among the members the user may see,
/// each list sorted: one read of the members for all of them, each column read from its Arrow
/// array (a customer dimension has hundreds of thousands of members).
pub(crate) async fn members_of(
    st: &AppState,
    user: &User,
    dimension: &str,
    attributes: &[&str],
) -> Vec<Vec<String>> {
    let none = || vec![Vec::new(); attributes.len()];
    let (Ok((_, session)), Ok(audience)) = (st.session().await, user.audience()) else {
        return none();
    };
    let Ok(r) = st
        .engine
        .members_unordered(&session, dimension, &audience)
        .await
    else {
        return none();
    };
    attributes
        .iter()
        .map(|a| {
            let Some(i) = r.column(a) else {
                return Vec::new();
            };
            let values: std::collections::BTreeSet<String> = r
                .batches
                .iter()
                .flat_map(|b| {
                    let column = b.column(i);
                    (0..b.num_rows()).map(move |row| prism_engine::format_value(column, row, None))
                })
                .collect();
            values.into_iter().collect()
        })
        .collect()
}

pub async fn render(
    st: &AppState,
    user: &User,
    csrf: &str,
    page: &Page,
    prompts: &Prompts,
) -> String {
    let page_id = PageId::ALL
        .iter()
        .copied()
        .find(|p| p.name() == page.page)
        .unwrap_or(PageId::Overview);
    let export_base = format!("/export{}", page.path);
    let model = &st.engine.model;
    let panels = page
        .panels
        .iter()
        .map(|p| panel_view(model, p, &export_base, prompts))
        .collect();
    let channel_page = !matches!(page_id, PageId::Admin | PageId::MyPotential);
    let product_choices = if page_id == PageId::MyPotential {
        product_choices(st, user, prompts).await
    } else {
        Vec::new()
    };
    let [regions, tiers, types] = if channel_page && !user.is_partner_user() {
        partner_choices(st, user, prompts).await
    } else {
        Default::default()
    };
    let show_weights = matches!(page_id, PageId::Scorecard | PageId::Underperformers);
    let (weight_inputs, weights_total) = if show_weights {
        weight_inputs(prompts)
    } else {
        (Vec::new(), String::new())
    };
    let t = PageTemplate {
        user_name: user.name.clone(),
        role: user.role.name().to_string(),
        nav: nav(Some(user)),
        csrf: csrf.to_string(),
        title: page.title.clone(),
        headline: page.headline.clone(),
        notes: page.notes.clone(),
        panels,
        periods: if channel_page {
            periods(given(&prompts.period))
        } else {
            Vec::new()
        },
        regions,
        tiers,
        types,
        lines: if channel_page {
            choices(
                members_of(st, user, "product", &["product.product_line"])
                    .await
                    .remove(0),
                given(&prompts.product_line),
            )
        } else {
            Vec::new()
        },
        show_weights,
        weight_inputs,
        weights_total,
        chips: chips(&page.path, prompts),
        show_products: page_id == PageId::MyPotential,
        products: product_choices,
    };
    Template::render(&t).unwrap_or_else(|e| format!("template: {e}"))
}

/// A value of a metric's column as people read it.
fn written(model: &prism_model::Model, metric: &str, value: &str, compact: bool) -> String {
    let (format, unit) = model.column_format(metric).unzip();
    prism_engine::display::figure(
        value,
        format,
        unit.flatten().as_deref(),
        &model.currency,
        compact,
    )
}

/// A panel as the template shows it: its tiles, chart, table cells and export link.
fn panel_view(
    model: &prism_model::Model,
    p: &Panel,
    export_base: &str,
    prompts: &Prompts,
) -> PanelView {
    PanelView {
        kind: p.kind,
        id: p.id.clone(),
        title: p.title.clone(),
        tiles: p.tiles.iter().map(|t| tile_view(model, t)).collect(),
        chart_json: p
            .chart
            .as_ref()
            .map(|c| {
                let mut c = c.clone();
                labelled(model, &mut c.series);
                serde_json::to_string(&c).unwrap_or_default()
            })
            .unwrap_or_default(),
        header: p.header.iter().map(|h| model.label(h)).collect(),
        rows: (0..p.rows.len())
            .map(|i| {
                (0..p.rows[i].len())
                    .map(|j| table_cell(model, p, i, j))
                    .collect()
            })
            .collect(),
        export_href: if p.kind == "chart" && p.chart.is_some() || p.kind == "table" {
            format!("{export_base}?{}", query_string(prompts, Some(&p.id)))
        } else {
            String::new()
        },
        note: p.note.clone().unwrap_or_default(),
        plan_fields: p.plan_fields.clone(),
    }
}

/// A headline tile: the figure compact, in full on hover (or why there is none), its change
/// against the previous period coloured by whether up is good, and its sparkline.
fn tile_view(model: &prism_model::Model, t: &Tile) -> TileView {
    let change = t.change_pct.map_or(String::new(), |c| {
        let arrow = if c > 0.0 {
            "▲"
        } else if c < 0.0 {
            "▼"
        } else {
            "="
        };
        format!("{arrow} {:.1} % vs previous period", c.abs())
    });
    let up_is_good = model
        .metrics
        .get(&t.metric)
        .is_none_or(|m| m.higher_is_better);
    let change_class = match t.change_pct {
        Some(c) if c != 0.0 && (c > 0.0) == up_is_good => "good",
        Some(c) if c != 0.0 => "bad",
        _ => "",
    };
    TileView {
        label: model.label(&t.metric),
        value: written(model, &t.metric, &t.value, true),
        exact: if t.value.is_empty() {
            model.missing_reason(&t.metric).unwrap_or_default()
        } else {
            written(model, &t.metric, &t.value, false)
        },
        raw: t.value.clone(),
        format: model
            .column_format(&t.metric)
            .map_or("", |f| format_name(f.0)),
        currency: model.currency.clone(),
        change,
        change_class,
        spark: sparkline(&t.trend),
        spark_title: t
            .trend
            .iter()
            .map(|p| {
                let value = p.value.map_or(String::new(), |v| v.to_string());
                format!("{}: {}", p.month, written(model, &t.metric, &value, true))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        definition: t.definition.clone(),
        sql: t.sql.clone().unwrap_or_default(),
    }
}

/// Cell `j` of row `i` of a panel's table: linked in the first column, read as the analysis
/// rounds it where it is no metric, with why a figure is missing on hover, and a bar for ranks.
fn table_cell(model: &prism_model::Model, p: &Panel, i: usize, j: usize) -> CellView {
    let c = &p.rows[i][j];
    let column = p.header.get(j).map_or("", String::as_str);
    let href = if j == 0 {
        p.links.get(i).cloned().flatten().unwrap_or_default()
    } else {
        String::new()
    };
    let mut cell = cell_view(model, column, c, href);
    if let Some(text) = p.readable.get(i).and_then(|r| r.get(j))
        && cell.raw.is_empty()
    {
        cell.text = text.clone();
    }
    if let Some(why) = p.reasons.get(i).and_then(|r| r.get(j))
        && !why.is_empty()
    {
        cell.title = why.clone();
        if cell.text.is_empty() {
            cell.text = prism_engine::display::MISSING.to_string();
        }
    } else if !cell.numeric {
        cell.title = cell.text.clone();
    }
    // The scorecard's ranks at a glance: a bar as long as the rank.
    if (column == "score" || column == "percentile" || column.ends_with("_percentile"))
        && let Ok(rank) = c.parse::<f64>()
    {
        cell.bar = format!("{:.0}", rank.clamp(0.0, 100.0));
    }
    cell
}

/// The product prompt of customer potential: the user's products, and nothing chosen (the
/// page then lists the poor sellers) as a choice of its own.
async fn product_choices(st: &AppState, user: &User, prompts: &Prompts) -> Vec<Choice> {
    let ids = members_pairs(st, user).await;
    std::iter::once(Choice {
        selected: given(&prompts.product).is_none(),
        label: "— my poor sellers —".into(),
        value: String::new(),
    })
    .chain(ids.into_iter().map(|(id, name)| Choice {
        selected: given(&prompts.product) == Some(id.as_str()),
        label: format!("{name} ({id})"),
        value: id,
    }))
    .collect()
}

/// The partner prompts (region, tier, type), from one read of the partners the user may see.
async fn partner_choices(st: &AppState, user: &User, prompts: &Prompts) -> [Vec<Choice>; 3] {
    let prompts_given = [&prompts.region, &prompts.tier, &prompts.partner_type];
    members_of(
        st,
        user,
        "partner",
        &["partner.region", "partner.tier", "partner.partner_type"],
    )
    .await
    .into_iter()
    .zip(prompts_given)
    .map(|(values, chosen)| choices(values, given(chosen)))
    .collect::<Vec<_>>()
    .try_into()
    .unwrap_or_default()
}

pub(super) async fn members_pairs(st: &AppState, user: &User) -> Vec<(String, String)> {
    let Ok((_, session)) = st.session().await else {
        return Vec::new();
    };
    let Ok(audience) = user.audience() else {
        return Vec::new();
    };
    let Ok(r) = st.engine.members(&session, "product", &audience).await else {
        return Vec::new();
    };
    r.rows()
        .iter()
        .map(|row| {
            (
                row.get("product.product_id").exact(),
                row.get("product.product_name").exact(),
            )
        })
        .collect()
}
