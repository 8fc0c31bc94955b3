//! Every route for every role, without a socket: a visitor reaches only the sign-in page; a
//! partner user gets its own partner's data or a refusal, never another partner's or direct
//! sales; a channel manager only its partners'. Routes come from `prism_web::routes()`, the
//! list the router is built from, so a new route is in this test by construction.

#[path = "../../engine/tests/common/target.rs"]
mod target;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use prism_web::{AppState, Role, Serves};
use tower::ServiceExt as _;

async fn app() -> (tempfile::TempDir, Arc<AppState>) {
    target::join_cluster();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let wh = prism_warehouse::Warehouse::open(&data).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    wh.load(
        &prism_warehouse::LoadOptions {
            export_dir: fixture,
            mode: prism_warehouse::LoadMode::Upsert,
            quarantine: false,
            rollups: prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
        },
        &prism_warehouse::NoProgress,
    )
    .await
    .unwrap();
    let state = Arc::new(AppState::open(&data, prism_model::Model::shipped(), false).unwrap());
    let pw = "correct horse";
    state
        .store
        .add_user("exec", Role::ChannelExecutive, &[], pw)
        .unwrap();
    state
        .store
        .add_user(
            "manager",
            Role::ChannelManager,
            &["P-1".into(), "P-3".into()],
            pw,
        )
        .unwrap();
    state
        .store
        .add_user("partner", Role::PartnerManager, &["P-2".into()], pw)
        .unwrap();
    state.store.add_user("admin", Role::Admin, &[], pw).unwrap();
    // The executive's alert and its news name every partner and direct sales: no other
    // user's Alerts page may show them.
    let alert = state
        .store
        .add_alert(&prism_web::store::NewAlert {
            owner: "exec",
            name: "P-1 Acme P-3 東京データ (direct)",
            definition: "{}",
            schedule: "load",
            time_zone: "UTC",
            channel: "inbox",
            next_due_at: None,
        })
        .unwrap();
    let news = "P-1 Acme, P-2 Müller, P-3 東京データ, (direct)";
    state
        .store
        .record_evaluation(
            alert,
            1,
            true,
            news,
            Some(&prism_web::store::News {
                key: "k",
                subject: news,
                body: news,
                payload: news,
                files: &[],
                every_time: false,
                due_at: 0,
            }),
        )
        .unwrap();
    state.store.notify("exec", news, news).unwrap();
    (tmp, state)
}

struct Reply {
    status: StatusCode,
    location: String,
    cookies: Vec<String>,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(state: &Arc<AppState>, req: Request<Body>) -> Reply {
    let r = prism_web::router(state.clone()).oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let location = r
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let cookies = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let body =
        String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).to_string();
    Reply {
        status,
        location,
        cookies,
        headers,
        body,
    }
}

/// The security headers every answer carries, whoever asks.
fn assert_security_headers(r: &Reply, what: &str) {
    let h = |name: &str| {
        r.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let csp = h("content-security-policy");
    assert!(
        csp.contains("script-src 'self'")
            && !csp.contains("script-src 'self' 'unsafe-inline'")
            && csp.contains("frame-ancestors 'none'"),
        "{what}: {csp:?}"
    );
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
    assert!(!h("cache-control").is_empty(), "{what}");
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn cookie_value(reply: &Reply, name: &str) -> String {
    reply
        .cookies
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
        .unwrap_or_default()
}

/// Signs in through the form, as a browser does: the sign-in page's CSRF cookie and token, then the post.
async fn sign_in(state: &Arc<AppState>, name: &str, password: &str) -> Reply {
    let page = send(state, get("/", "")).await;
    let csrf = cookie_value(&page, "prism_csrf");
    assert!(
        page.body.contains(&format!("value=\"{csrf}\"")),
        "the form carries the cookie's token"
    );
    let form = format!(
        "name={name}&password={}&csrf={csrf}",
        password.replace(' ', "+")
    );
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
    let mut v: Vec<&'static str> = all
        .iter()
        .filter(|(id, _)| !partners.contains(id))
        .flat_map(|(id, name)| [*id, *name])
        .collect();
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
        assert_security_headers(&r, path);
        match serves {
            Serves::SignInPage
            | Serves::Script
            | Serves::Style
            | Serves::Ops(_)
            | Serves::OpenApi => {
                assert_eq!(r.status, StatusCode::OK, "{path}")
            }
            Serves::Favicon => assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}"),
            Serves::Html(_)
            | Serves::PageVisibility
            | Serves::Explore(prism_web::ExploreForm::Html)
            | Serves::Questions(
                prism_web::QuestionsRoute::List | prism_web::QuestionsRoute::Open,
            )
            | Serves::Alerts(prism_web::AlertsRoute::Page)
            | Serves::Planned(prism_web::PlannedRoute::Page | prism_web::PlannedRoute::List)
            | Serves::Dashboards(
                prism_web::DashboardsRoute::List | prism_web::DashboardsRoute::Page,
            ) => {
                assert_eq!(
                    (r.status, r.location.as_str()),
                    (StatusCode::SEE_OTHER, "/"),
                    "{path}"
                )
            }
            _ => assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}"),
        }
        for secret in others(&[]) {
            assert!(
                !r.body.contains(secret),
                "{path} shows {secret} to a visitor"
            );
        }
    }

    for (user, own) in [("partner", vec!["P-2"]), ("manager", vec!["P-1", "P-3"])] {
        let cookie = session_of(&state, user).await;
        let mut served = 0;
        for (path, serves) in &all {
            let r = send(&state, get(path, &cookie)).await;
            assert!(
                matches!(
                    r.status,
                    StatusCode::OK
                        | StatusCode::NO_CONTENT
                        | StatusCode::FORBIDDEN
                        | StatusCode::NOT_FOUND
                        | StatusCode::SEE_OTHER
                ),
                "{user} {path}: {} {}",
                r.status,
                r.body
            );
            assert_security_headers(&r, path);
            if r.status == StatusCode::OK
                && !matches!(serves, Serves::Script | Serves::Style | Serves::Favicon)
            {
                // Data is never kept by a browser or a proxy.
                assert_eq!(
                    r.headers.get(header::CACHE_CONTROL).unwrap(),
                    "no-store",
                    "{user} {path}"
                );
                served += 1;
                for secret in others(&own) {
                    assert!(
                        !r.body.contains(secret),
                        "{user} {path} shows {secret}:\n{}",
                        &r.body[..r.body.len().min(3000)]
                    );
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
    assert_eq!(
        send(&state, get("/overview", &partner)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&state, get("/api/segmentation", &partner))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Its partner page holds its figures: P-2's credit of -49.75.
    let r = send(&state, get("/api/partners/P-2", &partner)).await;
    assert!(r.body.contains("-49.75"), "{}", r.body);
    // And its side of the program, by hand from fixtures/tiny: DR-2 approved, DR-3 rejected
    // (2 registrations, 50 % approved); DR-2's opportunity OP-3 lost (0 % won of 1 closed).
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let program = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "program")
        .expect("a partner program panel");
    let tile = |m: &str| {
        program["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["metric"] == m)
            .map(|t| t["value"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(tile("registrations"), "2");
    assert_eq!(tile("registration_approval_rate"), "50.0");
    assert_eq!(tile("registration_win_rate"), "0.0");

    // The executive sees the channel, direct sales included, and not the admin page.
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/api/overview", &exec)).await;
    assert_eq!(r.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let kpi = &json["panels"][0]["tiles"][0];
    assert_eq!(
        (kpi["metric"].as_str(), kpi["value"].as_str()),
        (Some("closed_revenue"), Some("3649.75"))
    );
    assert_eq!(
        send(&state, get("/admin", &exec)).await.status,
        StatusCode::FORBIDDEN
    );
    let admin = session_of(&state, "admin").await;
    assert_eq!(
        send(&state, get("/admin", &admin)).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_exports_as_csv_with_the_prompts_and_the_export_is_audited() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/export/overview?table=top-partners", &exec)).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut lines = r.body.lines();
    assert_eq!(
        lines.next(),
        Some(
            "partner.partner_id,partner.partner_name,partner.tier,partner.region,closed_revenue,closed_revenue:pct_of_total,win_rate,csat_avg"
        )
    );
    // Largest first: P-1 2499.50, the direct sale 1200, P-2's credit.
    let firsts: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(firsts, ["P-1", "(direct)", "P-2"]);
    // A period prompt: March 2024.
    let r = send(
        &state,
        get("/export/overview?table=top-partners&period=2024-03", &exec),
    )
    .await;
    // With a period, each row's change: P-2 had no order in February (no change against
    // nothing), and direct sales, 1200.00 in February, fell by all of it.
    assert_eq!(r.body.lines().count(), 3, "{}", r.body);
    assert!(
        r.body.contains("P-2,Müller & Söhne,Silver,EMEA,-49.75,,"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("(direct),(direct),(direct),(direct),,-100.0,"),
        "{}",
        r.body
    );
    let log = state.store.audit_log(10).unwrap();
    assert!(
        log.iter().any(|(_, user, event, detail)| user == "exec"
            && event == "export"
            && detail.contains("top-partners")),
        "{log:?}"
    );
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
        Request::post("/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("name=exec&password=correct+horse&csrf=forged"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(cookie_value(&r, "prism_session").is_empty());
    // Sign-out without the session's token leaves the session alive.
    let exec = session_of(&state, "exec").await;
    let r = send(
        &state,
        Request::post("/sign-out")
            .header(header::COOKIE, &exec)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("csrf=forged"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&state, get("/api/overview", &exec)).await.status,
        StatusCode::OK
    );
    // With it, the session ends.
    let page = send(&state, get("/overview", &exec)).await;
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = send(
        &state,
        Request::post("/sign-out")
            .header(header::COOKIE, &exec)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        send(&state, get("/api/overview", &exec)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Signs in through the form from a socket address, with an `X-Forwarded-For` if given.
async fn sign_in_from(
    state: &Arc<AppState>,
    name: &str,
    password: &str,
    peer: &str,
    forwarded: Option<&str>,
) -> Reply {
    let page = send(state, get("/", "")).await;
    let csrf = cookie_value(&page, "prism_csrf");
    let form = format!(
        "name={name}&password={}&csrf={csrf}",
        password.replace(' ', "+")
    );
    let mut req = Request::post("/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("prism_csrf={csrf}"));
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    let mut req = req.body(Body::from(form)).unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        peer.parse::<std::net::SocketAddr>().unwrap(),
    ));
    send(state, req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_slow_the_guesser_down_without_locking_the_user_out() {
    let (_tmp, state) = app().await;
    let (guesser, user) = ("203.0.113.9:5000", "198.51.100.7:6000");
    let free = prism_web::store::THROTTLES[0].free;
    for _ in 0..free {
        let r = sign_in_from(&state, "exec", "wrong password", guesser, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("wrong name or password"), "{}", r.body);
    }
    // Three more failures from there: the next try from there waits 2^3 = 8 seconds, the
    // right password included, and is audited.
    for _ in 0..3 {
        state.store.record_failure("exec", "203.0.113.9").unwrap();
    }
    let wait = state
        .store
        .wait_for("exec", "203.0.113.9")
        .unwrap()
        .unwrap();
    assert!((7..=8).contains(&wait), "{wait}");
    let r = sign_in_from(&state, "exec", "correct horse", guesser, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.body.contains("too many failed sign-ins; try again in"),
        "{}",
        r.body
    );
    // Each further failure doubles the wait: two more, 32 seconds.
    state.store.record_failure("exec", "203.0.113.9").unwrap();
    state.store.record_failure("exec", "203.0.113.9").unwrap();
    let wait = state
        .store
        .wait_for("exec", "203.0.113.9")
        .unwrap()
        .unwrap();
    assert!((31..=32).contains(&wait), "{wait}");
    // The user, from their own address, signs in meanwhile: nobody locks them out.
    assert_eq!(
        sign_in_from(&state, "exec", "correct horse", user, None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let log = state.store.audit_log(50).unwrap();
    assert_eq!(
        log.iter().filter(|e| e.2 == "sign-in failed").count(),
        free as usize
    );
    assert!(
        log.iter()
            .any(|e| e.2 == "sign-in refused" && e.3.contains("203.0.113.9")),
        "{log:?}"
    );

    // Guessing one name from many addresses meets the name's own limit, higher and slower,
    // which slows the name by seconds, never for good: at most a minute.
    for i in 0..60 {
        state
            .store
            .record_failure("manager", &format!("192.0.2.{i}"))
            .unwrap();
    }
    let wait = state
        .store
        .wait_for("manager", "198.51.100.7")
        .unwrap()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Every other user signs in as usual.
    assert_eq!(
        sign_in_from(&state, "partner", "correct horse", user, None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let (tmp, _) = app().await;
    let state = Arc::new(
        AppState::open(
            &tmp.path().join("data"),
            prism_model::Model::shipped(),
            false,
        )
        .unwrap()
        .with_trusted_proxies(vec!["10.0.0.1".parse().unwrap()]),
    );
    // Through the proxy: the client's address is the one the proxy adds (the right-most), not
    // what the client wrote at the left.
    sign_in_from(
        &state,
        "exec",
        "wrong password",
        "10.0.0.1:443",
        Some("1.2.3.4, 203.0.113.9"),
    )
    .await;
    // Straight to the server: the header is the client's own words, and ignored.
    sign_in_from(
        &state,
        "exec",
        "wrong password",
        "198.51.100.7:6000",
        Some("203.0.113.9"),
    )
    .await;
    let log = state.store.audit_log(10).unwrap();
    let from: Vec<&str> = log
        .iter()
        .filter(|e| e.2 == "sign-in failed")
        .map(|e| e.3.as_str())
        .collect();
    assert_eq!(from, ["from 198.51.100.7", "from 203.0.113.9"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_sign_ins_and_prompts_are_refused_before_any_work() {
    let (_tmp, state) = app().await;
    let long = "x".repeat(prism_web::store::MAX_PASSWORD_BYTES + 1);
    let r = sign_in_from(&state, "exec", &long, "198.51.100.7:6000", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("a password at most"), "{}", r.body);
    // Not counted as a failure: nothing was tried.
    assert!(
        state
            .store
            .audit_log(10)
            .unwrap()
            .iter()
            .all(|e| e.2 != "sign-in failed")
    );
    let exec = session_of(&state, "exec").await;
    let r = send(
        &state,
        get(
            &format!(
                "/api/overview?region={}",
                "x".repeat(prism_web::limits::QUERY_BYTES)
            ),
            &exec,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("too long"), "{}", r.body);
    assert_security_headers(&r, "an oversized query");
    // A body beyond the limit is refused too.
    let r = send(
        &state,
        Request::post("/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("x".repeat(prism_web::limits::BODY_BYTES + 1)))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Odd and extreme prompts get a 400 that says what is wrong; never a 500 or a panic.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_prompts_are_a_400_with_the_reason() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let partner = session_of(&state, "partner").await;
    for (cookie, path, says) in [
        (&exec, "/api/overview?period=2024-13", "2024-13"),
        (&exec, "/api/overview?period=99999999-Q1", "99999999"),
        (
            &exec,
            "/api/overview?period=2024-03-01..2024-01-01",
            "2024-03-01",
        ),
        (&exec, "/api/overview?period=2024-Q5", "2024-Q5"),
        (&exec, "/api/overview?period=%00%FF", "period"),
        (&exec, "/api/scorecard?weights=revenue%3DNaN", "revenue"),
        (&exec, "/api/scorecard?weights=revenue%3D1e309", "revenue"),
        (&exec, "/api/scorecard?weights=nothing", "nothing"),
        (&partner, "/api/my/performance?period=0000-Q0", "0000-Q0"),
        (
            &partner,
            "/api/my/potential?product=%27%3B+DROP+TABLE+orders",
            "no such product",
        ),
    ] {
        let r = send(&state, get(path, cookie)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        assert!(r.body.contains(says), "{path}: {}", r.body);
    }
}

/// An unexpected failure (here: the warehouse's files gone) is a 500 whose message has an
/// incident id and nothing of the server's insides; the log has the rest.
#[tokio::test(flavor = "multi_thread")]
async fn an_unexpected_failure_is_a_500_with_an_incident_id_and_no_internals() {
    let (tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let mut stack = vec![tmp.path().join("data")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    for path in ["/api/overview", "/overview", "/export/overview"] {
        let r = send(&state, get(path, &exec)).await;
        assert_eq!(
            r.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}: {}",
            r.body
        );
        assert!(r.body.contains("incident"), "{path}: {}", r.body);
        let data = tmp.path().display().to_string();
        for inside in [".parquet", data.as_str(), "DataFusion", "Error"] {
            assert!(
                !r.body.contains(inside),
                "{path} tells {inside}: {}",
                r.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_stored_hashed_end_when_idle_and_a_policy_may_keep_one_per_user() {
    let (tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let token = exec.strip_prefix("prism_session=").unwrap().to_string();
    let db = rusqlite::Connection::open(tmp.path().join("data").join("app.sqlite")).unwrap();
    let stored: Vec<String> = db
        .prepare("SELECT token_hash FROM web_sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !stored.is_empty() && !stored.contains(&token),
        "the database holds hashes, not tokens"
    );
    assert_eq!(
        send(&state, get("/api/overview", &exec)).await.status,
        StatusCode::OK
    );
    // Unused for longer than the idle time (an hour by default): signed out.
    db.execute("UPDATE web_sessions SET last_seen = last_seen - 3601", [])
        .unwrap();
    assert_eq!(
        send(&state, get("/api/overview", &exec)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // With one session per user, signing in again ends the first one.
    let strict = Arc::new(
        AppState::open(
            &tmp.path().join("data"),
            prism_model::Model::shipped(),
            false,
        )
        .unwrap()
        .with_policy(prism_web::store::Policy {
            single_session: true,
            ..Default::default()
        })
        .unwrap(),
    );
    let first = session_of(&strict, "manager").await;
    let second = session_of(&strict, "manager").await;
    assert_eq!(
        send(&strict, get("/api/overview", &first)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&strict, get("/api/overview", &second)).await.status,
        StatusCode::OK
    );
    assert_eq!(strict.store.session_count("manager").unwrap(), 1);
}

/// A name typed into the CRM as a formula stays text in an export: a spreadsheet opening it
/// runs nothing. Numbers, negative ones included, stay numbers.
#[tokio::test(flavor = "multi_thread")]
async fn exports_neutralise_cells_a_spreadsheet_would_run() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    let export = tmp.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    for f in std::fs::read_dir(&fixture).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, export.join(f.file_name().unwrap())).unwrap();
    }
    let partners = std::fs::read_to_string(export.join("partners.csv"))
        .unwrap()
        .replace("Müller & Söhne", "=HYPERLINK(\"\"http://evil\"\")");
    std::fs::write(
        export.join("partners.csv"),
        partners.replace(
            "P-2,=HYPERLINK(\"\"http://evil\"\")",
            "P-2,\"=HYPERLINK(\"\"http://evil\"\")\"",
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let wh = prism_warehouse::Warehouse::open(&data).unwrap();
    wh.load(
        &prism_warehouse::LoadOptions {
            export_dir: export,
            rollups: prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
            ..Default::default()
        },
        &prism_warehouse::NoProgress,
    )
    .await
    .unwrap();
    let state = Arc::new(AppState::open(&data, prism_model::Model::shipped(), false).unwrap());
    state
        .store
        .add_user("exec", Role::ChannelExecutive, &[], "correct horse")
        .unwrap();
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/export/overview?table=top-partners", &exec)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let p2 = r
        .body
        .lines()
        .find(|l| l.starts_with("P-2,"))
        .unwrap()
        .to_string();
    assert!(
        p2.starts_with("P-2,\"'=HYPERLINK(\"\"http://evil\"\")\","),
        "{p2}"
    );
    assert!(
        p2.contains(",-49.75,"),
        "a negative amount stays a number: {p2}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn session_cookies_are_http_only_same_site_and_secure_behind_tls() {
    let (_tmp, state) = app().await;
    let r = sign_in(&state, "exec", "correct horse").await;
    let c = r
        .cookies
        .iter()
        .find(|c| c.starts_with("prism_session="))
        .unwrap();
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"),
        "{c}"
    );
    let page = send(
        &state,
        Request::get("/")
            .header("x-forwarded-proto", "https")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        page.cookies.iter().all(|c| c.contains("; Secure")),
        "{:?}",
        page.cookies
    );
}

/// The top accounts are ranked by revenue first (a rollup answers it) and the distinct orders
/// and CSAT computed for those rows only: the table must be the one a single query gives.
#[tokio::test(flavor = "multi_thread")]
async fn top_accounts_are_the_answer_of_one_query_with_every_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    prism_generator::generate(&prism_generator::GenerateConfig {
        out: export.clone(),
        scale: 0.01,
        seed: 3,
        partners: None,
        customers: None,
    })
    .unwrap();
    let data = tmp.path().join("data");
    let wh = prism_warehouse::Warehouse::open(&data).unwrap();
    let engine = prism_engine::Engine::new(prism_model::Model::shipped());
    wh.load(
        &prism_warehouse::LoadOptions {
            export_dir: export,
            rollups: engine.rollup_builds(),
            ..Default::default()
        },
        &prism_warehouse::NoProgress,
    )
    .await
    .unwrap();
    let state = Arc::new(AppState::open(&data, prism_model::Model::shipped(), false).unwrap());
    state
        .store
        .add_user("exec", Role::ChannelExecutive, &[], "correct horse")
        .unwrap();
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/export/customers?table=top-accounts", &exec)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let shown: Vec<String> = r.body.lines().skip(1).map(String::from).collect();

    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let q = prism_engine::Query {
        metrics: ["closed_revenue", "order_count", "csat_avg"]
            .map(String::from)
            .to_vec(),
        by: [
            "customer.customer_id",
            "customer.customer_name",
            "customer.industry",
            "customer.size_band",
        ]
        .map(String::from)
        .to_vec(),
        order: vec![prism_engine::Order::parse("closed_revenue:desc").unwrap()],
        limit: Some(20),
        ..Default::default()
    };
    let one = engine
        .without_rollups()
        .run(&ctx, &q, &prism_engine::Audience::everyone())
        .await
        .unwrap();
    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in one.formatted_rows() {
        csv.write_record(&row).unwrap();
    }
    let expected: Vec<String> = String::from_utf8(csv.into_inner().unwrap())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
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
    assert_eq!(
        send(&state, overview(&exec)).await.body,
        first,
        "the same page again"
    );
    // The channel manager's overview (P-1 and P-3) never comes from the executive's, which has
    // the direct sale and P-2's credit.
    assert!(
        first.contains("1200.00") && first.contains("-49.75"),
        "{first}"
    );
    let manager = session_of(&state, "manager").await;
    let theirs = send(&state, overview(&manager)).await.body;
    assert!(
        theirs.contains("2499.50") && !theirs.contains("1200.00") && !theirs.contains("-49.75"),
        "{theirs}"
    );

    // A load changes P-1's first line from 2400.00 to 100.00.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    let update = tmp.path().join("update");
    std::fs::create_dir_all(&update).unwrap();
    let orders = std::fs::read_to_string(fixture.join("orders.csv"))
        .unwrap()
        .replace(",2400.00,", ",100.00,");
    std::fs::write(update.join("orders.csv"), orders).unwrap();
    let wh = prism_warehouse::Warehouse::open(tmp.path().join("data")).unwrap();
    let engine = prism_engine::Engine::new(prism_model::Model::shipped());
    wh.load(
        &prism_warehouse::LoadOptions {
            export_dir: update,
            rollups: engine.rollup_builds(),
            ..Default::default()
        },
        &prism_warehouse::NoProgress,
    )
    .await
    .unwrap();
    let after = send(&state, overview(&exec)).await.body;
    assert!(
        after.contains("199.50") && !after.contains("2499.50"),
        "{after}"
    );
    // The request that noticed the load set the pages kept before it to be built again over
    // the new version: once built, the manager's overview is served without asking the engine
    // anything, and with the new figures (their P-1 line too).
    state.pages_warmed().await;
    let stats = state.engine.stats();
    let asked = || {
        use prism_engine::stats::AnsweredFrom as F;
        [F::Cache, F::Rollup, F::Base]
            .map(|f| stats.answers(f))
            .iter()
            .sum::<u64>()
    };
    let before = asked();
    let theirs_after = send(&state, overview(&manager)).await.body;
    assert_eq!(
        asked(),
        before,
        "the manager's overview was built again when asked"
    );
    assert!(
        theirs_after.contains("199.50") && !theirs_after.contains("2499.50"),
        "{theirs_after}"
    );
}

/// Fuzzing the prompts: any text in any prompt of any page a partner user can open is a page,
/// a 400 with its reason, or a refusal — never a 500 — and never shows another partner.
#[test]
fn any_prompt_is_answered_or_refused_and_never_shows_another_partner() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_tmp, state) = rt.block_on(app());
    let partner = rt.block_on(session_of(&state, "partner"));
    let pieces = [
        "2024",
        "-Q1",
        "..",
        "2024-03",
        "P-1",
        "P-2",
        "PR-1",
        "Retail/SMB",
        "revenue=",
        "0.5",
        ",",
        "%",
        "'",
        "\"",
        "&",
        "=",
        "+",
        "\u{0}",
        "é",
        "<script>",
    ];
    let text = proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(pieces.to_vec()).prop_map(String::from),
            "\\PC{0,4}"
        ],
        0..6,
    )
    .prop_map(|v| v.concat());
    let prompts = [
        "period",
        "region",
        "tier",
        "partner_type",
        "product_line",
        "weights",
        "product",
        "segment",
        "table",
    ];
    let pages = [
        "/api/my/performance",
        "/api/my/products",
        "/api/my/potential",
        "/api/partners/P-2",
        "/export/my/potential",
        "/my/products",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 120,
        ..Default::default()
    });
    runner
        .run(
            &(
                proptest::sample::select(pages.to_vec()),
                proptest::collection::vec((proptest::sample::select(prompts.to_vec()), text), 0..4),
            ),
            |(page, given)| {
                let query: Vec<String> = given
                    .iter()
                    .map(|(k, v)| format!("{k}={}", url_encode(v)))
                    .collect();
                let path = format!("{page}?{}", query.join("&"));
                let r = rt.block_on(send(&state, get(&path, &partner)));
                prop_assert!(
                    matches!(
                        r.status,
                        StatusCode::OK
                            | StatusCode::BAD_REQUEST
                            | StatusCode::FORBIDDEN
                            | StatusCode::NOT_FOUND
                    ),
                    "{path}: {} {}",
                    r.status,
                    r.body
                );
                for secret in others(&["P-2"]) {
                    // The prompt itself may echo back in a refusal; a figure of another partner may not.
                    if !given.iter().any(|(_, v)| v.contains(secret)) {
                        prop_assert!(!r.body.contains(secret), "{path} shows {secret}");
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Explore asks any question of the model in the asker's audience. The figures are the tiny
/// fixture's, by hand: P-1 sold 2400.00 + 99.50 on 2024-01-10, the direct sale was 1200.00 on
/// 2024-02-01, P-2's credit -49.75 on 2024-03-05; 3649.75 in all.
#[tokio::test(flavor = "multi_thread")]
async fn explore_answers_any_question_in_the_askers_audience() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let partner = session_of(&state, "partner").await;
    let rows = |body: &str| -> Vec<(String, String)> {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["api_version"], 1, "{body}");
        json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["partner.partner_id"].as_str().unwrap_or("").to_string(),
                    r["closed_revenue"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let by_partner =
        "/api/explore?metrics=closed_revenue&by=partner.partner_id&order=partner.partner_id";
    let r = send(&state, get(by_partner, &exec)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        rows(&r.body),
        [
            ("(direct)".into(), "1200.00".into()),
            ("P-1".into(), "2499.50".into()),
            ("P-2".into(), "-49.75".into())
        ]
    );
    // The same link for P-2's user: its own row only.
    let r = send(&state, get(by_partner, &partner)).await;
    assert_eq!(rows(&r.body), [("P-2".into(), "-49.75".into())]);

    // A single day is a period.
    let r = send(
        &state,
        get(
            "/api/explore?metrics=closed_revenue&period=2024-01-10",
            &exec,
        ),
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json["rows"][0]["closed_revenue"], "2499.50", "{}", r.body);

    // Two dimensions make a pivot table whose totals are asked of the engine.
    let r = send(
        &state,
        get(
            "/explore?metrics=closed_revenue&by=partner.partner_id&by=time.month&chart=stacked",
            &exec,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for expected in [
        "Closed revenue by Partner id across Month",
        "2024-02",
        // The grand total as people read it, with the exact value for the browser's language.
        "$3,649.75",
        "data-value=\"3649.75\"",
    ] {
        assert!(r.body.contains(expected), "{expected}:\n{}", r.body);
    }
    assert!(r.body.contains("data-chart="), "a chart is drawn");
    assert!(
        r.body.contains("href=\"/partners/P-1\""),
        "a partner drills to its page"
    );

    // A tier's cell drills to the question filtered to that tier, cut by month only: Silver
    // is P-2, whose one credit line of -49.75 is in March 2024.
    let r = send(
        &state,
        get(
            "/explore?metrics=closed_revenue&by=partner.tier,time.month",
            &exec,
        ),
    )
    .await;
    let drilled =
        "/explore?metrics=closed_revenue&#38;by=time.month&#38;filter=partner.tier%3DSilver";
    assert!(
        r.body.contains(&format!("href=\"{drilled}\"")),
        "{}",
        r.body
    );
    let r = send(
        &state,
        get(
            &drilled
                .replace("&#38;", "&")
                .replace("/explore", "/api/explore"),
            &exec,
        ),
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        json["rows"],
        serde_json::json!([{"time.month": "2024-03", "closed_revenue": "-49.75"}])
    );

    // A scatter chart: a point per partner, its revenue across and its CSAT up (fixtures/tiny:
    // P-1 2499.50 and 5, P-2 -49.75 and 2; direct sales 1200.00 without a survey, which the
    // chart leaves out; P-3 has neither).
    let r = send(
        &state,
        get(
            "/explore?metrics=closed_revenue,csat_avg&by=partner.partner_id&order=partner.partner_id&chart=scatter",
            &exec,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let spec: serde_json::Value = serde_json::from_str(
        &r.body
            .split("data-chart=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&amp;", "&"),
    )
    .unwrap();
    assert_eq!(spec["kind"], "scatter");
    assert_eq!(
        spec["categories"],
        serde_json::json!(["(direct)", "P-1", "P-2"])
    );
    assert_eq!(
        spec["series"][0]["values"],
        serde_json::json!([1200.0, 2499.5, -49.75])
    );
    assert_eq!(
        spec["series"][1]["values"],
        serde_json::json!([null, 5.0, 2.0])
    );
    // One metric cannot be a scatter: the reason, not an empty chart.
    let r = send(
        &state,
        get(
            "/api/explore?metrics=closed_revenue&by=partner.partner_id&chart=scatter",
            &exec,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("needs two metrics"), "{}", r.body);

    // A question that cannot be asked is a 400 with the reason, the form kept.
    let r = send(&state, get("/explore?metrics=closed_revenu", &exec)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("no metric `closed_revenu`") && r.body.contains("did you mean"),
        "{}",
        r.body
    );
    assert!(r.body.contains("name=\"metrics\""), "the form is kept");
    for bad in [
        "/api/explore?metrics=closed_revenue&by=partner.teir",
        "/api/explore?metrics=csat_avg&by=product.product_line",
        "/api/explore?metrics=closed_revenue&filter=partner.region",
        "/api/explore?metrics=closed_revenue&period=2024-13",
        "/api/explore?metrics=closed_revenue&limit=many",
        "/api/explore?metrics=closed_revenue&chart=bars",
    ] {
        let r = send(&state, get(bad, &exec)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert!(r.body.contains("\"error\""), "{bad}: {}", r.body);
    }

    // The CSV is the answer at full precision, and the export is audited.
    let r = send(
        &state,
        get(
            "/export/explore?metrics=closed_revenue,win_rate&by=partner.partner_id&order=partner.partner_id",
            &partner,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let mut lines = r.body.lines();
    assert_eq!(
        lines.next(),
        Some("partner.partner_id,closed_revenue,win_rate")
    );
    assert!(lines.all(|l| l.starts_with("P-2,")), "{}", r.body);
    let audit = state.store.audit_log(50).unwrap();
    assert!(
        audit.iter().any(|(_, _, event, detail)| event == "export"
            && detail.contains("/explore?metrics=closed_revenue,win_rate")),
        "{audit:?}"
    );
}

/// A tile's change says its direction and whether that is good news: March's revenue (P-2's
/// credit, -49.75) against February's (the direct sale, 1200.00) is down 104.1 %, which is bad.
#[tokio::test(flavor = "multi_thread")]
async fn a_tiles_change_shows_its_direction_and_whether_it_is_good_news() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/overview?period=2024-03", &exec)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains("<div class=\"change bad\">▼ 104.1 % vs previous period</div>"),
        "{}",
        &r.body[..r.body.len().min(6000)]
    );
    // The top partners' table gains the change as a column when a period is chosen.
    let header = |path: &str| {
        let state = state.clone();
        let exec = exec.clone();
        let path = path.to_string();
        async move {
            let r = send(&state, get(&path, &exec)).await;
            let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            json["panels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == "top-partners")
                .unwrap()
                .clone()
        }
    };
    let top = header("/api/overview?period=2024-Q1").await;
    let names: Vec<&str> = top["header"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(
        names[4..],
        [
            "closed_revenue",
            "closed_revenue:change_pct",
            "closed_revenue:pct_of_total",
            "win_rate",
            "csat_avg"
        ],
        "{top}"
    );
    let top = header("/api/overview").await;
    assert!(
        !top["header"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "closed_revenue:change_pct"),
        "{top}"
    );
}

/// A tile's trend, month by month, from a page's JSON.
fn trend_of(body: &str, metric: &str) -> Vec<(String, Option<f64>)> {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let tile = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["tiles"].as_array().cloned().unwrap_or_default())
        .find(|t| t["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} tile in {body}"));
    tile["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["month"].as_str().unwrap().to_string(),
                p["value"].as_f64(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiles_trend_line_is_its_figure_over_the_last_twelve_months_in_the_users_audience() {
    let (_tmp, state) = app().await;
    // By hand from fixtures/tiny: closed revenue 2499.50 in January 2024 (P-1), 1200.00 in
    // February (direct), -49.75 in March (P-2's credit, the newest order): the twelve months
    // end with March 2024, nine of them without orders.
    let months: Vec<String> = (4..=12)
        .map(|m| format!("2023-{m:02}"))
        .chain((1..=3).map(|m| format!("2024-{m:02}")))
        .collect();
    let exec = session_of(&state, "exec").await;
    let mut expected: Vec<(String, Option<f64>)> =
        months.iter().map(|m| (m.clone(), None)).collect();
    expected[9].1 = Some(2499.5);
    expected[10].1 = Some(1200.0);
    expected[11].1 = Some(-49.75);
    for path in ["/api/overview", "/api/overview?period=2024-Q1"] {
        let r = send(&state, get(path, &exec)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(trend_of(&r.body, "closed_revenue"), expected, "{path}");
    }
    // Drawn as one line (three months in a row): the highest month at the top, the lowest at
    // the bottom of the 24 units, months 100/11 units apart.
    let r = send(&state, get("/overview", &exec)).await;
    assert!(
        r.body
            .contains(r#"<polyline points="81.8,1.0 90.9,12.2 100.0,23.0"/>"#),
        "{}",
        &r.body[..r.body.len().min(8000)]
    );
    // The revenue chart's series carries its kind, so its axis and tooltip write money.
    assert!(
        r.body.contains(r#"&#34;format&#34;:&#34;money&#34;"#)
            && r.body.contains(r#"&#34;currency&#34;:&#34;USD&#34;"#),
        "{}",
        &r.body[..r.body.len().min(8000)]
    );
    // A period without orders: twelve empty months, and no line.
    let r = send(&state, get("/api/overview?period=2023", &exec)).await;
    assert!(
        trend_of(&r.body, "closed_revenue")
            .iter()
            .all(|(_, v)| v.is_none())
    );

    // P-2's user: its own months only, ending with its own newest order.
    let partner = session_of(&state, "partner").await;
    let r = send(&state, get("/api/my/performance", &partner)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut own: Vec<(String, Option<f64>)> = months.iter().map(|m| (m.clone(), None)).collect();
    own[11].1 = Some(-49.75);
    assert_eq!(trend_of(&r.body, "closed_revenue"), own);
}

#[tokio::test(flavor = "multi_thread")]
async fn scorecard_weights_are_typed_one_per_attribute_and_prompts_show_as_removable_chips() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let panels = |body: &str| {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        json["panels"].clone()
    };
    // The six inputs ask what the weights string asks.
    let typed = send(
        &state,
        get(
            "/api/scorecard?w_revenue=1&w_pipeline=0&w_win_rate=0&w_csat=0&w_responsiveness=0&w_certified_people=0",
            &exec,
        ),
    )
    .await;
    let text = send(
        &state,
        get(
            "/api/scorecard?weights=revenue%3D1%2Cpipeline%3D0%2Cwin_rate%3D0%2Ccsat%3D0%2Cresponsiveness%3D0",
            &exec,
        ),
    )
    .await;
    assert_eq!(typed.status, StatusCode::OK, "{}", typed.body);
    assert_eq!(panels(&typed.body), panels(&text.body));
    // Revenue alone: P-1 (2499.50) ranks above P-2 (-49.75).
    let rows = panels(&typed.body)[0]["rows"].clone();
    assert_eq!(rows[0][0], "P-1", "{rows}");
    assert_eq!(rows[1][0], "P-2", "{rows}");
    // An input the user typed wrong is refused with its attribute.
    let r = send(&state, get("/scorecard?w_csat=-1", &exec)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("csat"), "{}", r.body);

    // The page shows each weight in its own input, their total, and the given prompts as
    // chips whose links drop one prompt each.
    let r = send(&state, get("/scorecard?w_revenue=0.5&tier=Gold", &exec)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains(r#"name="w_revenue" value="0.5""#),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(r#"name="w_pipeline" value="0.2""#),
        "{}",
        r.body
    );
    // 0.5 + 0.20 + 0.15 + 0.20 + 0.10 + 0.
    assert!(
        r.body
            .contains(r#"<output class="weights-total">1.15</output>"#),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(r#"<a class="chip" href="/scorecard?weights=revenue%3D0.5" title="Remove this prompt">Tier: Gold"#),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(r#"<a class="chip" href="/scorecard?tier=Gold" title="Remove this prompt">Weights: revenue=0.5"#),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partners_page_shows_its_ranks_among_the_partners_the_user_sees_but_not_to_its_own_user()
{
    let (_tmp, state) = app().await;
    let profile = |body: &str| {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        json["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "profile")
            .map(|p| p["chart"].clone())
    };
    // By hand from fixtures/tiny: of the two partners with figures, P-1 has the higher revenue
    // (2499.50 against -49.75): rank 100 for P-1, 0 for P-2; the median partner is 50.
    let exec = session_of(&state, "exec").await;
    for (id, rank) in [("P-1", 100.0), ("P-2", 0.0)] {
        let r = send(&state, get(&format!("/api/partners/{id}"), &exec)).await;
        let chart = profile(&r.body).unwrap_or_else(|| panic!("no profile for {id}: {}", r.body));
        assert_eq!(chart["categories"][0], "Closed revenue", "{chart}");
        assert_eq!(chart["series"][0]["values"][0], rank, "{id}: {chart}");
        assert_eq!(chart["series"][1]["values"][0], 50.0, "{chart}");
    }
    // P-2's own user: no ranks read from other partners' values.
    let partner = session_of(&state, "partner").await;
    let r = send(&state, get("/api/partners/P-2", &partner)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(profile(&r.body).is_none(), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_figure_is_a_dash_that_says_why_on_hover() {
    let (_tmp, state) = app().await;
    // fixtures/tiny: P-1 closed no deal, so it has no win rate.
    let exec = session_of(&state, "exec").await;
    let r = send(&state, get("/partners/P-1", &exec)).await;
    assert!(
        r.body
            .contains(r#"title="no value: Closed count is 0 in this period and scope""#),
        "{}",
        r.body
    );
    // Only two partners sold: P-2's channel figures are withheld, and each says so.
    let partner = session_of(&state, "partner").await;
    let r = send(&state, get("/my/performance?period=2024-Q1", &partner)).await;
    assert!(
        r.body
            .contains(r#"title="withheld: fewer than 5 partners contribute to it ("#),
        "{}",
        r.body
    );
    let r = send(&state, get("/my/performance", &partner)).await;
    assert!(
        r.body.contains(
            r#"title="withheld: channel figures are given one calendar quarter at a time"#
        ),
        "{}",
        r.body
    );
}

/// The CSRF token of a signed-in user's session, as its pages carry it.
async fn csrf_of(state: &Arc<AppState>, cookie: &str) -> String {
    let page = send(state, get("/explore", cookie)).await;
    page.body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

fn post_form(path: &str, cookie: &str, body: String) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// A saved question is its question, never its answer: the executive saves "revenue by
/// partner" shared with partner managers; P-2's user opens it and gets P-2's row only; the
/// channel manager, with whom it is not shared, cannot even see it; only its owner deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_saved_question_answers_in_the_openers_audience_and_stays_its_owners() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let partner = session_of(&state, "partner").await;
    let manager = session_of(&state, "manager").await;
    let token = csrf_of(&state, &exec).await;
    let question =
        url_encode("metrics=closed_revenue&by=partner.partner_id&order=partner.partner_id");
    let save = |csrf: &str, question: &str, shared: &str| {
        format!(
            "csrf={csrf}&name=Revenue+by+partner&description=who+brings+it&shared_with={shared}&question={question}"
        )
    };

    // Without the session's CSRF token, nothing is saved.
    let r = send(
        &state,
        post_form(
            "/questions",
            &exec,
            save("forged", &question, "partner_manager"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A question that cannot be asked is refused with the reason.
    let r = send(
        &state,
        post_form(
            "/questions",
            &exec,
            save(&token, &url_encode("metrics=closed_revenu"), "everyone"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("closed_revenu"), "{}", r.body);
    let r = send(
        &state,
        post_form("/questions", &exec, save(&token, &question, "nobody")),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    let r = send(
        &state,
        post_form(
            "/questions",
            &exec,
            save(&token, &question, "partner_manager"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let path = r.location.clone();
    let id = path.strip_prefix("/questions/").unwrap().to_string();

    // The executive's answer has every partner and direct sales; P-2's user gets P-2 only.
    let answer = |body: &str| -> Vec<String> {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["name"], "Revenue by partner", "{body}");
        json["answer"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["partner.partner_id"].as_str().unwrap().to_string())
            .collect()
    };
    let r = send(&state, get(&format!("/api/questions/{id}"), &exec)).await;
    assert_eq!(answer(&r.body), ["(direct)", "P-1", "P-2"]);
    let r = send(&state, get(&format!("/api/questions/{id}"), &partner)).await;
    assert_eq!(answer(&r.body), ["P-2"]);
    let r = send(&state, get(&path, &partner)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.location.starts_with("/explore?metrics=closed_revenue"),
        "{}",
        r.location
    );
    let r = send(&state, get("/api/questions", &partner)).await;
    assert!(r.body.contains("Revenue by partner"), "{}", r.body);

    // Not shared with channel managers: as absent as a question that never was.
    for p in [path.clone(), format!("/api/questions/{id}")] {
        assert_eq!(
            send(&state, get(&p, &manager)).await.status,
            StatusCode::NOT_FOUND,
            "{p}"
        );
    }
    let r = send(&state, get("/api/questions", &manager)).await;
    assert_eq!(r.body, "[]");

    // P-2's user cannot delete it; its owner can.
    let partner_token = csrf_of(&state, &partner).await;
    let delete = format!("/questions/{id}/delete");
    let r = send(
        &state,
        post_form(&delete, &partner, format!("csrf={partner_token}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&state, get(&path, &exec)).await.status,
        StatusCode::SEE_OTHER
    );
    let r = send(&state, post_form(&delete, &exec, format!("csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        send(&state, get(&path, &exec)).await.status,
        StatusCode::NOT_FOUND
    );
}

/// An alert is its owner's: another user's Alerts page and API do not list it, and only its
/// owner (or an administrator) deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_composes_saved_questions_each_answered_in_the_openers_audience() {
    let (_tmp, state) = app().await;
    let exec_user = state.store.user("exec").unwrap().unwrap();
    let revenue = state
        .store
        .save_question(
            &exec_user,
            "Revenue by partner",
            "",
            "metrics=closed_revenue&by=partner.partner_id&chart=bar",
            "everyone",
        )
        .unwrap();
    let csat = state
        .store
        .save_question(
            &exec_user,
            "CSAT",
            "",
            "metrics=csat_avg&chart=table",
            "private",
        )
        .unwrap();
    let exec = session_of(&state, "exec").await;
    let csrf = csrf_of(&state, &exec).await;
    let r = send(
        &state,
        post_form(
            "/dashboards",
            &exec,
            format!("csrf={csrf}&name=Channel&shared_with=partner_manager"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = r.location.clone();
    let id = page.trim_start_matches("/dashboards/").to_string();
    for q in [revenue, csat] {
        let r = send(
            &state,
            post_form(
                &format!("{page}/questions"),
                &exec,
                format!("csrf={csrf}&add={q}"),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
    let answers = |body: &str| -> Vec<Vec<Vec<serde_json::Value>>> {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        json["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                // Each row's cells in the answer's column order.
                let columns: Vec<&str> = a["answer"]["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["name"].as_str().unwrap())
                    .collect();
                a["answer"]["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| columns.iter().map(|c| r[*c].clone()).collect())
                    .collect()
            })
            .collect()
    };
    // By hand from fixtures/tiny: revenue by partner, then the CSAT of scores 5 and 2.
    let r = send(&state, get(&format!("/api/dashboards/{id}"), &exec)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let got = answers(&r.body);
    assert_eq!(
        got[0],
        [
            vec![serde_json::json!("(direct)"), serde_json::json!("1200.00")],
            vec![serde_json::json!("P-1"), serde_json::json!("2499.50")],
            vec![serde_json::json!("P-2"), serde_json::json!("-49.75")],
        ]
    );
    assert_eq!(got[1], [vec![serde_json::json!(3.5)]]);
    // One period over every question: March 2024 holds only P-2's credit.
    let r = send(
        &state,
        get(&format!("/api/dashboards/{id}?period=2024-03"), &exec),
    )
    .await;
    assert_eq!(
        answers(&r.body)[0],
        [vec![serde_json::json!("P-2"), serde_json::json!("-49.75")]]
    );
    // The partner and product prompts, over the questions that can take them: P-1 is the Gold
    // partner (2499.50; its survey scored 5); its 99.50 line and P-2's credit are Security, and a
    // survey is of no product, so the CSAT question answers as before and says why.
    let r = send(
        &state,
        get(&format!("/api/dashboards/{id}?tier=Gold"), &exec),
    )
    .await;
    let got = answers(&r.body);
    assert_eq!(
        got[0],
        [vec![serde_json::json!("P-1"), serde_json::json!("2499.50")]]
    );
    assert_eq!(got[1], [vec![serde_json::json!(5.0)]]);
    let r = send(
        &state,
        get(
            &format!("/api/dashboards/{id}?product_line=Security"),
            &exec,
        ),
    )
    .await;
    let got = answers(&r.body);
    assert_eq!(
        got[0],
        [
            vec![serde_json::json!("P-1"), serde_json::json!("99.50")],
            vec![serde_json::json!("P-2"), serde_json::json!("-49.75")],
        ]
    );
    assert_eq!(got[1], [vec![serde_json::json!(3.5)]]);
    assert!(
        r.body
            .contains("the product line prompt does not apply to this question"),
        "{}",
        r.body
    );
    let html = send(&state, get(&page, &exec)).await;
    assert!(html.body.contains("data-chart="), "{}", html.body);

    // The whole dashboard as one workbook, a sheet per question, with the same figures.
    let bytes = |path: String, cookie: String| {
        let state = state.clone();
        async move {
            let response = prism_web::router(state)
                .oneshot(
                    Request::get(path)
                        .header(header::COOKIE, cookie)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec()
        }
    };
    let book = bytes(format!("/export/dashboards/{id}"), exec.clone()).await;
    assert_eq!(
        workbook_sheet(book.clone(), 1),
        [
            vec!["Partner id", "Closed revenue"],
            vec!["(direct)", "1200"],
            vec!["P-1", "2499.5"],
            vec!["P-2", "-49.75"],
        ]
    );
    assert_eq!(
        workbook_sheet(book, 2),
        [vec!["CSAT (average)"], vec!["3.5"]]
    );

    // P-2's user opens it (shared with its role): each answer over P-2's rows only.
    let partner = session_of(&state, "partner").await;
    let r = send(&state, get(&format!("/api/dashboards/{id}"), &partner)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        answers(&r.body)[0],
        [vec![serde_json::json!("P-2"), serde_json::json!("-49.75")]]
    );
    assert_eq!(answers(&r.body)[1], [vec![serde_json::json!(2.0)]]);
    let book = bytes(format!("/export/dashboards/{id}"), partner.clone()).await;
    assert_eq!(
        workbook_sheet(book, 1),
        [vec!["Partner id", "Closed revenue"], vec!["P-2", "-49.75"]]
    );
    for other in others(&["P-2"]) {
        assert!(
            !r.body.contains(other),
            "the partner sees {other}: {}",
            r.body
        );
    }
    // Not the partner's to change; not shared with a channel manager's role.
    let partner_csrf = csrf_of(&state, &partner).await;
    let r = send(
        &state,
        post_form(
            &format!("{page}/questions"),
            &partner,
            format!("csrf={partner_csrf}&remove={revenue}"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(
        &state,
        post_form(
            &format!("{page}/delete"),
            &partner,
            format!("csrf={partner_csrf}"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let manager = session_of(&state, "manager").await;
    let r = send(&state, get(&page, &manager)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The owner removes a question, then deletes the dashboard; the questions stay.
    let r = send(
        &state,
        post_form(
            &format!("{page}/questions"),
            &exec,
            format!("csrf={csrf}&remove={csat}"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = send(&state, get(&format!("/api/dashboards/{id}"), &exec)).await;
    assert_eq!(answers(&r.body).len(), 1);
    let r = send(
        &state,
        post_form(&format!("{page}/delete"), &exec, format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = send(&state, get(&page, &exec)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(state.store.questions_for(&exec_user).unwrap().len(), 2);
}

/// An `AlertMaker` that keeps what it was asked, in place of the delivers crate's.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(String, prism_web::alerts::PageAlert)>>);

impl prism_web::alerts::AlertMaker for Recorder {
    fn add(
        &self,
        _: &AppState,
        owner: &prism_web::store::User,
        alert: &prism_web::alerts::PageAlert,
    ) -> Result<i64, String> {
        let mut asked = self.0.lock().unwrap();
        asked.push((owner.name.clone(), alert.clone()));
        Ok(asked.len() as i64)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_is_set_up_under_an_explore_answer_for_its_user_only() {
    let (_tmp, state) = app().await;
    let partner = session_of(&state, "partner").await;
    // The form is under an answer, with the question's metrics to watch.
    let page = send(
        &state,
        get("/explore?metrics=csat_avg&by=partner.partner_id", &partner),
    )
    .await;
    assert!(page.body.contains(r#"action="/alerts""#), "{}", page.body);
    assert!(
        page.body
            .contains(r#"<option value="csat_avg">CSAT (average)</option>"#)
    );
    let csrf = csrf_of(&state, &partner).await;
    let body = |csrf: &str, to: &str| {
        format!(
            "csrf={csrf}&name=unhappy&question=metrics%3Dcsat_avg%26by%3Dpartner.partner_id&kind=condition&metric=csat_avg&op=%3C&threshold=3&on=load&time_zone=UTC&to={to}"
        )
    };
    // A server without the delivers service says so.
    let r = send(&state, post_form("/alerts", &partner, body(&csrf, "inbox"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);

    let recorder = Arc::new(Recorder::default());
    state.set_alert_maker(recorder.clone());
    let r = send(&state, post_form("/alerts", &partner, body(&csrf, "inbox"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location, "/alerts");
    {
        let asked = recorder.0.lock().unwrap();
        assert_eq!(asked.len(), 1);
        let (owner, alert) = &asked[0];
        // The signed-in user owns it, whatever the form says.
        assert_eq!(owner, "partner");
        assert_eq!(alert.name, "unhappy");
        assert_eq!(
            alert.watch,
            prism_web::alerts::PageWatch::Condition {
                question: prism_engine::api::QueryRequest {
                    api_version: prism_engine::api::API_VERSION,
                    metrics: vec!["csat_avg".into()],
                    by: vec!["partner.partner_id".into()],
                    ..Default::default()
                },
                when: "csat_avg < 3".into(),
            }
        );
        assert_eq!((alert.on.as_str(), alert.to.as_str()), ("load", "inbox"));
    }
    let log = state.store.audit_log(5).unwrap();
    assert!(
        log.iter()
            .any(|(_, user, event, _)| user == "partner" && event == "add-alert"),
        "{log:?}"
    );
    // A dashboard sent on a schedule, from the dashboard's page: its id, nothing else asked.
    let r = send(
        &state,
        post_form(
            "/alerts",
            &partner,
            format!("csrf={csrf}&name=weekly&kind=dashboard&dashboard=7&on=0+7+*+*+MON&to=email"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        recorder.0.lock().unwrap()[1].1.watch,
        prism_web::alerts::PageWatch::Dashboard { dashboard: 7 }
    );
    let r = send(
        &state,
        post_form(
            "/alerts",
            &partner,
            format!("csrf={csrf}&name=weekly&kind=dashboard"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("needs the dashboard"), "{}", r.body);
    // Refused, nothing asked: a forged token, a webhook from a page, a form without a name.
    let r = send(
        &state,
        post_form("/alerts", &partner, body("forged", "inbox")),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &state,
        post_form(
            "/alerts",
            &partner,
            body(&csrf, "webhook%3Ahttps%3A%2F%2Fx.example"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("administrator"), "{}", r.body);
    let r = send(
        &state,
        post_form(
            "/alerts",
            &partner,
            body(&csrf, "inbox").replace("name=unhappy", "name="),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(recorder.0.lock().unwrap().len(), 2);
}

/// An `AlertMaker` with a bug: it panics.
struct Panics;

impl prism_web::alerts::AlertMaker for Panics {
    fn add(
        &self,
        _: &AppState,
        _: &prism_web::store::User,
        _: &prism_web::alerts::PageAlert,
    ) -> Result<i64, String> {
        panic!("index out of bounds in /secret/path");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_the_app_is_a_500_with_an_incident_id_and_the_server_goes_on() {
    let (_tmp, state) = app().await;
    state.set_alert_maker(Arc::new(Panics));
    let partner = session_of(&state, "partner").await;
    let csrf = csrf_of(&state, &partner).await;
    let r = send(
        &state,
        post_form(
            "/alerts",
            &partner,
            format!("csrf={csrf}&name=n&question=metrics%3Dcsat_avg&kind=report&to=inbox"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert!(r.body.contains("incident"), "{}", r.body);
    for inside in ["secret", "index out of bounds", "panicked"] {
        assert!(!r.body.contains(inside), "tells {inside}: {}", r.body);
    }
    // The same session goes on being served.
    let r = send(&state, get("/my/performance", &partner)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_is_deleted_by_its_owner_only() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let partner = session_of(&state, "partner").await;
    let id = state.store.alerts(Some("exec")).unwrap()[0].id;
    let r = send(&state, get("/api/alerts", &partner)).await;
    let listed: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(listed["alerts"].as_array().unwrap().len(), 0, "{}", r.body);
    let r = send(&state, get("/alerts", &exec)).await;
    assert!(
        r.body.contains(&format!("/alerts/{id}/delete")),
        "{}",
        r.body
    );

    let delete = format!("/alerts/{id}/delete");
    let partner_token = csrf_of(&state, &partner).await;
    let r = send(
        &state,
        post_form(&delete, &partner, format!("csrf={partner_token}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(state.store.alerts(None).unwrap().len(), 1);
    // Without the session's CSRF token, not even the owner deletes it.
    let r = send(&state, post_form(&delete, &exec, "csrf=forged".to_string())).await;
    assert_ne!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(state.store.alerts(None).unwrap().len(), 1);
    let token = csrf_of(&state, &exec).await;
    let r = send(&state, post_form(&delete, &exec, format!("csrf={token}"))).await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, "/alerts"),
        "{}",
        r.body
    );
    assert!(state.store.alerts(None).unwrap().is_empty());
}

/// The cells of a workbook's first sheet, read from its XML: text (shared strings) and
/// numbers, by row. A reader of our own, so that the test does not trust the writer.
fn workbook_cells(bytes: Vec<u8>) -> Vec<Vec<String>> {
    workbook_sheet(bytes, 1)
}

/// The cells of a workbook's sheet N (from 1), read from its XML.
fn workbook_sheet(bytes: Vec<u8>, n: usize) -> Vec<Vec<String>> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut read = |name: &str| {
        let mut text = String::new();
        zip.by_name(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let (sheet, shared) = (
        read(&format!("xl/worksheets/sheet{n}.xml")),
        read("xl/sharedStrings.xml"),
    );
    let strings: Vec<String> = shared
        .split("<t")
        .skip(1)
        .map(|t| {
            let t = &t[t.find('>').unwrap() + 1..];
            t[..t.find("</t>").unwrap()].replace("&amp;", "&")
        })
        .collect();
    let value = |cell: &str| -> String {
        let v = cell
            .split("<v>")
            .nth(1)
            .map_or("", |v| v.split("</v>").next().unwrap());
        if cell.contains("t=\"s\"") {
            strings[v.parse::<usize>().unwrap()].clone()
        } else {
            v.to_string()
        }
    };
    sheet
        .split("<row ")
        .skip(1)
        .map(|row| row.split("<c ").skip(1).map(value).collect())
        .collect()
}

/// Explore's answer as an Excel workbook holds the CSV's figures as typed cells: money and
/// counts as numbers (read back equal to the CSV's), text as text, under a header of labels.
#[tokio::test(flavor = "multi_thread")]
async fn an_explore_answer_downloads_as_a_workbook_with_the_csvs_figures() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    let ask = "/export/explore?metrics=closed_revenue,order_count&by=partner.partner_id&order=partner.partner_id";
    let csv = send(&state, get(ask, &exec)).await.body;
    let r = prism_web::router(state.clone())
        .oneshot(get(&format!("{ask}&format=xlsx"), &exec))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("spreadsheetml"),
        "{:?}",
        r.headers()
    );
    let rows = workbook_cells(r.into_body().collect().await.unwrap().to_bytes().to_vec());
    assert_eq!(rows[0], ["Partner id", "Closed revenue", "Orders"]);
    let lines: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len() - 1, lines.len(), "{csv}");
    for (cells, line) in rows[1..].iter().zip(&lines) {
        assert_eq!(cells[0], line[0]);
        for i in [1, 2] {
            let (got, expected): (f64, f64) = (cells[i].parse().unwrap(), line[i].parse().unwrap());
            assert_eq!(got, expected, "{line:?}");
        }
    }
    // P-2's credit stays negative money.
    assert!(lines.iter().any(|l| l == &["P-2", "-49.75", "1"]), "{csv}");
    let r = send(&state, get(&format!("{ask}&format=pdf"), &exec)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_program_pages_show_each_role_its_own_program() {
    let (_tmp, state) = app().await;
    let exec = session_of(&state, "exec").await;
    // The channel: six registrations, three approved of four judged.
    let r = send(&state, get("/api/registrations", &exec)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let tile = |json: &serde_json::Value, i: usize| {
        (
            json["panels"][0]["tiles"][i]["metric"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            json["panels"][0]["tiles"][i]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    assert_eq!(tile(&json, 0), ("registrations".into(), "6".into()));
    assert_eq!(
        tile(&json, 1),
        ("registration_approval_rate".into(), "75.0".into())
    );
    // In 2024-Q1, CA-1 was paid 3500 and sourced no opportunity of the quarter: flagged.
    let r = send(&state, get("/export/campaigns?period=2024-Q1", &exec)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ca1 = r.body.lines().find(|l| l.starts_with("CA-1,")).unwrap();
    assert!(ca1.ends_with(",yes"), "{ca1}");

    // P-2's user: its own two registrations, funds of 1600, no certified people at Q1's end.
    let partner = session_of(&state, "partner").await;
    let r = send(&state, get("/api/registrations", &partner)).await;
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(tile(&json, 0), ("registrations".into(), "2".into()));
    let r = send(&state, get("/api/campaigns", &partner)).await;
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(tile(&json, 0), ("mdf_requested".into(), "1600.00".into()));
    assert!(!r.body.contains("CA-1"), "{}", r.body);
    let r = send(&state, get("/api/enablement?period=2024-Q1", &partner)).await;
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(tile(&json, 0), ("certified_people".into(), "0".into()));
}

/// The campaign loop: P-2's user plans a campaign from the target list of PR-1 in its only
/// segment (C-2, Financial Services/Mid-Market, which bought PR-1 only directly, so it is
/// untapped for P-2), takes its target list and its campaigns.csv row to the CRM, and a later
/// load that brings the campaign, an order of PR-1 from P-2 to C-2 and an opportunity the CRM
/// attributes to the campaign shows them on its page. Nobody whose audience misses P-2 sees it.
#[tokio::test(flavor = "multi_thread")]
async fn a_partner_plans_a_campaign_from_a_target_list_and_sees_what_became_of_it() {
    let (tmp, state) = app().await;
    let partner = session_of(&state, "partner").await;
    let page = send(
        &state,
        get(
            "/my/potential?product=PR-1&segment=Financial%20Services%2FMid-Market",
            &partner,
        ),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Create campaign"), "{}", page.body);
    let csrf = csrf_of(&state, &partner).await;
    let r = send(
        &state,
        post_form(
            "/my/potential/campaign",
            &partner,
            format!(
                "csrf={csrf}&product=PR-1&segment=Financial+Services%2FMid-Market&name=Spring+push"
            ),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let path = r.location.clone();
    let id = path
        .strip_prefix("/campaigns/planned/")
        .unwrap()
        .to_string();
    assert!(id.starts_with("PRISM-"), "{id}");

    let api = |cookie: String| {
        let state = state.clone();
        let id = id.clone();
        async move {
            let r = send(
                &state,
                get(&format!("/api/campaigns/planned/{id}"), &cookie),
            )
            .await;
            (
                r.status,
                serde_json::from_str::<serde_json::Value>(&r.body).ok(),
            )
        }
    };
    let (status, json) = api(partner.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let json = json.unwrap();
    assert_eq!(json["campaign"]["name"], "Spring push");
    // P-2's newest order is the credit of 2024-03-05: results count from the day after.
    assert_eq!(json["campaign"]["plan"]["since"], "2024-03-06");
    assert_eq!(json["campaign"]["plan"]["targets"][0]["customer_id"], "C-2");
    assert_eq!(
        json["campaign"]["plan"]["targets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Fewer than 5 partners sold PR-1 in the segment: no adoption, no expected buyers.
    assert!(json["campaign"]["plan"]["expected_buyers"].is_null());
    assert_eq!(json["outcome"]["buyers"], 0);
    assert_eq!(json["outcome"]["sourced_opportunities"], 0);

    // The channel manager of P-1 and P-3 does not see it; the executive does.
    let manager = session_of(&state, "manager").await;
    for p in [
        path.clone(),
        format!("/api/campaigns/planned/{id}"),
        format!("/export/campaigns/planned/{id}"),
    ] {
        let r = send(&state, get(&p, &manager)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert!(
            !r.body.contains("Spring push") && !r.body.contains("C-2"),
            "{p}"
        );
    }
    let exec = session_of(&state, "exec").await;
    assert_eq!(api(exec.clone()).await.0, StatusCode::OK);
    // The lists: the partner's and the executive's name it, the other manager's does not.
    for (cookie, listed) in [(&partner, true), (&exec, true), (&manager, false)] {
        let r = send(&state, get("/campaigns/planned", cookie)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.contains(&id), listed, "{}", r.body);
        let r = send(&state, get("/api/campaigns/planned", cookie)).await;
        assert_eq!(r.body.contains(&id), listed, "{}", r.body);
    }

    let targets = send(
        &state,
        get(&format!("/export/campaigns/planned/{id}"), &partner),
    )
    .await;
    assert_eq!(
        targets.body.lines().nth(1).unwrap(),
        format!(
            "{id},Spring push,C-2,\"Bank of Foo, Inc.\",Financial Services,Mid-Market,EMEA,Security"
        )
    );
    let row = send(
        &state,
        get(
            &format!("/export/campaigns/planned/{id}/campaign"),
            &partner,
        ),
    )
    .await;
    let row = row.body.lines().nth(1).unwrap().to_string();
    assert_eq!(
        row,
        format!("{id},Spring push,P-2,PR-1,Financial Services,Mid-Market,,2024-03-06,2024-06-04")
    );

    // The CRM's next export: the campaign (from its row), P-2's sale of PR-1 to C-2 on
    // 2024-04-02, and two opportunities the campaign sourced: 800.00 won, 1500.00 open.
    let export = tmp.path().join("later");
    std::fs::create_dir_all(&export).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    for f in std::fs::read_dir(&fixture).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "csv") {
            std::fs::copy(&f, export.join(f.file_name().unwrap())).unwrap();
        }
    }
    let append = |file: &str, line: &str| {
        let path = export.join(file);
        let mut text = std::fs::read_to_string(&path).unwrap();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    };
    append("campaigns.csv", &row);
    append("orders.csv", "O-9,1,C-2,PR-1,P-2,2024-04-02,2,300.00,,");
    append(
        "opportunities.csv",
        &format!("OP-9,P-2,C-2,PR-1,Closed Won,800.00,100,2024-03-10,2024-04-01,no,{id}"),
    );
    append(
        "opportunities.csv",
        &format!("OP-10,P-2,C-2,PR-2,Proposal,1500.00,40,2024-03-12,2024-06-30,no,{id}"),
    );
    prism_warehouse::Warehouse::open(tmp.path().join("data"))
        .unwrap()
        .load(
            &prism_warehouse::LoadOptions {
                export_dir: export,
                mode: prism_warehouse::LoadMode::Upsert,
                quarantine: false,
                rollups: prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
            },
            &prism_warehouse::NoProgress,
        )
        .await
        .unwrap();
    let (status, json) = api(partner.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let json = json.unwrap();
    assert_eq!(json["outcome"]["buyers"], 1);
    assert_eq!(json["outcome"]["sourced_opportunities"], 2);
    assert_eq!(json["outcome"]["sourced_pipeline"], "1500.00");
    assert_eq!(json["outcome"]["sourced_won"], "800.00");
    let page = send(&state, get(&path, &partner)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Spring push") && page.body.contains("$800.00"),
        "{}",
        page.body
    );
}

/// An operator's monitoring needs no sign-in and holds no figure of the business: liveness,
/// readiness (not before a load), and Prometheus metrics that count requests by route pattern,
/// refused sign-ins, the engine's answers and the warehouse's tables.
#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics_for_an_operator() {
    let empty = tempfile::tempdir().unwrap();
    let unloaded =
        Arc::new(AppState::open(empty.path(), prism_model::Model::shipped(), false).unwrap());
    let r = send(&unloaded, get("/healthz", "")).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok\n"));
    let r = send(&unloaded, get("/readyz", "")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("nothing is loaded yet"), "{}", r.body);

    let (_tmp, state) = app().await;
    let r = send(&state, get("/readyz", "")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "ready: warehouse version 1\n")
    );
    let refused = sign_in(&state, "exec", "wrong").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let exec = session_of(&state, "exec").await;
    for _ in 0..2 {
        assert_eq!(
            send(&state, get("/api/partners/P-1", &exec)).await.status,
            StatusCode::OK
        );
    }
    let r = send(&state, get("/metrics", "")).await;
    assert_eq!(r.status, StatusCode::OK);
    let m = r.body;
    let value = |line: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{line}` in\n{m}"))
    };
    // Counted by the route's pattern: the partner asked for is not in the metrics.
    assert_eq!(
        value(
            "prism_http_requests_total{route=\"/api/partners/{id}\",method=\"GET\",status=\"200\"}"
        ),
        2.0
    );
    assert_eq!(value("prism_sign_in_failures_total"), 1.0);
    assert_eq!(value("prism_warehouse_version"), 1.0);
    assert_eq!(value("prism_warehouse_loads_total"), 1.0);
    // The page's questions read Parquet files through the store that keeps them.
    assert_eq!(
        value("prism_file_cache_budget_bytes"),
        1024.0 * 1024.0 * 1024.0
    );
    assert!(value("prism_file_cache_bytes") > 0.0, "{m}");
    assert!(
        value("prism_file_cache_read_bytes_total{from=\"storage\"}") > 0.0,
        "{m}"
    );
    // The fixture's order lines and partners, as its README counts them.
    assert_eq!(value("prism_warehouse_table_rows{table=\"orders\"}"), 4.0);
    assert_eq!(value("prism_warehouse_table_rows{table=\"partners\"}"), 3.0);
    assert_eq!(
        value("prism_warehouse_load_rows{table=\"orders\",rows=\"added\"}"),
        4.0
    );
    // The page's questions, answered from the rollups where they could be, each timed once
    // (the second request is the page kept for this version: no question asked again).
    let answers: f64 = ["rollup", "base", "cache"]
        .iter()
        .filter_map(|from| {
            m.lines().find_map(|l| {
                l.strip_prefix(&format!("prism_query_answers_total{{from=\"{from}\"}}"))?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .sum();
    assert!(
        value("prism_query_answers_total{from=\"rollup\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(value("prism_query_seconds_count"), answers, "{m}");
    for secret in ["P-1", "Acme", "Müller", "(direct)"] {
        assert!(!m.contains(secret), "the metrics name {secret}");
    }
}

/// A tool reads the JSON API and the exports with a user's API token instead of a session —
/// `Authorization: Bearer TOKEN` or `Basic NAME:TOKEN` — in that user's audience; a wrong
/// token, a token under another name, or a password instead of a token is refused, and no
/// form is taken from a token's request.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_token_reads_the_api_in_its_users_audience_and_posts_nothing() {
    let (_tmp, state) = app().await;
    let token = state.store.add_api_token("partner", "script").unwrap();
    let with = |auth: String, path: &str| {
        Request::get(path)
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    let basic = |name: &str, secret: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}"))
        )
    };
    let question = "/api/explore?metrics=closed_revenue&by=partner.partner_id";
    for auth in [format!("Bearer {token}"), basic("partner", &token)] {
        let r = send(&state, with(auth, question)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // The partner user's own revenue (P-2: one credit line of -49.75), nobody else's.
        assert!(r.body.contains("\"-49.75\""), "{}", r.body);
        for secret in others(&["P-2"]) {
            assert!(!r.body.contains(secret), "{secret} in {}", r.body);
        }
    }
    let r = send(
        &state,
        with(
            format!("Bearer {token}"),
            "/export/explore?metrics=closed_revenue",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("-49.75"), "{}", r.body);
    for auth in [
        format!("Bearer {token}x"),
        "Bearer prism_0000".to_string(),
        basic("exec", &token),
        basic("partner", "correct horse"),
        format!("Token {token}"),
    ] {
        let r = send(&state, with(auth.clone(), question)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth}");
    }
    // A form posted with a token is refused: it carries no session's CSRF token.
    let r = send(
        &state,
        Request::post("/questions")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("csrf=&name=x&question=metrics%3Dclosed_revenue"))
            .unwrap(),
    )
    .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    let partner = state.store.user("partner").unwrap().unwrap();
    assert!(state.store.questions_for(&partner).unwrap().is_empty());
}

/// The OpenAPI description served at `/api/openapi.json` names every route of the JSON API, and
/// no route the app does not have.
#[test]
fn the_openapi_description_has_every_api_route_and_no_other() {
    let doc: serde_json::Value = serde_json::from_str(prism_web::OPENAPI_JSON).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every method of every path: `GET /api/questions` and `POST /api/questions` are two.
    let described: std::collections::BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    let served: std::collections::BTreeSet<String> = prism_web::routes()
        .into_iter()
        .filter(|(_, path, _)| path.starts_with("/api/"))
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect();
    assert_eq!(
        served.difference(&described).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "routes missing from docs/openapi.json"
    );
    assert_eq!(
        described.difference(&served).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "docs/openapi.json describes routes the app does not have"
    );
    assert!(served.len() >= 20, "{served:?}");
}

/// A dashboard's owner renames it; whoever may open it makes a private copy of their own, with
/// the questions they may open — never another user's private question — and nobody else
/// renames it.
#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_is_renamed_by_its_owner_and_copied_by_whoever_may_open_it() {
    let (_tmp, state) = app().await;
    let exec_user = state.store.user("exec").unwrap().unwrap();
    let partner_user = state.store.user("partner").unwrap().unwrap();
    let (shared, private) = shared_and_private_questions(&state, &exec_user);
    let id = state
        .store
        .add_dashboard(&exec_user, "Channel", "partner_manager")
        .unwrap();
    for q in [shared, private] {
        assert!(state.store.add_to_dashboard(&exec_user, id, q).unwrap());
    }
    let edit = |cookie: &str, csrf: &str, what: &str| {
        post_form(
            &format!("/dashboards/{id}/questions"),
            cookie,
            format!("csrf={csrf}&{what}"),
        )
    };
    let exec = session_of(&state, "exec").await;
    let exec_csrf = csrf_of(&state, &exec).await;
    let partner = session_of(&state, "partner").await;
    let partner_csrf = csrf_of(&state, &partner).await;

    let r = send(&state, edit(&exec, &exec_csrf, "rename=Channel+review")).await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, format!("/dashboards/{id}").as_str())
    );
    let name = |user| state.store.dashboard(user, id).unwrap().unwrap().name;
    assert_eq!(name(&exec_user), "Channel review");
    // Not the owner: refused, the name unchanged.
    let r = send(&state, edit(&partner, &partner_csrf, "rename=Mine+now")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(name(&exec_user), "Channel review");
    // An empty name is refused, nothing changed.
    let r = send(&state, edit(&exec, &exec_csrf, "rename=+")).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(name(&exec_user), "Channel review");

    // The partner's user copies it: a private dashboard of its own, with the shared question
    // only.
    let r = send(&state, edit(&partner, &partner_csrf, "duplicate=My+copy")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let copy: i64 = r
        .location
        .trim_start_matches("/dashboards/")
        .parse()
        .unwrap();
    assert_ne!(copy, id);
    let d = state.store.dashboard(&partner_user, copy).unwrap().unwrap();
    assert_eq!(
        (d.name.as_str(), d.owner.as_str(), d.shared_with.as_str()),
        ("My copy", "partner", "private")
    );
    let questions: Vec<i64> = d.questions.iter().map(|q| q.id).collect();
    assert_eq!(questions, vec![shared]);
    // The copy is the partner's own: the executive cannot open it, the original is unchanged.
    assert!(state.store.dashboard(&exec_user, copy).unwrap().is_none());
    let original = state.store.dashboard(&exec_user, id).unwrap().unwrap();
    assert_eq!(original.questions.len(), 2);
    // A dashboard one may not open cannot be copied.
    let mine = state
        .store
        .add_dashboard(&exec_user, "Private", "private")
        .unwrap();
    let r = send(
        &state,
        post_form(
            &format!("/dashboards/{mine}/questions"),
            &partner,
            format!("csrf={partner_csrf}&duplicate=Stolen"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(state.store.dashboards_for(&partner_user).unwrap().len(), 2);
}

/// The saved questions list offers each question to the user's own dashboards: added there from
/// the list, never to another user's dashboard, and a question the user may not open is not
/// added anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_saved_question_is_added_to_ones_own_dashboard_from_the_list() {
    let (_tmp, state) = app().await;
    let exec_user = state.store.user("exec").unwrap().unwrap();
    let manager_user = state.store.user("manager").unwrap().unwrap();
    let (shared, private) = shared_and_private_questions(&state, &exec_user);
    let own = state
        .store
        .add_dashboard(&manager_user, "Review", "private")
        .unwrap();
    let others = state
        .store
        .add_dashboard(&exec_user, "Exec's", "everyone")
        .unwrap();
    let manager = session_of(&state, "manager").await;
    let csrf = csrf_of(&state, &manager).await;
    // The list offers the manager's own dashboard, not the executive's shared one.
    let list = send(&state, get("/questions", &manager)).await;
    assert!(
        list.body
            .contains(&format!("action=\"/questions/{shared}/dashboard\""))
    );
    assert!(list.body.contains(">Review</option>"), "{}", list.body);
    assert!(
        !list.body.contains(">Exec&#x27;s</option>") && !list.body.contains(">Exec's</option>")
    );
    let add = |question: i64, dashboard: i64| {
        post_form(
            &format!("/questions/{question}/dashboard"),
            &manager,
            format!("csrf={csrf}&dashboard={dashboard}"),
        )
    };
    let r = send(&state, add(shared, own)).await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, format!("/dashboards/{own}").as_str())
    );
    let questions = |user, id| -> Vec<i64> {
        state
            .store
            .dashboard(user, id)
            .unwrap()
            .unwrap()
            .questions
            .iter()
            .map(|q| q.id)
            .collect()
    };
    assert_eq!(questions(&manager_user, own), vec![shared]);
    // Another user's dashboard: refused, unchanged.
    let r = send(&state, add(shared, others)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(questions(&exec_user, others).is_empty());
    // A question the manager may not open: refused, unchanged.
    let r = send(&state, add(private, own)).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(questions(&manager_user, own), vec![shared]);
}

/// A user makes a dashboard they may open their home page: signing in (and `/`) opens it; once
/// it is deleted, the role's home page again.
#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_can_be_ones_home_page() {
    let (_tmp, state) = app().await;
    let exec_user = state.store.user("exec").unwrap().unwrap();
    let shared = state
        .store
        .add_dashboard(&exec_user, "For partners", "partner_manager")
        .unwrap();
    let private = state
        .store
        .add_dashboard(&exec_user, "Exec only", "private")
        .unwrap();
    let partner = session_of(&state, "partner").await;
    let csrf = csrf_of(&state, &partner).await;
    let home = |id: i64, how: &str| {
        post_form(
            &format!("/dashboards/{id}/questions"),
            &partner,
            format!("csrf={csrf}&home={how}"),
        )
    };
    let lands = |r: Reply| r.location;
    // Before: the role's home page.
    let before = lands(sign_in(&state, "partner", "correct horse").await);
    assert_eq!(before, "/my/performance");
    // A dashboard the partner's user may not open cannot be its home.
    assert_eq!(
        send(&state, home(private, "set")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&state, home(shared, "set")).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        lands(sign_in(&state, "partner", "correct horse").await),
        format!("/dashboards/{shared}")
    );
    assert_eq!(
        send(&state, get("/", &partner)).await.location,
        format!("/dashboards/{shared}")
    );
    let page = send(&state, get(&format!("/dashboards/{shared}"), &partner)).await;
    assert!(
        page.body.contains("name=\"home\" value=\"clear\""),
        "{}",
        page.body
    );
    // Its owner deletes it: the role's home page again.
    assert!(state.store.delete_dashboard(&exec_user, shared).unwrap());
    assert_eq!(
        lands(sign_in(&state, "partner", "correct horse").await),
        "/my/performance"
    );
}

/// Two saved questions of the executive's: revenue shared with everyone, CSAT private.
fn shared_and_private_questions(
    state: &Arc<AppState>,
    exec: &prism_web::store::User,
) -> (i64, i64) {
    let save = |name: &str, question: &str, shared_with: &str| {
        state
            .store
            .save_question(exec, name, "", question, shared_with)
            .unwrap()
    };
    (
        save("Revenue", "metrics=closed_revenue", "everyone"),
        save("Mine", "metrics=csat_avg", "private"),
    )
}

/// A request to the JSON API's changes, signed with an API token.
fn api_call(method: &str, path: &str, token: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A script does through the JSON API what the pages do with saved questions: create one,
/// read and run it, change it, copy it, delete it — each only where the page would let its
/// user, and every refusal says why and keeps nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_saved_question_is_created_changed_copied_and_deleted_through_the_api() {
    let (_tmp, state) = app().await;
    let exec = state.store.add_api_token("exec", "script").unwrap();
    let partner = state.store.add_api_token("partner", "script").unwrap();
    let manager = state.store.add_api_token("manager", "script").unwrap();
    let exec_user = state.store.user("exec").unwrap().unwrap();
    let json = |r: &Reply| serde_json::from_str::<serde_json::Value>(&r.body).unwrap();

    // Created from the engine's versioned request, shared with partner managers.
    let r = send(
        &state,
        api_call(
            "POST",
            "/api/questions",
            &exec,
            r#"{"name": " Revenue by partner ", "description": "who brings it", "shared_with": "partner_manager",
                "query": {"api_version": 1, "metrics": ["closed_revenue"], "by": ["partner.partner_id"], "order": ["partner.partner_id"]},
                "chart": "pie"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let created = json(&r);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(r.location, format!("/api/questions/{id}"));
    assert_eq!(created["name"], "Revenue by partner");
    assert_eq!(created["owner"], "exec");
    assert_eq!(
        created["question"],
        "metrics=closed_revenue&by=partner.partner_id&order=partner.partner_id&chart=pie"
    );
    // Run by the partner's user: its own row (P-2's credit of -49.75), nobody else's.
    let run = send(
        &state,
        Request::get(format!("/api/questions/{id}"))
            .header(header::AUTHORIZATION, format!("Bearer {partner}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    assert_eq!(
        json(&run)["answer"]["rows"],
        serde_json::json!([{"partner.partner_id": "P-2", "closed_revenue": "-49.75"}])
    );

    // Refusals, each with its reason, nothing kept or changed.
    let before = state.store.questions_for(&exec_user).unwrap();
    let refused: [(&str, String, &str, &str, StatusCode, &str); 12] = [
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"name": "x", "question": "metrics=closed_revenu"}"#,
            StatusCode::BAD_REQUEST,
            "closed_revenu",
        ),
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"name": "x", "question": "metrics=closed_revenue&by=service_request.priority"}"#,
            StatusCode::BAD_REQUEST,
            "service_request",
        ),
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"name": "x", "question": "by=partner.tier"}"#,
            StatusCode::BAD_REQUEST,
            "no metric",
        ),
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"name": "x", "question": "metrics=closed_revenue&period=2024-Q5"}"#,
            StatusCode::BAD_REQUEST,
            "2024-Q5",
        ),
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"name": "x", "question": "metrics=closed_revenue", "query": {"metrics": ["closed_revenue"]}}"#,
            StatusCode::BAD_REQUEST,
            "once",
        ),
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"nmae": "x", "question": "metrics=closed_revenue"}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `nmae`",
        ),
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"name": "x", "query": {"api_version": 2, "metrics": ["closed_revenue"]}}"#,
            StatusCode::BAD_REQUEST,
            "api_version 2",
        ),
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"name": " ", "question": "metrics=closed_revenue"}"#,
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            "POST",
            "/api/questions".into(),
            exec.as_str(),
            r#"{"name": "x", "question": "metrics=closed_revenue", "shared_with": "friends"}"#,
            StatusCode::BAD_REQUEST,
            "friends",
        ),
        // Not the owner, though it may open it: 403 saying whose it is.
        (
            "PATCH",
            format!("/api/questions/{id}"),
            partner.as_str(),
            r#"{"name": "Mine now"}"#,
            StatusCode::FORBIDDEN,
            "exec's",
        ),
        (
            "DELETE",
            format!("/api/questions/{id}"),
            partner.as_str(),
            "",
            StatusCode::FORBIDDEN,
            "exec's",
        ),
        // Not shared with the channel manager: as absent as one that never was.
        (
            "DELETE",
            format!("/api/questions/{id}"),
            manager.as_str(),
            "",
            StatusCode::NOT_FOUND,
            "no saved question",
        ),
    ];
    for (method, path, token, body, status, says) in &refused {
        let r = send(&state, api_call(method, path, token, body)).await;
        assert_eq!(r.status, *status, "{method} {path} {body}: {}", r.body);
        let error = json(&r)["error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{method} {path} {body}: {error}");
        assert_eq!(state.store.questions_for(&exec_user).unwrap(), before);
    }
    // A form is not JSON: refused, whatever it holds.
    let r = send(
        &state,
        Request::post("/api/questions")
            .header(header::AUTHORIZATION, format!("Bearer {exec}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("name=x&question=metrics%3Dclosed_revenue"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("application/json"), "{}", r.body);
    // Signed in with a browser session but without the session's CSRF token: refused.
    let session = session_of(&state, "exec").await;
    let from_browser = |csrf: Option<&str>| {
        let mut b = Request::post("/api/questions")
            .header(header::COOKIE, &session)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = csrf {
            b = b.header("x-csrf-token", c);
        }
        b.body(Body::from(
            r#"{"name": "From the page", "question": "metrics=csat_avg"}"#,
        ))
        .unwrap()
    };
    for forged in [None, Some("forged")] {
        let r = send(&state, from_browser(forged)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert_eq!(state.store.questions_for(&exec_user).unwrap(), before);
    }
    let csrf = csrf_of(&state, &session).await;
    let r = send(&state, from_browser(Some(&csrf))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let from_page = json(&r)["id"].as_i64().unwrap();

    // The partner's user keeps a private copy of its own, and changes it as it likes.
    let r = send(
        &state,
        api_call("POST", &format!("/api/questions/{id}/copy"), &partner, ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let copy = json(&r);
    let copy_id = copy["id"].as_i64().unwrap();
    assert_eq!(
        (&copy["name"], &copy["owner"], &copy["shared_with"]),
        (
            &serde_json::json!("Copy of Revenue by partner"),
            &serde_json::json!("partner"),
            &serde_json::json!("private")
        )
    );
    let r = send(
        &state,
        api_call(
            "PATCH",
            &format!("/api/questions/{copy_id}"),
            &partner,
            r#"{"name": "My revenue by month", "question": "metrics=closed_revenue&by=time.month", "chart": "line"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let changed = json(&r);
    assert_eq!(changed["name"], "My revenue by month");
    assert_eq!(changed["description"], "who brings it");
    assert_eq!(
        changed["question"],
        "metrics=closed_revenue&by=time.month&chart=line"
    );
    // A chart alone changes the chart of the question as it is.
    let r = send(
        &state,
        api_call(
            "PATCH",
            &format!("/api/questions/{copy_id}"),
            &partner,
            r#"{"chart": "area"}"#,
        ),
    )
    .await;
    assert_eq!(
        json(&r)["question"],
        "metrics=closed_revenue&by=time.month&chart=area"
    );
    // The original is unchanged by its copy.
    let original = state.store.question_for(&exec_user, id).unwrap().unwrap();
    assert_eq!(original.name, "Revenue by partner");

    // Its owner unshares it: the partner's user can no longer open, run or copy it.
    let r = send(
        &state,
        api_call(
            "PATCH",
            &format!("/api/questions/{id}"),
            &exec,
            r#"{"shared_with": "private"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (method, path) in [
        ("GET", format!("/api/questions/{id}")),
        ("POST", format!("/api/questions/{id}/copy")),
        ("PATCH", format!("/api/questions/{id}")),
    ] {
        let r = send(&state, api_call(method, &path, &partner, "{}")).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.body
        );
    }
    // An administrator may change anyone's.
    let admin = state.store.add_api_token("admin", "script").unwrap();
    let r = send(
        &state,
        api_call(
            "PATCH",
            &format!("/api/questions/{from_page}"),
            &admin,
            r#"{"description": "tidied by the administrator"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Deleted by its owner: gone for everyone.
    for q in [id, from_page] {
        let r = send(
            &state,
            api_call("DELETE", &format!("/api/questions/{q}"), &exec, ""),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    assert!(state.store.questions_for(&exec_user).unwrap().is_empty());
    let events: Vec<String> = state
        .store
        .audit_log(50)
        .unwrap()
        .into_iter()
        .map(|(_, _, event, _)| event)
        .collect();
    for event in [
        "save-question",
        "copy-question",
        "change-question",
        "delete-question",
    ] {
        assert!(events.iter().any(|e| e == event), "{event} in {events:?}");
    }
}

/// The saved questions list: whoever may open a question keeps a private copy; its owner
/// renames, describes and shares it there, and re-asks it from Explore; nobody else does.
#[tokio::test(flavor = "multi_thread")]
async fn a_saved_question_is_renamed_shared_and_re_asked_by_its_owner_and_copied_by_others() {
    let (_tmp, state) = app().await;
    let exec_user = state.store.user("exec").unwrap().unwrap();
    let partner_user = state.store.user("partner").unwrap().unwrap();
    let (shared, _private) = shared_and_private_questions(&state, &exec_user);
    let exec = session_of(&state, "exec").await;
    let exec_csrf = csrf_of(&state, &exec).await;
    let partner = session_of(&state, "partner").await;
    let partner_csrf = csrf_of(&state, &partner).await;
    let edit = |cookie: &str, csrf: &str, what: &str| {
        post_form(
            &format!("/questions/{shared}/edit"),
            cookie,
            format!("csrf={csrf}&{what}"),
        )
    };
    let list = send(&state, get("/questions", &partner)).await;
    assert!(list.body.contains("class=\"inline copy-question\""));
    // The partner's user may not edit the executive's question: no edit form for it.
    assert!(
        !list.body.contains("class=\"edit-question\""),
        "{}",
        list.body
    );
    let r = send(&state, edit(&partner, &partner_csrf, "name=Mine+now")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&state, edit(&exec, "forged", "name=Forged")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let original = || {
        state
            .store
            .question_for(&exec_user, shared)
            .unwrap()
            .unwrap()
    };
    assert_eq!(original().name, "Revenue");

    let r = send(
        &state,
        edit(
            &exec,
            &exec_csrf,
            "name=Revenue+by+partner&description=the+20+%25&shared_with=partner_manager",
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, "/questions")
    );
    let q = original();
    assert_eq!(
        (
            q.name.as_str(),
            q.description.as_str(),
            q.shared_with.as_str()
        ),
        ("Revenue by partner", "the 20 %", "partner_manager")
    );
    // Opened, Explore offers its owner to save changes over it; a question asked there now
    // replaces it.
    let open = send(&state, get(&format!("/questions/{shared}"), &exec)).await;
    assert_eq!(open.status, StatusCode::SEE_OTHER);
    let page = send(&state, get(&open.location, &exec)).await;
    assert!(
        page.body.contains("Save changes to “Revenue by partner”"),
        "{}",
        page.body
    );
    let page = send(&state, get(&open.location, &partner)).await;
    assert!(!page.body.contains("Save changes to"));
    let r = send(
        &state,
        edit(
            &exec,
            &exec_csrf,
            &format!(
                "question={}",
                url_encode("metrics=closed_revenue,win_rate&by=partner.tier")
            ),
        ),
    )
    .await;
    assert_eq!(r.location, format!("/questions/{shared}"));
    assert_eq!(
        original().question,
        "metrics=closed_revenue,win_rate&by=partner.tier"
    );
    // A question that cannot be asked does not replace it.
    let r = send(
        &state,
        edit(
            &exec,
            &exec_csrf,
            &format!("question={}", url_encode("metrics=nope")),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        original().question,
        "metrics=closed_revenue,win_rate&by=partner.tier"
    );

    // The partner's user copies it: private, its own, the original unchanged.
    let r = send(&state, edit(&partner, &partner_csrf, "duplicate=My+copy")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mine: Vec<_> = state
        .store
        .questions_for(&partner_user)
        .unwrap()
        .into_iter()
        .filter(|q| q.owner == "partner")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (
            mine[0].name.as_str(),
            mine[0].shared_with.as_str(),
            mine[0].question.as_str()
        ),
        ("My copy", "private", original().question.as_str())
    );
    assert_eq!(original().name, "Revenue by partner");
}

/// A dashboard's owner sizes each tile and moves it earlier or later; the page and the API
/// show the tiles so, a copy keeps them so, and nobody else changes them.
#[tokio::test(flavor = "multi_thread")]
async fn a_dashboards_tiles_are_sized_and_placed_by_its_owner() {
    let (_tmp, state) = app().await;
    let exec_user = state.store.user("exec").unwrap().unwrap();
    let partner_user = state.store.user("partner").unwrap().unwrap();
    let save = |name: &str, question: &str| {
        state
            .store
            .save_question(&exec_user, name, "", question, "everyone")
            .unwrap()
    };
    let (revenue, csat, pipeline) = (
        save("Revenue", "metrics=closed_revenue"),
        save("CSAT", "metrics=csat_avg"),
        save("Pipeline", "metrics=open_pipeline"),
    );
    let id = state
        .store
        .add_dashboard(&exec_user, "Channel", "everyone")
        .unwrap();
    for q in [revenue, csat, pipeline] {
        assert!(state.store.add_to_dashboard(&exec_user, id, q).unwrap());
    }
    let exec = session_of(&state, "exec").await;
    let exec_csrf = csrf_of(&state, &exec).await;
    let partner = session_of(&state, "partner").await;
    let partner_csrf = csrf_of(&state, &partner).await;
    let edit = |cookie: &str, csrf: &str, what: &str| {
        post_form(
            &format!("/dashboards/{id}/questions"),
            cookie,
            format!("csrf={csrf}&{what}"),
        )
    };
    let tiles = |user| {
        let d = state.store.dashboard(user, id).unwrap().unwrap();
        d.questions
            .iter()
            .zip(&d.sizes)
            .map(|(q, s)| (q.id, s.name()))
            .collect::<Vec<_>>()
    };
    // New tiles are medium: two side by side.
    assert_eq!(
        tiles(&exec_user),
        vec![(revenue, "medium"), (csat, "medium"), (pipeline, "medium")]
    );
    let r = send(
        &state,
        edit(&exec, &exec_csrf, &format!("tile={revenue}&size=full")),
    )
    .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, format!("/dashboards/{id}").as_str())
    );
    for _ in 0..3 {
        // Two moves bring the pipeline first; the third finds it there already.
        let r = send(
            &state,
            edit(&exec, &exec_csrf, &format!("tile={pipeline}&move=earlier")),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }
    let r = send(
        &state,
        edit(&exec, &exec_csrf, &format!("tile={csat}&size=small")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let expected = vec![(pipeline, "medium"), (revenue, "full"), (csat, "small")];
    assert_eq!(tiles(&exec_user), expected);
    // The page draws them in that order and width; the API gives each answer its size.
    let page = send(&state, get(&format!("/dashboards/{id}"), &exec)).await;
    let drawn: Vec<usize> = expected
        .iter()
        .map(|(q, size)| {
            page.body
                .find(&format!(
                    "class=\"panel chart tile-{size}\" id=\"question-{q}\""
                ))
                .unwrap_or_else(|| panic!("tile {q} {size}:\n{}", page.body))
        })
        .collect();
    assert!(drawn.windows(2).all(|w| w[0] < w[1]), "{drawn:?}");
    let api = send(&state, get(&format!("/api/dashboards/{id}"), &exec)).await;
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    let sizes: Vec<(i64, String)> = json["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["question_id"].as_i64().unwrap(),
                a["size"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        expected
            .iter()
            .map(|(q, s)| (*q, s.to_string()))
            .collect::<Vec<_>>()
    );
    // A removed tile leaves the others in order; moving past the end keeps it last.
    let r = send(
        &state,
        edit(&exec, &exec_csrf, &format!("remove={revenue}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = send(
        &state,
        edit(&exec, &exec_csrf, &format!("tile={csat}&move=later")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = send(
        &state,
        edit(&exec, &exec_csrf, &format!("tile={pipeline}&move=later")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let expected = vec![(csat, "small"), (pipeline, "medium")];
    assert_eq!(tiles(&exec_user), expected);

    // Refused, nothing changed: another user's dashboard, an unknown size, two changes at once,
    // a question not on the dashboard.
    for (cookie, csrf, what, status) in [
        (
            &partner,
            &partner_csrf,
            format!("tile={csat}&size=full"),
            StatusCode::NOT_FOUND,
        ),
        (
            &partner,
            &partner_csrf,
            format!("tile={csat}&move=later"),
            StatusCode::NOT_FOUND,
        ),
        (
            &exec,
            &exec_csrf,
            format!("tile={csat}&size=huge"),
            StatusCode::BAD_REQUEST,
        ),
        (
            &exec,
            &exec_csrf,
            format!("tile={csat}&size=full&move=later"),
            StatusCode::BAD_REQUEST,
        ),
        (
            &exec,
            &exec_csrf,
            format!("tile={csat}&move=sideways"),
            StatusCode::BAD_REQUEST,
        ),
        (
            &exec,
            &exec_csrf,
            format!("tile={revenue}&size=full"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = send(&state, edit(cookie, csrf, &what)).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_eq!(tiles(&exec_user), expected, "{what}");
    }
    let r = send(&state, edit(&exec, &exec_csrf, "tile=1&size=huge")).await;
    assert!(
        r.body.contains("small, medium, large or full"),
        "{}",
        r.body
    );
    // The partner's user sees no controls on it, and its copy keeps the tiles as they are.
    let page = send(&state, get(&format!("/dashboards/{id}"), &partner)).await;
    assert!(!page.body.contains("class=\"inline size-tile\""));
    let r = send(&state, edit(&partner, &partner_csrf, "duplicate=Mine")).await;
    let copy: i64 = r
        .location
        .trim_start_matches("/dashboards/")
        .parse()
        .unwrap();
    let d = state.store.dashboard(&partner_user, copy).unwrap().unwrap();
    let copied: Vec<(i64, &str)> = d
        .questions
        .iter()
        .zip(&d.sizes)
        .map(|(q, s)| (q.id, s.name()))
        .collect();
    assert_eq!(copied, expected);
}

/// An administrator hides a shipped page from a role: it leaves the role's navigation and is
/// refused to the role as a page, as JSON and as CSV, while other roles keep it; a hidden home
/// page sends the role's users to the first page they still have; only an administrator
/// decides, and never to hide Administration.
#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_hides_a_shipped_page_from_a_role() {
    let (_tmp, state) = app().await;
    let admin = session_of(&state, "admin").await;
    let admin_csrf = csrf_of(&state, &admin).await;
    let manager = session_of(&state, "manager").await;
    let manager_csrf = csrf_of(&state, &manager).await;
    let exec = session_of(&state, "exec").await;
    let set = |cookie: &str, csrf: &str, role: &str, page: &str, action: &str| {
        post_form(
            "/admin/pages",
            cookie,
            format!("csrf={csrf}&role={role}&page={page}&action={action}"),
        )
    };
    let hidden = |role| state.store.hidden_pages(role).unwrap();
    // Only an administrator sees the table and changes it.
    assert_eq!(
        send(&state, get("/admin/pages", &manager)).await.status,
        StatusCode::FORBIDDEN
    );
    let r = send(
        &state,
        set(
            &manager,
            &manager_csrf,
            "channel_manager",
            "service",
            "hide",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &state,
        set(&admin, "forged", "channel_manager", "service", "hide"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(hidden(Role::ChannelManager).is_empty());

    let r = send(
        &state,
        set(&admin, &admin_csrf, "channel_manager", "service", "hide"),
    )
    .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, "/admin/pages")
    );
    let table = send(&state, get("/admin/pages", &admin)).await;
    assert!(table.body.contains("Hidden — show"), "{}", table.body);
    // The manager's navigation has no Service; the page, its JSON and its CSV are refused.
    let overview = send(&state, get("/overview", &manager)).await;
    assert!(!overview.body.contains("href=\"/service\""));
    assert!(overview.body.contains("href=\"/sales\""));
    for path in ["/service", "/api/service", "/export/service"] {
        let r = send(&state, get(path, &manager)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(r.body.contains("hidden"), "{path}: {}", r.body);
    }
    // The executive keeps it.
    assert_eq!(
        send(&state, get("/service", &exec)).await.status,
        StatusCode::OK
    );
    // The manager's home page hidden: signing in lands on the first page it still has.
    let r = send(
        &state,
        set(&admin, &admin_csrf, "channel_manager", "overview", "hide"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let landed = sign_in(&state, "manager", "correct horse").await.location;
    assert_eq!(landed, "/segmentation");

    // Refused, nothing changed: Administration, a page not the role's, no such page or role,
    // no such action.
    let before = hidden(Role::ChannelManager);
    for (role, page, action) in [
        ("admin", "admin", "hide"),
        ("channel_manager", "my-performance", "hide"),
        ("channel_manager", "partner", "hide"),
        ("channel_manager", "nope", "hide"),
        ("nobody", "service", "hide"),
        ("channel_manager", "sales", "maybe"),
    ] {
        let r = send(&state, set(&admin, &admin_csrf, role, page, action)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{role} {page} {action}");
        assert_eq!(hidden(Role::ChannelManager), before);
        assert!(hidden(Role::Admin).is_empty());
    }
    // Shown again: served again.
    let r = send(
        &state,
        set(&admin, &admin_csrf, "channel_manager", "service", "show"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let manager = session_of(&state, "manager").await;
    assert_eq!(
        send(&state, get("/service", &manager)).await.status,
        StatusCode::OK
    );
    let events: Vec<String> = state
        .store
        .audit_log(50)
        .unwrap()
        .into_iter()
        .map(|(_, _, e, d)| format!("{e} {d}"))
        .collect();
    assert!(events.contains(&"hide-page service for channel_manager".to_string()));
    assert!(events.contains(&"show-page service for channel_manager".to_string()));
}

/// A partner's user sees its rates and averages beside the channel's under an Explore answer,
/// under the benchmark's rules: a total is never benchmarked, a channel figure over fewer than
/// 5 partners is withheld, and over anything but a calendar quarter none is given. Brand-owner
/// users, who see every partner, get no such panel.
#[tokio::test(flavor = "multi_thread")]
async fn a_partners_explore_answer_is_set_against_the_channel_under_the_benchmarks_rules() {
    let (_tmp, state) = app().await;
    let partner = session_of(&state, "partner").await;
    let exec = session_of(&state, "exec").await;
    let panel = |body: &str| -> Option<String> {
        let start = body.find("id=\"benchmark\"")?;
        let end = body[start..].find("</section>").unwrap() + start;
        Some(body[start..end].to_string())
    };
    let question = "/explore?metrics=win_rate,closed_revenue&by=time.month&period=2024-Q1";
    let r = send(&state, get(question, &partner)).await;
    assert_eq!(r.status, StatusCode::OK);
    let b = panel(&r.body).unwrap_or_else(|| panic!("no benchmark:\n{}", r.body));
    assert!(
        b.contains("<td>Win rate</td><td class=\"num\" data-value=\"0.0\""),
        "{b}"
    );
    assert!(
        b.contains("title=\"withheld: fewer than 5 partners contribute to it"),
        "{b}"
    );
    assert!(
        !b.contains("Closed revenue"),
        "a total is never benchmarked: {b}"
    );
    // fixtures/tiny: P-2's only closed opportunity in 2024-Q1, OP-3, was lost: 0 % won; no
    // other partner closed one then, so the channel figure (1 partner) is withheld.
    assert!(b.contains("fewer than 5 partners"), "{b}");
    for secret in others(&["P-2"]) {
        assert!(!b.contains(secret), "{secret} in {b}");
    }
    // Over a year: no channel figure at all, and why.
    let r = send(
        &state,
        get(
            "/explore?metrics=win_rate&by=time.month&period=2024",
            &partner,
        ),
    )
    .await;
    let b = panel(&r.body).unwrap();
    assert!(b.contains("one calendar quarter at a time"), "{b}");
    // Totals only: nothing to benchmark. The executive: no panel.
    let r = send(
        &state,
        get("/explore?metrics=closed_revenue&period=2024-Q1", &partner),
    )
    .await;
    assert!(panel(&r.body).is_none());
    let r = send(&state, get(question, &exec)).await;
    assert!(panel(&r.body).is_none());
}
