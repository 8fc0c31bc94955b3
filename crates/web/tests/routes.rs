//! Every route for every role, without a socket: a visitor reaches only the sign-in page; a
//! partner user gets its own partner's data or a refusal, never another partner's or direct
//! sales; a channel manager only its partners'. Routes come from `prism_web::routes()`, the
//! list the router is built from, so a new route is in this test by construction.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use prism_web::{AppState, Role, Serves};
use tower::ServiceExt as _;

async fn app() -> (tempfile::TempDir, Arc<AppState>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let wh = prism_warehouse::Warehouse::open(&data).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    wh.load(&prism_warehouse::LoadOptions { export_dir: fixture, mode: prism_warehouse::LoadMode::Upsert, quarantine: false, rollups: prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds() }, &prism_warehouse::NoProgress)
        .await
        .unwrap();
    let state = Arc::new(AppState::open(&data, prism_model::Model::shipped(), false).unwrap());
    let pw = "correct horse";
    state.store.add_user("exec", Role::ChannelExecutive, &[], pw).unwrap();
    state.store.add_user("manager", Role::ChannelManager, &["P-1".into(), "P-3".into()], pw).unwrap();
    state.store.add_user("partner", Role::PartnerManager, &["P-2".into()], pw).unwrap();
    state.store.add_user("admin", Role::Admin, &[], pw).unwrap();
    (tmp, state)
}

struct Reply {
    status: StatusCode,
    location: String,
    cookies: Vec<String>,
    body: String,
}

async fn send(state: &Arc<AppState>, req: Request<Body>) -> Reply {
    let r = prism_web::router(state.clone()).oneshot(req).await.unwrap();
    let status = r.status();
    let location = r.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let cookies = r.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let body = String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).to_string();
    Reply { status, location, cookies, body }
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path).header(header::COOKIE, cookie).body(Body::empty()).unwrap()
}

fn cookie_value(reply: &Reply, name: &str) -> String {
    reply.cookies.iter().find_map(|c| c.strip_prefix(&format!("{name}="))).map(|c| c.split(';').next().unwrap().to_string()).unwrap_or_default()
}

/// Signs in through the form, as a browser does: the sign-in page's CSRF cookie and token, then the post.
async fn sign_in(state: &Arc<AppState>, name: &str, password: &str) -> Reply {
    let page = send(state, get("/", "")).await;
    let csrf = cookie_value(&page, "prism_csrf");
    assert!(page.body.contains(&format!("value=\"{csrf}\"")), "the form carries the cookie's token");
    let form = format!("name={name}&password={}&csrf={csrf}", password.replace(' ', "+"));
    send(
        state,
        Request::post("/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("prism_csrf={csrf}"))
            .body(Body::from(form))
            .unwrap(),
    )
    .await
}

async fn session_of(state: &Arc<AppState>, name: &str) -> String {
    let r = sign_in(state, name, "correct horse").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}: {}", r.body);
    format!("prism_session={}", cookie_value(&r, "prism_session"))
}

/// Every concrete GET path: `{id}` as each partner of the fixture.
fn paths() -> Vec<(String, Serves)> {
    let mut out = Vec::new();
    for (method, path, serves) in prism_web::routes() {
        if method != "GET" {
            continue;
        }
        if path.contains("{id}") {
            for id in ["P-1", "P-2", "P-3"] {
                out.push((path.replace("{id}", id), serves));
            }
        } else {
            out.push((path, serves));
        }
    }
    out
}

/// What of another partner a body must never hold: ids and names, and direct sales.
fn others(partners: &[&str]) -> Vec<&'static str> {
    let all = [("P-1", "Acme"), ("P-2", "Müller"), ("P-3", "東京データ")];
    let mut v: Vec<&'static str> = all.iter().filter(|(id, _)| !partners.contains(id)).flat_map(|(id, name)| [*id, *name]).collect();
    v.push("(direct)");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_for_every_role_shows_only_what_the_role_may_see() {
    let (_tmp, state) = app().await;
    let all = paths();
    assert!(all.len() >= 30, "{} routes", all.len());

    // A signed-out visitor: the sign-in page and the assets, nothing else.
    for (path, serves) in &all {
        let r = send(&state, get(path, "")).await;
        match serves {
            Serves::SignInPage | Serves::Script | Serves::Style => assert_eq!(r.status, StatusCode::OK, "{path}"),
            Serves::Favicon => assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}"),
            Serves::Html(_) => assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/"), "{path}"),
            _ => assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}"),
        }
        for secret in others(&[]) {
            assert!(!r.body.contains(secret), "{path} shows {secret} to a visitor");
        }
    }

    for (user, own) in [("partner", vec!["P-2"]), ("manager", vec!["P-1", "P-3"])] {
        let cookie = session_of(&state, user).await;
        let mut served = 0;
        for (path, serves) in &all {
            let r = send(&state, get(path, &cookie)).await;
            assert!(
                matches!(r.status, StatusCode::OK | StatusCode::NO_CONTENT | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::SEE_OTHER),
                "{user} {path}: {} {}",
                r.status,
                r.body
            );
            if r.status == StatusCode::OK && !matches!(serves, Serves::Script | Serves::Style | Serves::Favicon) {
                served += 1;
                for secret in others(&own) {
                    assert!(!r.body.contains(secret), "{user} {path} shows {secret}:\n{}", &r.body[..r.body.len().min(3000)]);
                }
            }
            // The partner pages of partners not theirs are refused, whatever the format.
            if path.contains("/partners/") && !own.iter().any(|p| path.ends_with(p)) {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{user} {path}");
            }
        }
        assert!(served >= 6, "{user} was served only {served} routes");
    }

    // A partner user's pages are its own; channel pages are refused.
    let partner = session_of(&state, "partner").await;
    let r = send(&state, get("/my/performance", &partner)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("My key figures"));
    assert_eq!(send(&state, get("/overview", &partner)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&state, get("/api/segmentation", &partner)).await.status, StatusCode::FORBIDDEN);
    // Its partner page holds its figures: P-2's credit of -49.75.
    let r = send(&state, get("/api/partners/P-2", &partner)).await;
    assert!(r.body.contains("-49.75"), "{}", r.body);

    // The executive sees the channel, direct sales included, and not the admin page.
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/api/overview", &exec)).await;
    assert_eq!(r.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let kpi = &json["panels"][0]["tiles"][0];
    assert_eq!((kpi["metric"].as_str(), kpi["value"].as_str()), (Some("closed_revenue"), Some("3649.75")));
    assert_eq!(send(&state, get("/admin", &exec)).await.status, StatusCode::FORBIDDEN);
    let admin = session_of(&state, "admin").await;
    assert_eq!(send(&state, get("/admin", &admin)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_exports_as_csv_with_the_prompts_and_the_export_is_audited() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/export/overview?table=top-partners", &exec)).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut lines = r.body.lines();
    assert_eq!(lines.next(), Some("partner.partner_id,partner.partner_name,partner.tier,partner.region,closed_revenue,closed_revenue:pct_of_total,win_rate,csat_avg"));
    // Largest first: P-1 2499.50, the direct sale 1200, P-2's credit.
    let firsts: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(firsts, ["P-1", "(direct)", "P-2"]);
    // A period prompt: only March 2024, P-2's credit.
    let r = send(&state, get("/export/overview?table=top-partners&period=2024-03", &exec)).await;
    assert_eq!(r.body.lines().count(), 2, "{}", r.body);
    assert!(r.body.contains("P-2,Müller & Söhne,Silver,EMEA,-49.75"), "{}", r.body);
    let log = state.store.audit_log(10).unwrap();
    assert!(log.iter().any(|(_, user, event, detail)| user == "exec" && event == "export" && detail.contains("top-partners")), "{log:?}");
    // A bad prompt is a clear refusal, not a wrong answer.
    let r = send(&state, get("/api/overview?period=2024-13", &exec)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("2024-13"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_without_a_valid_csrf_token_are_refused() {
    let (_tmp, state) = app().await;
    // Sign-in without the cookie's token.
    let r = send(
        &state,
        Request::post("/sign-in").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from("name=exec&password=correct+horse&csrf=forged")).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(cookie_value(&r, "prism_session").is_empty());
    // Sign-out without the session's token leaves the session alive.
    let exec = session_of(&state, "exec").await;
    let r = send(
        &state,
        Request::post("/sign-out").header(header::COOKIE, &exec).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from("csrf=forged")).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&state, get("/api/overview", &exec)).await.status, StatusCode::OK);
    // With it, the session ends.
    let page = send(&state, get("/overview", &exec)).await;
    let csrf = page.body.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = send(
        &state,
        Request::post("/sign-out").header(header::COOKIE, &exec).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from(format!("csrf={csrf}"))).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(send(&state, get("/api/overview", &exec)).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failed_sign_ins_lock_the_name_and_are_audited() {
    let (_tmp, state) = app().await;
    for _ in 0..prism_web::store::MAX_FAILURES {
        let r = sign_in(&state, "exec", "wrong password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("wrong name or password"));
    }
    // The right password is refused too while the name is locked.
    let r = sign_in(&state, "exec", "correct horse").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("too many failed sign-ins"), "{}", r.body);
    let log = state.store.audit_log(20).unwrap();
    assert_eq!(log.iter().filter(|e| e.2 == "sign-in failed").count(), prism_web::store::MAX_FAILURES as usize);
    assert!(log.iter().any(|e| e.2 == "sign-in refused"));
    // Another user signs in meanwhile.
    assert_eq!(sign_in(&state, "manager", "correct horse").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_cookies_are_http_only_same_site_and_secure_behind_tls() {
    let (_tmp, state) = app().await;
    let r = sign_in(&state, "exec", "correct horse").await;
    let c = r.cookies.iter().find(|c| c.starts_with("prism_session=")).unwrap();
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"), "{c}");
    let page = send(&state, Request::get("/").header("x-forwarded-proto", "https").body(Body::empty()).unwrap()).await;
    assert!(page.cookies.iter().all(|c| c.contains("; Secure")), "{:?}", page.cookies);
}

/// The top accounts are ranked by revenue first (a rollup answers it) and the distinct orders
/// and CSAT computed for those rows only: the table must be the one a single query gives.
#[tokio::test(flavor = "multi_thread")]
async fn top_accounts_are_the_answer_of_one_query_with_every_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    prism_generator::generate(&prism_generator::GenerateConfig { out: export.clone(), scale: 0.01, seed: 3 }).unwrap();
    let data = tmp.path().join("data");
    let wh = prism_warehouse::Warehouse::open(&data).unwrap();
    let engine = prism_engine::Engine::new(prism_model::Model::shipped());
    wh.load(&prism_warehouse::LoadOptions { export_dir: export, rollups: engine.rollup_builds(), ..Default::default() }, &prism_warehouse::NoProgress).await.unwrap();
    let state = Arc::new(AppState::open(&data, prism_model::Model::shipped(), false).unwrap());
    state.store.add_user("exec", Role::ChannelExecutive, &[], "correct horse").unwrap();
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/export/customers?table=top-accounts", &exec)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let shown: Vec<String> = r.body.lines().skip(1).map(String::from).collect();

    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let q = prism_engine::Query {
        metrics: ["closed_revenue", "order_count", "csat_avg"].map(String::from).to_vec(),
        by: ["customer.customer_id", "customer.customer_name", "customer.industry", "customer.size_band"].map(String::from).to_vec(),
        order: vec![prism_engine::Order::parse("closed_revenue:desc").unwrap()],
        limit: Some(20),
        ..Default::default()
    };
    let one = engine.without_rollups().run(&ctx, &q, &prism_engine::Scope::All).await.unwrap();
    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in one.formatted_rows() {
        csv.write_record(&row).unwrap();
    }
    let expected: Vec<String> = String::from_utf8(csv.into_inner().unwrap()).unwrap().lines().map(String::from).collect();
    assert_eq!(expected.len(), 20);
    assert_eq!(shown, expected);
}

/// Pages are kept per warehouse version, role, scope and prompts: the same request is answered
/// again from the kept page, another scope or a load gets its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_page_is_never_shown_for_another_scope_or_after_a_load() {
    let (tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let overview = |cookie: &str| get("/api/overview", cookie);
    let first = send(&state, overview(&exec)).await.body;
    assert!(first.contains("2499.50"), "{first}");
    assert_eq!(send(&state, overview(&exec)).await.body, first, "the same page again");
    // The channel manager's overview (P-1 and P-3) never comes from the executive's, which has
    // the direct sale and P-2's credit.
    assert!(first.contains("1200.00") && first.contains("-49.75"), "{first}");
    let manager = session_of(&state, "manager").await;
    let theirs = send(&state, overview(&manager)).await.body;
    assert!(theirs.contains("2499.50") && !theirs.contains("1200.00") && !theirs.contains("-49.75"), "{theirs}");

    // A load changes P-1's first line from 2400.00 to 100.00.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    let update = tmp.path().join("update");
    std::fs::create_dir_all(&update).unwrap();
    let orders = std::fs::read_to_string(fixture.join("orders.csv")).unwrap().replace(",2400.00,", ",100.00,");
    std::fs::write(update.join("orders.csv"), orders).unwrap();
    let wh = prism_warehouse::Warehouse::open(tmp.path().join("data")).unwrap();
    let engine = prism_engine::Engine::new(prism_model::Model::shipped());
    wh.load(&prism_warehouse::LoadOptions { export_dir: update, rollups: engine.rollup_builds(), ..Default::default() }, &prism_warehouse::NoProgress).await.unwrap();
    let after = send(&state, overview(&exec)).await.body;
    assert!(after.contains("199.50") && !after.contains("2499.50"), "{after}");
}
