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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text(&out).contains("orders.csv (from OrderItem.csv)"),
        "{}",
        text(&out)
    );
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

    // A stage the value map does not know: Opportunity.csv, line 3, StageName (column 5).
    let export = broken(tmp.path(), "Opportunity.csv", |t| {
        t.replace("Closed Won", "Closed Maybe")
    });
    let out = load_salesforce(&data, &export);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Opportunity.csv:3:5 (StageName (as stage)): `Closed Maybe` is not a value the mapping knows"),
        "{err}"
    );
    assert!(!data.join("warehouse.json").exists(), "nothing is loaded");

    // A fault the contract finds (a negative quantity), located in the original line item:
    // OrderItem.csv, line 4, Quantity (column 5).
    let tmp2 = tempfile::tempdir().unwrap();
    let export = broken(tmp2.path(), "OrderItem.csv", |t| {
        t.replace(
            "8015g00000OR002AAA,0000000003,01t5g00000PR001AAA,1,",
            "8015g00000OR002AAA,0000000003,01t5g00000PR001AAA,-1,",
        )
    });
    let out = load_salesforce(&data, &export);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("OrderItem.csv:4:5 (Quantity (as quantity))"),
        "{err}"
    );
    assert!(!data.join("warehouse.json").exists(), "nothing is loaded");

    // A fault in a joined file (an order's date), located there: Order.csv, line 2,
    // EffectiveDate (column 5).
    let tmp3 = tempfile::tempdir().unwrap();
    let export = broken(tmp3.path(), "Order.csv", |t| {
        t.replace("2024-01-10", "10/01/2024")
    });
    let out = load_salesforce(&data, &export);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Order.csv:2:5 (EffectiveDate (as order_date))"),
        "{err}"
    );

    // A column the mapping names and the export lacks: refused before reading a row.
    let tmp4 = tempfile::tempdir().unwrap();
    let export = broken(tmp4.path(), "Case.csv", |t| {
        t.replace("Priority", "Urgency")
    });
    let out = load_salesforce(&data, &export);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "entities.service_requests.fields.priority: Case.csv has no column `Priority`"
        ),
        "{err}"
    );
    assert!(!data.join("warehouse.json").exists(), "nothing is loaded");
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
