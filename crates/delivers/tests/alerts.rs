//! Alerts end to end: loads that plant a fall of one partner's revenue, a real SMTP
//! conversation on loopback, a webhook receiver that fails before it succeeds or never
//! answers, an inbox, and a schedule driven by a clock the test holds. Expected figures are
//! computed by hand from fixtures/tiny (P-1 closed 2 499.50 in 2024-Q1; P-2's one survey
//! scored 2, P-1's 5).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hmac::{KeyInit, Mac};
use prism_delivers::{AlertRequest, Condition, Delivers, Outbound, Schedule, Smtp, Watch};
use prism_engine::api::{API_VERSION, QueryRequest};
use prism_web::{AppState, Role};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct Fixture {
    _tmp: tempfile::TempDir,
    export: PathBuf,
    data: PathBuf,
    app: Arc<AppState>,
}

async fn load(data: &Path, export: &Path) {
    prism_warehouse::Warehouse::open(data)
        .unwrap()
        .load(
            &prism_warehouse::LoadOptions {
                export_dir: export.to_path_buf(),
                mode: prism_warehouse::LoadMode::Upsert,
                quarantine: false,
                rollups: prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
            },
            &prism_warehouse::NoProgress,
        )
        .await
        .unwrap();
}

/// fixtures/tiny loaded, an executive and P-2's partner manager with e-mail addresses.
async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    for f in std::fs::read_dir(&tiny).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "csv") {
            std::fs::copy(&f, export.join(f.file_name().unwrap())).unwrap();
        }
    }
    let data = tmp.path().join("data");
    load(&data, &export).await;
    let app = Arc::new(AppState::open(&data, prism_model::Model::shipped(), false).unwrap());
    app.store
        .add_user("exec", Role::ChannelExecutive, &[], "a long password")
        .unwrap();
    app.store.set_email("exec", "exec@brand.example").unwrap();
    app.store
        .add_user(
            "partner",
            Role::PartnerManager,
            &["P-2".into()],
            "a long password",
        )
        .unwrap();
    app.store.set_email("partner", "ops@p2.example").unwrap();
    Fixture {
        _tmp: tmp,
        export,
        data,
        app,
    }
}

impl Fixture {
    /// Writes the export's orders again: the fixture's lines and these.
    async fn load_with_orders(&self, extra: &[&str]) {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny/orders.csv");
        let mut text = std::fs::read_to_string(tiny).unwrap();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        for line in extra {
            text += line;
            text.push('\n');
        }
        std::fs::write(self.export.join("orders.csv"), text).unwrap();
        load(&self.data, &self.export).await;
    }
}

fn question(metrics: &[&str], by: &[&str], period: Option<&str>) -> QueryRequest {
    QueryRequest {
        api_version: API_VERSION,
        metrics: metrics.iter().map(|s| s.to_string()).collect(),
        by: by.iter().map(|s| s.to_string()).collect(),
        period: period.map(String::from),
        ..QueryRequest::default()
    }
}

fn add(app: &AppState, owner: &str, name: &str, watch: Watch, on: &str, to: &str) -> i64 {
    prism_delivers::add_alert(
        &app.store,
        &app.engine,
        &AlertRequest {
            owner: owner.into(),
            name: name.into(),
            watch,
            schedule: Schedule::parse(on, "UTC").unwrap(),
            channel: to.into(),
        },
    )
    .unwrap()
}

/// A mail server that accepts everything and keeps each message: (recipients, data).
type Mailbag = Arc<Mutex<Vec<(Vec<String>, String)>>>;

async fn smtp_sink() -> (u16, Mailbag) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bag: Mailbag = Arc::default();
    let kept = bag.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut rcpt = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.to_ascii_uppercase();
                    let reply: &[u8] = if verb.starts_with("EHLO") || verb.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if verb.starts_with("RCPT TO:") {
                        rcpt.push(line[8..].trim().trim_matches(['<', '>']).to_string());
                        b"250 ok\r\n"
                    } else if verb == "DATA" {
                        write.write_all(b"354 go on\r\n").await.unwrap();
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data += &l;
                            data.push('\n');
                        }
                        kept.lock().unwrap().push((std::mem::take(&mut rcpt), data));
                        b"250 queued\r\n"
                    } else if verb == "QUIT" {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, bag)
}

/// A scheduler that mails through a new SMTP sink, and the sink's mailbag.
async fn mailing(app: &Arc<AppState>) -> (Delivers, Mailbag) {
    let (port, bag) = smtp_sink().await;
    let delivers = Delivers::new(
        app.clone(),
        Outbound {
            smtp: Some(Smtp {
                url: format!("smtp://127.0.0.1:{port}"),
                from: "prism@brand.example".into(),
                user: None,
                password: None,
                starttls: false,
            }),
            ..Outbound::default()
        },
    )
    .unwrap();
    (delivers, bag)
}

/// Passes until nothing is due, for at most a few seconds (retries wait whole seconds).
async fn settle(delivers: &Delivers) {
    for _ in 0..40 {
        let pass = delivers.pass(Utc::now()).await.unwrap();
        if pass.attempted == 0 && pass.queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A mail as text: quoted-printable decoded (soft breaks joined, `=XX` bytes restored).
fn body(mail: &str) -> String {
    let joined = mail.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_fall_mails_the_executive_once_and_again_only_after_it_cleared() {
    let f = fixture().await;
    let (delivers, bag) = mailing(&f.app).await;
    add(
        &f.app,
        "exec",
        "partners falling",
        Watch::question(
            question(
                &["closed_revenue"],
                &["partner.partner_id"],
                Some("latest-quarter"),
            ),
            Condition::parse("closed_revenue:change_pct <= -25").unwrap(),
        ),
        "load",
        "email",
    );
    add(
        &f.app,
        "partner",
        "my satisfaction",
        Watch::question(
            question(&["csat_avg"], &["partner.partner_id"], None),
            Condition::parse("csat_avg < 3").unwrap(),
        ),
        "load",
        "email",
    );

    // The tiny export: 2024-Q1 is the latest quarter and nothing came before it, so no fall;
    // P-2's only survey scored 2, so its manager hears of it — and of nothing else.
    settle(&delivers).await;
    {
        let mails = bag.lock().unwrap();
        assert_eq!(mails.len(), 1, "{mails:?}");
        let (to, mail) = &mails[0];
        assert_eq!(to, &["ops@p2.example"]);
        let text = body(mail);
        assert!(text.contains("P-2 · Müller & Söhne"), "{text}");
        assert!(text.contains(": 2"), "{text}");
        assert!(!text.contains("P-1") && !text.contains("Acme"), "{text}");
        assert!(!text.contains("P-3"), "{text}");
    }

    // P-1 closes 1 000.00 in 2024-Q2 against 2 499.50 in Q1: a 59.99 % fall. Direct sales
    // grow from 1 200.00 to 1 500.00, P-2 (a credit of 49.75 in Q1) sells nothing.
    const DIRECT: &str = "O-9,1,C-2,PR-1,,2024-04-20,1,1500.00,900.00,";
    f.load_with_orders(&["O-4,1,C-1,PR-1,P-1,2024-04-15,1,1000.00,600.00,", DIRECT])
        .await;
    settle(&delivers).await;
    {
        let mails = bag.lock().unwrap();
        assert_eq!(mails.len(), 2, "{mails:?}");
        let (to, mail) = &mails[1];
        assert_eq!(to, &["exec@brand.example"]);
        let text = body(mail);
        assert!(text.contains("P-1 · Acme"), "{text}");
        assert!(text.contains("-59.99"), "{text}");
        assert!(
            !text.contains("P-2") && !text.contains("(direct)"),
            "{text}"
        );
        assert!(text.contains("2024-04-01..2024-06-30"), "{text}");
        assert!(text.contains("Message-ID: <alert-"), "{text}");
    }

    // The same export again, and a second scheduler over the same store: nothing new.
    f.load_with_orders(&["O-4,1,C-1,PR-1,P-1,2024-04-15,1,1000.00,600.00,", DIRECT])
        .await;
    settle(&delivers).await;
    let second = Delivers::new(f.app.clone(), Outbound::default()).unwrap();
    settle(&second).await;
    assert_eq!(bag.lock().unwrap().len(), 2);

    // Q2 grows to 3 000.00 (+20 %): the condition clears, silently.
    f.load_with_orders(&[
        "O-4,1,C-1,PR-1,P-1,2024-04-15,1,1000.00,600.00,",
        "O-5,1,C-1,PR-1,P-1,2024-05-02,1,2000.00,1200.00,",
        DIRECT,
    ])
    .await;
    settle(&delivers).await;
    assert_eq!(bag.lock().unwrap().len(), 2);
    let exec_alert = f.app.store.alerts(Some("exec")).unwrap().remove(0);
    assert!(!exec_alert.firing, "{exec_alert:?}");

    // O-5 is corrected to 100.00: Q2 is 1 100.00, a 55.99 % fall, and it is news again.
    f.load_with_orders(&[
        "O-4,1,C-1,PR-1,P-1,2024-04-15,1,1000.00,600.00,",
        "O-5,1,C-1,PR-1,P-1,2024-05-02,1,100.00,60.00,",
        DIRECT,
    ])
    .await;
    settle(&delivers).await;
    let mails = bag.lock().unwrap();
    assert_eq!(mails.len(), 3, "{mails:?}");
    assert!(body(&mails[2].1).contains("-55.99"), "{}", mails[2].1);
    let log = f.app.store.deliveries(None, 10).unwrap();
    assert_eq!(log.len(), 3);
    assert!(
        log.iter().all(|d| d.status == "sent" && d.attempts == 1),
        "{log:?}"
    );
}

/// A webhook receiver answering with the statuses given in turn (then 200), keeping what it
/// got: (status answered, signature header, body).
type Received = Arc<Mutex<Vec<(u16, String, String)>>>;

async fn receiver(statuses: Vec<u16>, hang: bool) -> (String, Received) {
    use axum::http::{HeaderMap, StatusCode};
    let got: Received = Arc::default();
    let kept = got.clone();
    let statuses = Arc::new(Mutex::new(statuses.into_iter()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let kept = kept.clone();
            let statuses = statuses.clone();
            async move {
                if hang {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                let status = statuses.lock().unwrap().next().unwrap_or(200);
                let signature = headers
                    .get("x-prism-signature")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                kept.lock().unwrap().push((status, signature, body));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn hmac_hex(key: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_gets_the_signed_news_once_after_two_failures_and_a_hang_is_logged() {
    let f = fixture().await;
    let (url, got) = receiver(vec![500, 500], false).await;
    let delivers = Delivers::new(
        f.app.clone(),
        Outbound {
            retry_after: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            ..Outbound::default()
        },
    )
    .unwrap();
    let id = add(
        &f.app,
        "partner",
        "unhappy customers",
        Watch::question(
            question(&["csat_avg"], &["customer.customer_id"], None),
            Condition::parse("csat_avg <= 2").unwrap(),
        ),
        "load",
        &format!("webhook:{url}"),
    );
    // Retries wait 1 s, then 2 s.
    for _ in 0..3 {
        settle(&delivers).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    settle(&delivers).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        [500, 500, 200],
        "{got:?}"
    );
    let secret = f.app.store.alert(id).unwrap().unwrap().secret;
    for (_, signature, body) in &got {
        assert_eq!(signature, &format!("sha256={}", hmac_hex(&secret, body)));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["rows"][0]["values"]["customer.customer_id"], "C-2");
        assert_eq!(json["rows"].as_array().unwrap().len(), 1, "{json}");
    }
    let log = f.app.store.deliveries(None, 10).unwrap();
    assert_eq!(
        (log[0].status.as_str(), log[0].attempts),
        ("sent", 3),
        "{log:?}"
    );

    // A receiver that never answers: each attempt times out, and the log says so.
    let (url, _) = receiver(vec![], true).await;
    let delivers = Delivers::new(
        f.app.clone(),
        Outbound {
            retry_after: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_attempts: 2,
            ..Outbound::default()
        },
    )
    .unwrap();
    add(
        &f.app,
        "exec",
        "direct credits",
        Watch::question(
            question(&["closed_revenue"], &["partner.partner_id"], None),
            Condition::parse("closed_revenue < 0").unwrap(),
        ),
        "load",
        &format!("webhook:{url}"),
    );
    for _ in 0..2 {
        settle(&delivers).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    settle(&delivers).await;
    let log = f.app.store.deliveries(None, 10).unwrap();
    let hung = log.iter().find(|d| d.alert == "direct credits").unwrap();
    assert_eq!(
        (hung.status.as_str(), hung.attempts),
        ("failed", 2),
        "{hung:?}"
    );
    assert!(hung.reason.contains("did not answer in time"), "{hung:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_alert_runs_at_its_time_and_tells_the_inbox() {
    let f = fixture().await;
    let delivers = Delivers::new(f.app.clone(), Outbound::default()).unwrap();
    add(
        &f.app,
        "partner",
        "daily risk",
        Watch::List {
            analysis: prism_delivers::ListAnalysis::Risk,
            period: None,
        },
        "0 7 * * *",
        "inbox",
    );
    let alert = f.app.store.alerts(Some("partner")).unwrap().remove(0);
    let due = alert.next_due_at.unwrap();
    let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap();
    // A minute before its time: nothing; at its time: evaluated, and not again until the next.
    let before = delivers.pass(at(due - 60)).await.unwrap();
    assert!(before.evaluated.is_empty(), "{before:?}");
    let on_time = delivers.pass(at(due)).await.unwrap();
    assert_eq!(on_time.evaluated.len(), 1, "{on_time:?}");
    let after = delivers.pass(at(due + 60)).await.unwrap();
    assert!(after.evaluated.is_empty(), "{after:?}");
    let next = f.app.store.alerts(Some("partner")).unwrap()[0].next_due_at;
    assert_eq!(next, Some(due + 86_400));

    // C-2's only survey (with P-2) scored 2: a high-risk account of P-2's, in P-2's inbox.
    let partner = f.app.store.user("partner").unwrap().unwrap();
    let inbox = f.app.store.inbox(partner.id, 10).unwrap();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(inbox[0].body.contains("C-2"), "{inbox:?}");
    assert!(!inbox[0].body.contains("C-1"), "{inbox:?}");
    assert_eq!(f.app.store.unread(partner.id).unwrap(), 1);
    let exec = f.app.store.user("exec").unwrap().unwrap();
    assert!(f.app.store.inbox(exec.id, 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_alert_is_refused_with_the_reason_and_nothing_is_kept() {
    let f = fixture().await;
    let try_add = |watch: Watch, to: &str| {
        prism_delivers::add_alert(
            &f.app.store,
            &f.app.engine,
            &AlertRequest {
                owner: "exec".into(),
                name: "bad".into(),
                watch,
                schedule: Schedule::parse("load", "UTC").unwrap(),
                channel: to.into(),
            },
        )
        .unwrap_err()
        .to_string()
    };
    let unknown = try_add(
        Watch::question(
            question(&["closed_revenu"], &[], None),
            Condition::parse("closed_revenu > 1").unwrap(),
        ),
        "inbox",
    );
    assert!(unknown.contains("closed_revenu"), "{unknown}");
    let ok = Watch::question(
        question(&["closed_revenue"], &[], None),
        Condition::parse("closed_revenue > 1").unwrap(),
    );
    let plain = try_add(ok.clone(), "webhook:http://hooks.example.com/x");
    assert!(plain.contains("https"), "{plain}");
    let elsewhere = try_add(ok, "mailto:someone@else.example");
    assert!(elsewhere.contains("inbox, email"), "{elsewhere}");
    for c in ["closed_revenue", "closed_revenue > many", "> 3", "a b > 3"] {
        assert!(Condition::parse(c).is_err(), "{c}");
    }
    assert!(f.app.store.alerts(None).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_set_up_under_an_explore_answer_is_kept_as_the_cli_keeps_it_and_tells_its_owner() {
    use prism_web::alerts::{AlertForm, AlertMaker};
    let f = fixture().await;
    let partner = f.app.store.user("partner").unwrap().unwrap();
    // The form as the Explore page posts it for "CSAT by partner".
    let form = |kind: &str, to: &str| AlertForm {
        name: "unhappy customers".into(),
        question: "metrics=csat_avg&by=partner.partner_id&chart=bar".into(),
        kind: kind.into(),
        metric: "csat_avg".into(),
        op: "<".into(),
        threshold: "3".into(),
        on: "load".into(),
        time_zone: "UTC".into(),
        to: to.into(),
        ..AlertForm::default()
    };
    let id = prism_delivers::PageAlerts
        .add(
            &f.app,
            &partner,
            &form("condition", "inbox").read().unwrap(),
        )
        .unwrap();
    let kept = f.app.store.alerts(Some("partner")).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, id);
    assert_eq!(
        prism_delivers::watch_of(&kept[0]).unwrap(),
        Watch::question(
            question(&["csat_avg"], &["partner.partner_id"], None),
            Condition::parse("csat_avg < 3").unwrap(),
        )
    );
    // After the load it watches: P-2's only survey scored 2 (below 3), in P-2's inbox only.
    let delivers = Delivers::new(f.app.clone(), Outbound::default()).unwrap();
    let pass = delivers.pass(chrono::Utc::now()).await.unwrap();
    assert_eq!(pass.evaluated.len(), 1, "{pass:?}");
    let inbox = f.app.store.inbox(partner.id, 10).unwrap();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(inbox[0].body.contains("P-2"), "{inbox:?}");
    assert!(!inbox[0].body.contains("P-1"), "{inbox:?}");

    // A scheduled report of the same question; refused: a webhook from a page, a metric the
    // model does not have, a name already used, a schedule that never comes.
    let mut report = form("report", "email");
    report.name = "CSAT every Monday".into();
    report.on = "0 7 * * MON".into();
    let report = prism_delivers::PageAlerts
        .add(&f.app, &partner, &report.read().unwrap())
        .unwrap();
    let kept = f.app.store.alerts(Some("partner")).unwrap();
    let kept = kept.iter().find(|a| a.id == report).unwrap();
    assert!(matches!(
        prism_delivers::watch_of(kept).unwrap(),
        Watch::Report { .. }
    ));
    assert_eq!(
        (kept.schedule.as_str(), kept.channel.as_str()),
        ("0 7 * * MON", "email")
    );
    assert!(report > id);
    let webhook = form("condition", "webhook:https://hooks.example.com/x")
        .read()
        .unwrap_err();
    assert!(webhook.contains("administrator"), "{webhook}");
    let mut other = form("condition", "inbox");
    other.name = "misspelt".into();
    other.question = "metrics=csat_avgg&by=partner.partner_id".into();
    other.metric = "csat_avgg".into();
    let refused = prism_delivers::PageAlerts
        .add(&f.app, &partner, &other.read().unwrap())
        .unwrap_err();
    assert!(refused.contains("csat_avgg"), "{refused}");
    let again = prism_delivers::PageAlerts
        .add(
            &f.app,
            &partner,
            &form("condition", "inbox").read().unwrap(),
        )
        .unwrap_err();
    assert!(again.contains("already has an alert named"), "{again}");
    let mut never = form("condition", "inbox");
    never.name = "never".into();
    never.on = "0 7 31 2 *".into();
    assert!(
        prism_delivers::PageAlerts
            .add(&f.app, &partner, &never.read().unwrap())
            .is_err()
    );
    assert_eq!(f.app.store.alerts(Some("partner")).unwrap().len(), 2);
    // A dashboard shared with the partner's role, sent on a schedule from its page.
    let exec = f.app.store.user("exec").unwrap().unwrap();
    let d = f
        .app
        .store
        .add_dashboard(&exec, "Weekly", "partner_manager")
        .unwrap();
    let mut weekly = form("dashboard", "inbox");
    weekly.name = "weekly".into();
    weekly.dashboard = Some(d);
    weekly.on = "0 7 * * MON".into();
    let id = prism_delivers::PageAlerts
        .add(&f.app, &partner, &weekly.read().unwrap())
        .unwrap();
    let kept = f.app.store.alerts(Some("partner")).unwrap();
    let kept = kept.iter().find(|a| a.id == id).unwrap();
    assert_eq!(
        prism_delivers::watch_of(kept).unwrap(),
        Watch::Dashboard { dashboard: d }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_whose_class_changed_since_the_previous_period_is_news_to_the_executive() {
    let f = fixture().await;
    // By hand from fixtures/tiny: in January 2024 P-1 is the only partner with revenue
    // (2 499.50: class A); in February no partner sold (direct sales only): every partner is
    // class C. P-2, without revenue in either month, stays C.
    let class_changed = |period: Option<&str>| Watch::List {
        analysis: prism_delivers::ListAnalysis::ClassChanged,
        period: period.map(String::from),
    };
    add(
        &f.app,
        "exec",
        "class moves",
        class_changed(Some("2024-02")),
        "load",
        "inbox",
    );
    let delivers = Delivers::new(f.app.clone(), Outbound::default()).unwrap();
    let pass = delivers.pass(Utc::now()).await.unwrap();
    assert_eq!(pass.evaluated.len(), 1, "{pass:?}");
    let exec = f.app.store.user("exec").unwrap().unwrap();
    let inbox = f.app.store.inbox(exec.id, 10).unwrap();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(inbox[0].body.contains("P-1"), "{inbox:?}");
    assert!(
        inbox[0]
            .body
            .contains("class A → C (closed revenue 2499.50 → 0.00)"),
        "{inbox:?}"
    );
    assert!(!inbox[0].body.contains("P-2"), "{inbox:?}");
    // A class is the channel's, and a change needs a period to compare with.
    for (owner, watch, why) in [
        (
            "partner",
            class_changed(Some("2024-02")),
            "not for a partner's user",
        ),
        ("exec", class_changed(None), "give --period"),
    ] {
        let refused = prism_delivers::add_alert(
            &f.app.store,
            &f.app.engine,
            &AlertRequest {
                owner: owner.into(),
                name: "refused".into(),
                watch,
                schedule: Schedule::parse("load", "UTC").unwrap(),
                channel: "inbox".into(),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains(why), "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_arrives_at_its_time_as_one_workbook_answered_in_the_owners_audience() {
    let f = fixture().await;
    let (delivers, bag) = mailing(&f.app).await;
    // The executive's dashboard of revenue by partner, shared with partner managers.
    let exec = f.app.store.user("exec").unwrap().unwrap();
    let q = f
        .app
        .store
        .save_question(
            &exec,
            "Revenue by partner",
            "",
            "metrics=closed_revenue&by=partner.partner_id",
            "everyone",
        )
        .unwrap();
    let d = f
        .app
        .store
        .add_dashboard(&exec, "Weekly", "partner_manager")
        .unwrap();
    assert!(f.app.store.add_to_dashboard(&exec, d, q).unwrap());
    // P-2's user has it mailed every Monday.
    add(
        &f.app,
        "partner",
        "weekly",
        Watch::Dashboard { dashboard: d },
        "0 7 * * MON",
        "email",
    );
    let due = f.app.store.alerts(Some("partner")).unwrap()[0]
        .next_due_at
        .unwrap();
    delivers
        .pass(chrono::DateTime::from_timestamp(due, 0).unwrap())
        .await
        .unwrap();
    let mails = bag.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (to, mail) = &mails[0];
    assert_eq!(to, &["ops@p2.example"]);
    // By hand: P-2's only order, a credit of 49.75; no other partner, no direct sales.
    let cells = workbook_cells(attachment(mail, "Weekly.xlsx"));
    assert_eq!(
        cells,
        [vec!["Partner id", "Closed revenue"], vec!["P-2", "-49.75"]]
    );
    assert!(!mail.contains("P-1"), "{mail}");
    // A dashboard the owner may not open is refused when kept.
    let private = f.app.store.add_dashboard(&exec, "Mine", "private").unwrap();
    let refused = prism_delivers::add_alert(
        &f.app.store,
        &f.app.engine,
        &AlertRequest {
            owner: "partner".into(),
            name: "not mine".into(),
            watch: Watch::Dashboard { dashboard: private },
            schedule: Schedule::parse("0 7 * * MON", "UTC").unwrap(),
            channel: "inbox".into(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(refused.contains("no dashboard"), "{refused}");
}

/// The attached file of a mail, decoded as its part's transfer encoding says (base64, or
/// text as it is).
fn attachment(mail: &str, name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let after = mail
        .split(&format!("filename=\"{name}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} in {mail}"));
    let (headers, body) = after.split_once("\n\n").unwrap();
    let lines: Vec<&str> = body.lines().take_while(|l| !l.starts_with("--")).collect();
    if headers.contains("Content-Transfer-Encoding: base64") {
        base64::engine::general_purpose::STANDARD
            .decode(lines.concat().trim())
            .unwrap_or_else(|e| panic!("{name}: {e} in {mail}"))
    } else {
        lines.join("\n").into_bytes()
    }
}

/// The cells of a workbook's first sheet, row by row, as its XML holds them.
fn workbook_cells(bytes: Vec<u8>) -> Vec<Vec<String>> {
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
        read("xl/worksheets/sheet1.xml"),
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

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_report_arrives_at_its_time_with_the_answer_attached() {
    let f = fixture().await;
    let (delivers, bag) = mailing(&f.app).await;
    let id = add(
        &f.app,
        "exec",
        "revenue by partner",
        Watch::Report {
            question: question(&["closed_revenue"], &["partner.partner_id"], None),
        },
        "0 7 * * MON",
        "email",
    );
    let due = f.app.store.alerts(Some("exec")).unwrap()[0]
        .next_due_at
        .unwrap();
    let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap();
    delivers.pass(at(due - 1)).await.unwrap();
    assert!(bag.lock().unwrap().is_empty());
    delivers.pass(at(due)).await.unwrap();
    // The same due time again (a second scheduler, a restart): still one report.
    f.app.store.set_next_due(id, Some(due)).unwrap();
    delivers.pass(at(due)).await.unwrap();
    let mails = bag.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (to, mail) = &mails[0];
    assert_eq!(to, &["exec@brand.example"]);
    assert!(mail.contains("Prism report: revenue by partner"), "{mail}");

    // Hand figures of fixtures/tiny: P-1 2 499.50, P-2 -49.75, direct sales 1 200.00.
    let expected = [("(direct)", 1200.0), ("P-1", 2499.5), ("P-2", -49.75)];
    let cells = workbook_cells(attachment(mail, "answer.xlsx"));
    let mut figures: Vec<(String, f64)> = cells[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    figures.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        figures,
        expected.map(|(p, v)| (p.to_string(), v)).to_vec(),
        "{cells:?}"
    );
    let csv = String::from_utf8(attachment(mail, "answer.csv")).unwrap();
    for (p, v) in expected {
        assert!(csv.contains(&format!("{p},{v:.2}")), "{csv}");
    }
}
