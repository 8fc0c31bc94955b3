//! Administration: the warehouse's versions, the users and the audit log.

use super::*;

/// Fills the page's panels. They are read from files and SQLite, which block: on a worker of
/// its own (`block_in_place`), so that the async workers keep serving the other requests.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    let read = || panels(cx.st);
    let panels = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(read),
        _ => read(),
    }?;
    out.panels.extend(panels);
    Ok(())
}

/// The warehouse's versions, the users and the audit log.
fn panels(st: &AppState) -> Result<Vec<Panel>, WebError> {
    let mut panels = Vec::new();
    let wh = prism_warehouse::Warehouse::open(&st.warehouse)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let versions = wh
        .versions()
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let mut p = Panel::new("table", "loads", "Warehouse versions (loads)");
    p.header = [
        "version",
        "loaded_at",
        "mode",
        "source",
        "rows_added",
        "rows_rejected",
    ]
    .map(String::from)
    .to_vec();
    p.rows = versions
        .versions
        .iter()
        .rev()
        .map(|v| {
            let added: u64 = v.changes.values().map(|c| c.added).sum();
            let rejected: u64 = v.changes.values().map(|c| c.rejected).sum();
            vec![
                v.version.to_string(),
                v.loaded_at.to_string(),
                v.mode.to_string(),
                v.source.clone(),
                added.to_string(),
                rejected.to_string(),
            ]
        })
        .collect();
    panels.push(p);
    let mut u = Panel::new("table", "users", "Users (manage with `prism users`)");
    u.header = ["name", "role", "partners"].map(String::from).to_vec();
    u.rows = st
        .store
        .users()?
        .into_iter()
        .map(|x| vec![x.name, x.role.name().to_string(), x.partners.join(", ")])
        .collect();
    panels.push(u);
    let mut a = Panel::new(
        "table",
        "audit",
        "Audit log: sign-ins and exports, newest first",
    );
    a.header = ["at", "user", "event", "detail"].map(String::from).to_vec();
    a.rows = st
        .store
        .audit_log(200)?
        .into_iter()
        .map(|(at, user, event, detail)| {
            vec![
                chrono::DateTime::from_timestamp(at, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                user,
                event,
                detail,
            ]
        })
        .collect();
    panels.push(a);
    Ok(panels)
}
