//! Which shipped pages each role sees (`/admin/pages`): an administrator hides a page from a
//! role — a brand owner without service contracts hides Service from its channel managers,
//! whose own dashboards take its place — and shows it again. Hiding only ever shows less: a
//! hidden page leaves the role's navigation and is refused to it as a page, as JSON and as
//! CSV; every rule of who sees which partner holds as before.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::pages::{self, PageId};
use crate::store::{Role, User};
use crate::{AppState, WebError, blocking, form_user, signed_in};

/// One page's row: for each role, whether it may be hidden from it and whether it is.
pub(crate) struct PageRow {
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    /// Per role, in `Role::ALL`'s order: none when the page is not the role's to see at all
    /// (or may not be hidden), else whether it is hidden.
    pub(crate) cells: Vec<Option<bool>>,
}

#[derive(Template)]
#[template(path = "admin_pages.html")]
struct VisibilityPage {
    user_name: String,
    role: String,
    csrf: String,
    nav: Vec<(String, String)>,
    roles: Vec<&'static str>,
    rows: Vec<PageRow>,
}

/// The user, if an administrator.
fn administrator(user: &User) -> Result<(), WebError> {
    if user.role != Role::Admin {
        return Err(WebError::Forbidden(
            "only an administrator decides which pages a role sees".into(),
        ));
    }
    Ok(())
}

/// `GET /admin/pages`: every shipped page against every role.
pub(crate) async fn show(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (user, csrf) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return e.page(None),
    };
    if let Err(e) = administrator(&user) {
        return e.page(Some(&user));
    }
    let hidden = blocking(&st, |st| {
        Role::ALL
            .iter()
            .map(|r| Ok((*r, st.store.hidden_pages(*r)?)))
            .collect::<Result<Vec<_>, WebError>>()
    })
    .await;
    let hidden = match hidden {
        Ok(h) => h,
        Err(e) => return e.page(Some(&user)),
    };
    let rows = PageId::ALL
        .iter()
        .filter(|p| Role::ALL.iter().any(|r| pages::hideable(**p, *r)))
        .map(|p| PageRow {
            name: p.name(),
            title: p.title(),
            cells: hidden
                .iter()
                .map(|(role, names)| {
                    pages::hideable(*p, *role).then(|| names.iter().any(|n| n == p.name()))
                })
                .collect(),
        })
        .collect();
    Html(
        VisibilityPage {
            user_name: user.name.clone(),
            role: user.role.name().into(),
            csrf,
            nav: pages::nav(Some(&user)),
            roles: Role::ALL.iter().map(|r| r.name()).collect(),
            rows,
        }
        .render()
        .unwrap_or_else(|e| format!("template: {e}")),
    )
    .into_response()
}

/// The form of one cell: hide a page from a role, or show it again.
#[derive(Deserialize)]
pub(crate) struct HideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    page: String,
    /// `hide` or `show`.
    #[serde(default)]
    action: String,
}

/// `POST /admin/pages`: hides or shows one page for one role; audited.
pub(crate) async fn change(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<HideForm>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let done = async {
        administrator(&user)?;
        let role = Role::parse(&form.role).map_err(WebError::from)?;
        let page = PageId::ALL
            .into_iter()
            .find(|p| p.name() == form.page)
            .ok_or_else(|| WebError::BadRequest(format!("no page {:?}", form.page)))?;
        if !pages::hideable(page, role) {
            return Err(WebError::BadRequest(format!(
                "the {} page cannot be hidden from the {} role",
                page.title(),
                role.name()
            )));
        }
        let hidden = match form.action.as_str() {
            "hide" => true,
            "show" => false,
            other => {
                return Err(WebError::BadRequest(format!(
                    "action {other:?}: hide or show"
                )));
            }
        };
        let who = user.name.clone();
        blocking(&st, move |st| {
            st.store.set_page_hidden(role, page.name(), hidden)?;
            st.store.audit(
                &who,
                if hidden { "hide-page" } else { "show-page" },
                &format!("{} for {}", page.name(), role.name()),
            )?;
            Ok(())
        })
        .await
    };
    match done.await {
        Ok(()) => Redirect::to("/admin/pages").into_response(),
        Err(e) => e.page(Some(&user)),
    }
}
