//! A Salesforce data export loaded through `mappings/salesforce.yaml` gives the same figures
//! as the same data in the contract's layout (`fixtures/tiny`), and every fault — of the
//! mapping or of the contract — is located in the original file, line and column, with nothing
//! loaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn prism(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("PRISM_CONFIG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The load succeeded and said `says`.
fn assert_committed(out: &Output, says: &str) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text(out).contains(says), "{}", text(out));
}

fn load_salesforce(data: &Path, export: &Path) -> Output {
    let mapping = repo().join("mappings/salesforce.yaml");
    prism(
        data,
        &[
            "load",
            "--mapping",
            mapping.to_str().unwrap(),
            export.to_str().unwrap(),
        ],
    )
}

#[test]
fn a_salesforce_export_gives_the_figures_of_the_same_data_in_the_contracts_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (sf, tiny) = (tmp.path().join("sf"), tmp.path().join("tiny"));
    let out = load_salesforce(&sf, &repo().join("fixtures/salesforce"));
    assert_committed(&out, "orders.csv (from OrderItem.csv)");
    let out = prism(
        &tiny,
        &["load", repo().join("fixtures/tiny").to_str().unwrap()],
    );
    assert!(out.status.success());
    // Ids differ (Salesforce's against the tiny export's): compare by names and attributes.
    for question in [
        "closed_revenue,units_sold,gross_margin,order_count,buying_customers,open_pipeline,won_count,lost_count,win_rate,avg_deal_size --by partner.partner_name,partner.tier,partner.partner_type,partner.region",
        "csat_avg,avg_first_response_hours,avg_resolution_hours,open_sr_count --by partner.partner_name",
        "closed_revenue,open_pipeline --by customer.industry,customer.size_band,time.month",
        "closed_revenue,won_amount --by product.product_name,product.product_line",
    ] {
        let (metrics, by) = question.split_once(" --by ").unwrap();
        let ask = |data: &Path| {
            let o = prism(
                data,
                &["query", "--metrics", metrics, "--by", by, "--format", "csv"],
            );
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            text(&o)
        };
        let (from_salesforce, from_contract) = (ask(&sf), ask(&tiny));
        assert!(from_contract.lines().count() > 2, "{from_contract}");
        assert_eq!(from_salesforce, from_contract, "{question}");
    }
    // The history names the original export and the mapping.
    let status = text(&prism(&sf, &["status"]));
    assert!(status.contains("salesforce.yaml"), "{status}");
}

/// The sample export with one file changed by `edit`.
fn broken(dir: &Path, file: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let export = dir.join("export");
    std::fs::create_dir_all(&export).unwrap();
    for entry in std::fs::read_dir(repo().join("fixtures/salesforce")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, export.join(path.file_name().unwrap())).unwrap();
    }
    let original = std::fs::read_to_string(export.join(file)).unwrap();
    std::fs::write(export.join(file), edit(&original)).unwrap();
    export
}

#[test]
fn every_fault_is_located_in_the_original_file_and_nothing_is_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // (the file changed, the change, what the load must say)
    let cases: [(&str, (&str, &str), &str); 4] = [
        // A stage the value map does not know: line 3, StageName (column 5).
        (
            "Opportunity.csv",
            ("Closed Won", "Closed Maybe"),
            "Opportunity.csv:3:5 (StageName (as stage)): `Closed Maybe` is not a value the mapping knows",
        ),
        // A fault the contract finds after mapping (a negative quantity), located in the
        // original line item: line 4, Quantity (column 5).
        (
            "OrderItem.csv",
            (
                "8015g00000OR002AAA,0000000003,01t5g00000PR001AAA,1,",
                "8015g00000OR002AAA,0000000003,01t5g00000PR001AAA,-1,",
            ),
            "OrderItem.csv:4:5 (Quantity (as quantity))",
        ),
        // A fault in a joined file (an order's date), located there: line 2, EffectiveDate.
        (
            "Order.csv",
            ("2024-01-10", "10/01/2024"),
            "Order.csv:2:5 (EffectiveDate (as order_date))",
        ),
        // A column the mapping names and the export lacks: refused before reading a row.
        (
            "Case.csv",
            ("Priority", "Urgency"),
            "entities.service_requests.fields.priority: Case.csv has no column `Priority`",
        ),
    ];
    for (i, (file, (from, to), says)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("case-{i}"));
        let export = broken(&dir, file, |t| t.replace(from, to));
        let out = load_salesforce(&data, &export);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: loaded");
        assert!(err.contains(says), "{file}: {err}");
        assert!(
            !data.join("warehouse.json").exists(),
            "{file}: nothing is loaded"
        );
    }
    // A rejected export exits 2, as any rejected load does.
    let export = broken(&tmp.path().join("again"), "Opportunity.csv", |t| {
        t.replace("Closed Won", "Closed Maybe")
    });
    assert_eq!(load_salesforce(&data, &export).status.code(), Some(2));
    // And no mapped files are left in the data folder.
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mapped"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_mapping_that_names_what_the_contract_lacks_is_refused_by_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mapping = tmp.path().join("mine.yaml");
    std::fs::write(
        &mapping,
        "entities:\n  partner:\n    file: A.csv\n    fields: {}\n  products:\n    file: P.csv\n    fields:\n      product_id: Id\n      product_nam: Name\n",
    )
    .unwrap();
    let out = prism(
        &tmp.path().join("data"),
        &[
            "load",
            "--mapping",
            mapping.to_str().unwrap(),
            repo().join("fixtures/salesforce").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("entities.partner: not an entity of the contract"),
        "{err}"
    );
    assert!(
        err.contains("entities.products.fields.product_nam: not a column of products.csv"),
        "{err}"
    );
    assert!(
        err.contains("entities.products.fields: no `product_name`, which products.csv requires"),
        "{err}"
    );
}

/// A PostgreSQL server of its own on loopback, in a temporary folder, stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = ["/usr/lib/postgresql"]
            .iter()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flat_map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("no PostgreSQL server: install Debian's postgresql (scripts/test does)");
        let dir = tempfile::tempdir().unwrap();
        // The server refuses to run as root: then it runs as the postgres user, who must be
        // able to enter the folder.
        let root = unsafe_free_is_root();
        if root {
            Command::new("chmod")
                .args(["777", dir.path().to_str().unwrap()])
                .status()
                .unwrap();
        }
        let as_server = |program: &Path, args: &[&str]| {
            let mut c = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            let out = c.args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data = dir.path().join("pg");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        as_server(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "crm",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {}",
            dir.path().display()
        );
        as_server(
            &bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-l",
                dir.path().join("log").to_str().unwrap(),
                "start",
            ],
        );
        Postgres { dir, bin, port }
    }

    fn url(&self) -> String {
        format!("postgres://crm@127.0.0.1:{}/postgres", self.port)
    }

    fn psql(&self, sql: &str) {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "crm",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The Salesforce sample's objects as tables of text columns, named as the files' headers.
    fn with_salesforce_objects(&self) {
        for object in [
            "Account",
            "Product2",
            "Order",
            "OrderItem",
            "Opportunity",
            "OpportunityLineItem",
            "Case",
        ] {
            let file = repo().join(format!("fixtures/salesforce/{object}.csv"));
            let text = std::fs::read_to_string(&file).unwrap();
            let header = text.lines().next().unwrap();
            let columns: Vec<String> = header.split(',').map(|c| format!("\"{c}\" text")).collect();
            self.psql(&format!(
                "CREATE TABLE \"{object}\" ({})",
                columns.join(", ")
            ));
            self.psql(&format!(
                "\\copy \"{object}\" FROM '{}' WITH (FORMAT csv, HEADER true)",
                file.display()
            ));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("pg");
        let mut c = if unsafe_free_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = c
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

fn unsafe_free_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The Salesforce mapping reading the database's tables of the same names instead of files.
fn database_mapping(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("mappings/salesforce.yaml")).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        match line
            .trim_start()
            .strip_prefix("file: ")
            .and_then(|f| f.strip_suffix(".csv"))
        {
            Some(object) => {
                out.push(line.replace(&format!("file: {object}.csv"), &format!("table: {object}")))
            }
            None => out.push(line.to_string()),
        }
    }
    let text = out.join("\n").replace("{ file: ", "{ table: ");
    let text = text.replace("table: Order.csv", "table: Order").replace(
        "table: OpportunityLineItem.csv",
        "table: OpportunityLineItem",
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[test]
fn a_postgresql_database_is_a_source_all_or_nothing_with_faults_located_by_row() {
    let pg = Postgres::start();
    pg.with_salesforce_objects();
    let tmp = tempfile::tempdir().unwrap();
    let (data, tiny) = (tmp.path().join("data"), tmp.path().join("tiny"));
    let mapping = database_mapping(tmp.path(), "tables", |t| t);
    let surveys = repo().join("fixtures/salesforce");
    let load = |mapping: &Path| {
        prism(
            &data,
            &[
                "load",
                "--from",
                &pg.url(),
                "--mapping",
                mapping.to_str().unwrap(),
                surveys.to_str().unwrap(),
            ],
        )
    };
    let out = load(&mapping);
    assert_committed(&out, "orders.csv (from table OrderItem)");
    assert!(
        prism(
            &tiny,
            &["load", repo().join("fixtures/tiny").to_str().unwrap()]
        )
        .status
        .success()
    );
    let ask = |d: &Path| {
        text(&prism(
            d,
            &[
                "query",
                "--metrics",
                "closed_revenue,open_pipeline,win_rate,csat_avg,avg_first_response_hours",
                "--by",
                "partner.partner_name",
                "--format",
                "csv",
            ],
        ))
    };
    assert_eq!(ask(&data), ask(&tiny));
    assert!(ask(&data).lines().count() > 2);

    // A stage the map does not know, in the row of a query: located by the query's row.
    pg.psql("UPDATE \"Opportunity\" SET \"StageName\" = 'Closed Maybe' WHERE \"Id\" = '0065g00000OP002AAA'");
    let faulty = database_mapping(tmp.path(), "ordered", |t| {
        t.replace(
            "    table: Opportunity\n",
            "    query: SELECT * FROM \"Opportunity\" ORDER BY \"Id\"\n",
        )
    });
    let out = load(&faulty);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the query of opportunities:2:5 (StageName (as stage)): `Closed Maybe`"),
        "{err}"
    );
    pg.psql("UPDATE \"Opportunity\" SET \"StageName\" = 'Closed Won' WHERE \"Id\" = '0065g00000OP002AAA'");

    // Killed while reading the database: the warehouse is as it was, and loads again.
    let before = std::fs::read_to_string(data.join("warehouse.json")).unwrap();
    let slow = database_mapping(tmp.path(), "slow", |t| {
        t.replace(
            "    table: Product2\n",
            "    query: SELECT p.* FROM \"Product2\" p, (SELECT pg_sleep(60)) s\n",
        )
    });
    let mut running = Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(&data)
        .args([
            "load",
            "--from",
            &pg.url(),
            "--mapping",
            slow.to_str().unwrap(),
        ])
        .arg(&surveys)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    running.kill().unwrap();
    running.wait().unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join("warehouse.json")).unwrap(),
        before
    );
    let out = load(&mapping);
    assert_committed(&out, "committed warehouse version 2");
    let leftovers = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mapped"))
        .count();
    assert_eq!(leftovers, 0, "the killed load's mapped files are cleared");
}
