//! The Alerts page: the user's inbox (read when shown), the user's alerts with what each last
//! found — every user's for an administrator — and the log of their deliveries. Alerts are
//! evaluated and sent by the `prism-delivers` crate; this page only reads the store.

use askama::Template;
use serde::Serialize;

use crate::pages;
use crate::store::{Alert, Delivery, InboxItem, Role, Store, User};

/// What the page and `/api/alerts` show.
#[derive(Serialize)]
pub struct Overview {
    pub inbox: Vec<InboxItem>,
    pub alerts: Vec<Alert>,
    pub deliveries: Vec<Delivery>,
}

/// Messages, and log entries, shown at most.
const SHOWN: usize = 100;

/// The user's overview; an administrator's has every alert and delivery.
pub fn overview(store: &Store, user: &User) -> crate::store::Result<Overview> {
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
pub fn render(user: &User, csrf: &str, overview: &Overview) -> String {
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
