//! The SQL endpoint over a real socket with a Rust Postgres client: the extended protocol with
//! bound parameters, a partner user's attempts to reach what is not its own, and the catalog
//! queries that Metabase and DBeaver send when they connect. Expected figures are computed by
//! hand from fixtures/tiny (see crates/engine/tests/cases/base_metrics.case).

use std::path::Path;
use std::sync::Arc;

use prism_web::{AppState, Role};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const PASSWORD: &str = "correct horse";

async fn endpoint() -> (tempfile::TempDir, Arc<AppState>, u16) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    prism_warehouse::Warehouse::open(&data)
        .unwrap()
        .load(
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
    let app = Arc::new(AppState::open(&data, prism_model::Model::shipped(), false).unwrap());
    let store = &app.store;
    store
        .add_user("exec", Role::ChannelExecutive, &[], PASSWORD)
        .unwrap();
    store
        .add_user("partner", Role::PartnerManager, &["P-2".into()], PASSWORD)
        .unwrap();
    store
        .add_user(
            "manager",
            Role::ChannelManager,
            &["P-1".into(), "P-3".into()],
            PASSWORD,
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(prism_sql::serve(app.clone(), listener, None));
    (tmp, app, port)
}

async fn connect(port: u16, user: &str, password: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user={user} password='{password}' dbname=prism"),
        NoTls,
    )
    .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The rows of a simple query, every value as text ("" for NULL).
async fn rows(client: &Client, sql: &str) -> Result<Vec<Vec<String>>, tokio_postgres::Error> {
    Ok(client
        .simple_query(sql)
        .await?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn bound_parameters_ask_in_the_users_scope() {
    let (_tmp, _app, port) = endpoint().await;
    let sql =
        "SELECT partner_partner_id, units_sold FROM sales WHERE partner_partner_id = $1 GROUP BY 1";
    let exec = connect(port, "exec", PASSWORD).await.unwrap();
    let got: Vec<(String, i64)> = exec
        .query(sql, &[&"P-1"])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // P-1 sold O-1's two lines: 2 + 1 units.
    assert_eq!(got, [("P-1".to_string(), 3)]);

    // The same prepared question for a partner user naming another partner: nothing.
    let partner = connect(port, "partner", PASSWORD).await.unwrap();
    let statement = partner.prepare(sql).await.unwrap();
    assert!(
        partner
            .query(&statement, &[&"P-1"])
            .await
            .unwrap()
            .is_empty()
    );
    let own: Vec<(String, i64)> = partner
        .query(&statement, &[&"P-2"])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(own, [("P-2".to_string(), 1)]);

    // Described before it runs, as BI tools do: the answer's columns and types.
    let columns: Vec<(String, String)> = statement
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().name().to_string()))
        .collect();
    assert_eq!(
        columns,
        [
            ("partner_partner_id".to_string(), "text".to_string()),
            ("units_sold".to_string(), "int8".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_user_cannot_reach_another_partners_rows_by_any_sql() {
    let (_tmp, _app, port) = endpoint().await;
    let partner = connect(port, "partner", PASSWORD).await.unwrap();
    let all = rows(
        &partner,
        "SELECT partner_partner_id, closed_revenue FROM sales GROUP BY 1",
    )
    .await
    .unwrap();
    assert_eq!(all, [["P-2", "-49.75"]]);

    // Each attempt is refused, or answers nothing of anyone else's.
    for sql in [
        "SELECT * FROM orders",
        "SELECT * FROM public.orders",
        "SELECT amount FROM orders WHERE partner_id = 'P-1'",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT closed_revenue FROM sales UNION SELECT closed_revenue FROM sales WHERE partner_partner_id = 'P-1'",
        "SELECT closed_revenue FROM sales WHERE partner_partner_id IN (SELECT partner_partner_id FROM pipeline)",
        "SELECT closed_revenue FROM sales /* WHERE partner_partner_id = 'P-2' */ WHERE partner_partner_id = 'P-1' OR 1 = 1",
        "SELECT closed_revenue FROM sales WHERE partner_partner_id = 'P-2'; SELECT * FROM orders",
        "CREATE EXTERNAL TABLE o STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/prism-escape.csv'",
        "SELECT s.closed_revenue FROM sales s JOIN pipeline p ON true",
        "WITH x AS (SELECT 1) SELECT closed_revenue FROM sales",
        "DECLARE c CURSOR FOR SELECT * FROM sales",
    ] {
        match rows(&partner, sql).await {
            Err(e) => {
                let message = e.as_db_error().map(|d| d.message().to_string());
                assert!(message.is_some(), "{sql}: {e}");
            }
            Ok(r) => panic!("{sql} answered {r:?}"),
        }
    }
    assert!(
        rows(
            &partner,
            "SELECT closed_revenue FROM sales WHERE partner_partner_id = 'P-1'"
        )
        .await
        .unwrap()
        .iter()
        .all(|r| r.iter().all(String::is_empty))
    );
    assert!(!Path::new("/tmp/prism-escape.csv").exists());

    // A channel manager sees its own partners: P-1's sale, and P-3 sold nothing.
    let manager = connect(port, "manager", PASSWORD).await.unwrap();
    assert_eq!(
        rows(
            &manager,
            "SELECT partner_partner_id, closed_revenue FROM sales GROUP BY 1 ORDER BY 1"
        )
        .await
        .unwrap(),
        [["P-1", "2499.50"]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_takes_the_apps_users_and_their_passwords_only() {
    let (_tmp, app, port) = endpoint().await;
    assert!(connect(port, "exec", "wrong").await.is_err());
    assert!(connect(port, "nobody", PASSWORD).await.is_err());
    let exec = connect(port, "exec", PASSWORD).await.unwrap();
    assert_eq!(
        rows(&exec, "SELECT closed_revenue FROM sales")
            .await
            .unwrap(),
        [["3649.75"]]
    );
    // An API token signs its own user in, as the password; never another user.
    let token = app.store.add_api_token("partner", "bi tool").unwrap();
    let partner = connect(port, "partner", &token).await.unwrap();
    assert_eq!(
        rows(&partner, "SELECT closed_revenue FROM sales")
            .await
            .unwrap(),
        [["-49.75"]]
    );
    assert!(connect(port, "exec", &token).await.is_err());
    app.store.revoke_api_tokens("partner").unwrap();
    assert!(connect(port, "partner", &token).await.is_err());
    // A user removed while connected is answered no more.
    app.store.remove_user("exec").unwrap();
    assert!(
        rows(&exec, "SELECT closed_revenue FROM sales")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metabase_and_dbeaver_connect_and_browse_the_catalog() {
    let (_tmp, _app, port) = endpoint().await;
    let exec = connect(port, "exec", PASSWORD).await.unwrap();
    // What Metabase (0.55) and DBeaver (25) send on connecting and syncing.
    for sql in [
        "SET extra_float_digits = 2",
        "SET application_name = 'Metabase v0.55.1'",
        "SHOW TRANSACTION ISOLATION LEVEL",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        r#"SELECT nspname AS "TABLE_SCHEM", current_database() AS "TABLE_CATALOG" FROM pg_catalog.pg_namespace  WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_'  OR nspname = (pg_catalog.current_schemas(true))[1]) AND (nspname !~ '^pg_toast_temp_'  OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_'))  ORDER BY "TABLE_SCHEM""#,
        r#"SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = '0') AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ '^pg_') AND ("n"."nspname" <> 'information_schema') AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ('public')) ORDER BY "type" ASC, "schema" ASC, "name" ASC"#,
        "show timezone",
        "SET extra_float_digits = 3",
        "SELECT current_schema(),session_user",
        "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass ORDER BY nspname",
        "SHOW search_path",
        "SELECT version()",
        "SELECT * FROM pg_catalog.pg_settings where name='standard_conforming_strings'",
        "SELECT * FROM sales LIMIT 0",
    ] {
        if let Err(e) = exec.simple_query(sql).await {
            panic!("{sql}: {e:?}");
        }
    }
    // Metabase lists the subject tables from pg_class, and their columns from
    // information_schema.
    let tables = rows(
        &exec,
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid WHERE n.nspname = 'public' ORDER BY 1",
    )
    .await
    .unwrap();
    let tables: Vec<&str> = tables.iter().map(|r| r[0].as_str()).collect();
    for t in ["pipeline", "sales", "satisfaction", "service"] {
        assert!(tables.contains(&t), "{t} in {tables:?}");
    }
    let columns = rows(
        &exec,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'sales' ORDER BY column_name",
    )
    .await
    .unwrap();
    assert!(
        columns.contains(&vec![
            "closed_revenue".to_string(),
            "Decimal128(38, 2)".to_string()
        ]) || columns
            .iter()
            .any(|c| c[0] == "closed_revenue" && c[1].to_lowercase().contains("decimal")),
        "{columns:?}"
    );
    assert!(
        columns.iter().any(|c| c[0] == "partner_tier"),
        "{columns:?}"
    );
}
