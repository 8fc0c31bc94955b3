//! The Alerts page: the user's inbox (read when shown), the user's alerts with what each last
//! found — every user's for an administrator — and the log of their deliveries; and the form
//! under an Explore answer that sets up an alert or a scheduled report on that question.
//! Alerts are checked, kept, evaluated and sent by the `prism-delivers` crate, which the binary
//! gives the app as an `AlertMaker` (it builds on this crate, so this crate cannot call it).

use askama::Template;
use prism_engine::api::QueryRequest;
use serde::{Deserialize, Serialize};

use crate::store::{Alert, Delivery, InboxItem, Role, Store, User};
use crate::{AppState, pages};

/// What the page and `/api/alerts` show.
#[derive(Serialize)]
pub(crate) struct Overview {
    pub(crate) inbox: Vec<InboxItem>,
    pub(crate) alerts: Vec<Alert>,
    pub(crate) deliveries: Vec<Delivery>,
}

/// The form under an Explore answer: the question (Explore's query string), and either a
/// condition on one of its metrics or a scheduled report of the whole answer.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AlertForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
    /// The alert's name.
    #[serde(default)]
    pub name: String,
    /// The question, as the Explore URL's query.
    #[serde(default)]
    pub question: String,
    /// `condition` (news when a row of the answer meets it), `report` (the whole answer) or
    /// `dashboard` (every question of the dashboard `dashboard`).
    #[serde(default)]
    pub kind: String,
    /// The dashboard of a dashboard report.
    #[serde(default)]
    pub dashboard: Option<i64>,
    /// A condition's metric.
    #[serde(default)]
    pub metric: String,
    /// A condition's comparison: `>`, `>=`, `<` or `<=`.
    #[serde(default)]
    pub op: String,
    /// A condition's number.
    #[serde(default)]
    pub threshold: String,
    /// `load` (after each load) or a cron expression (`0 7 * * MON`).
    #[serde(default)]
    pub on: String,
    /// The IANA time zone a cron expression is read in.
    #[serde(default)]
    pub time_zone: String,
    /// `inbox` or `email` (the owner's own address).
    #[serde(default)]
    pub to: String,
}

/// What an alert asked for on a page watches. A question is in the engine's versioned form
/// (what a saved question keeps).
#[derive(Clone, Debug, PartialEq)]
pub enum PageWatch {
    /// News when a row of the question's answer meets `METRIC OP NUMBER`.
    Condition {
        /// The question whose answer's rows are checked.
        question: QueryRequest,
        /// `METRIC OP NUMBER`: when a row brings news.
        when: String,
    },
    /// The question's whole answer, each time it falls due.
    Report {
        /// The question sent.
        question: QueryRequest,
    },
    /// Every question of a dashboard the user may open, each time it falls due.
    Dashboard {
        /// The dashboard sent (its id).
        dashboard: i64,
    },
}

/// An alert asked for on a page, read from its form: what the delivers crate checks and keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct PageAlert {
    /// The alert's name.
    pub name: String,
    /// What it watches.
    pub watch: PageWatch,
    /// When: `load`, or a schedule (`daily 07:00`, a cron expression).
    pub on: String,
    /// The time zone a schedule is read in.
    pub time_zone: String,
    /// `inbox` or `email`: a page sends news only to its user (webhooks are set up by an
    /// administrator, with `prism alerts add`).
    pub to: String,
}

impl AlertForm {
    /// The alert the form asks for, or why the form is not one.
    pub fn read(&self) -> Result<PageAlert, String> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err("an alert needs a name".into());
        }
        let question = || {
            crate::explore::Question::from_query_string(Some(&self.question))
                .request()
                .map_err(|e| e.to_string())
        };
        let watch = match self.kind.as_str() {
            "report" => PageWatch::Report {
                question: question()?,
            },
            "condition" | "" => PageWatch::Condition {
                question: question()?,
                when: format!(
                    "{} {} {}",
                    self.metric.trim(),
                    self.op.trim(),
                    self.threshold.trim()
                ),
            },
            "dashboard" => PageWatch::Dashboard {
                dashboard: self
                    .dashboard
                    .ok_or("a dashboard report needs the dashboard's id")?,
            },
            other => return Err(format!("kind {other:?}: condition, report or dashboard")),
        };
        let to = match self.to.as_str() {
            "" | "inbox" => "inbox",
            "email" => "email",
            other => {
                return Err(format!(
                    "to {other:?}: your inbox or your e-mail address (an administrator sets up webhooks)"
                ));
            }
        };
        let or = |v: &str, default: &str| {
            let v = v.trim();
            if v.is_empty() {
                default.to_string()
            } else {
                v.to_string()
            }
        };
        Ok(PageAlert {
            name: name.to_string(),
            watch,
            on: or(&self.on, "load"),
            time_zone: or(&self.time_zone, "UTC"),
            to: to.into(),
        })
    }
}

/// What checks and keeps an alert asked for on a page: the delivers crate's, given to the app
/// by the binary. The new alert's id, or why it is refused (nothing kept).
pub trait AlertMaker: Send + Sync {
    /// Checks the alert in its owner's audience and keeps it.
    fn add(&self, st: &AppState, owner: &User, alert: &PageAlert) -> Result<i64, String>;
}

/// Messages, and log entries, shown at most.
const SHOWN: usize = 100;

/// The user's overview; an administrator's has every alert and delivery.
pub(crate) fn overview(store: &Store, user: &User) -> crate::store::Result<Overview> {
    let own = (user.role != Role::Admin).then_some(user.name.as_str());
    Ok(Overview {
        inbox: store.inbox(user.id, SHOWN)?,
        alerts: store.alerts(own)?,
        deliveries: store.deliveries(own, SHOWN)?,
    })
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage<'a> {
    user_name: String,
    role: String,
    csrf: String,
    nav: Vec<(String, String)>,
    admin: bool,
    o: &'a Overview,
}

fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

impl AlertsPage<'_> {
    fn at(&self, t: &i64) -> String {
        when(*t)
    }

    fn at_opt(&self, t: &Option<i64>) -> String {
        t.map(when).unwrap_or_default()
    }
}

/// Renders the page.
pub(crate) fn render(user: &User, csrf: &str, overview: &Overview) -> String {
    AlertsPage {
        user_name: user.name.clone(),
        role: user.role.name().into(),
        csrf: csrf.into(),
        nav: pages::nav(Some(user)),
        admin: user.role == Role::Admin,
        o: overview,
    }
    .render()
    .unwrap_or_else(|e| format!("template: {e}"))
}
