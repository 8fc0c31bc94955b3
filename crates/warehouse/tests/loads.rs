//! Loads that succeed: what is stored, upsert by key, replace, time travel, quarantine, and a
//! generated export end to end.

mod common;

use common::*;
use prism_warehouse::{LoadMode, Warehouse};

fn rows(v: &[&str]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| r.split('|').map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn values_are_stored_exactly_as_the_contract_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let export = write_export(&tmp.path().join("export"), &base_files());
    let report = load(&wh, &export, LoadMode::Upsert, false).await.unwrap();
    assert_eq!(report.version, Some(1));
    assert_eq!(
        report.files[4].warnings,
        vec!["orders.csv: unknown column \"note\" (column 10) is ignored"]
    );

    // Money is exact: 2400.00 + 99.50 + 1200 - 49.75, and the direct sale has no partner.
    assert_eq!(
        query(&wh, None, "SELECT SUM(revenue), SUM(CASE WHEN partner_id IS NULL THEN revenue END), COUNT(cost) FROM orders").await,
        rows(&["3649.75|1200.00|3"])
    );
    assert_eq!(
        query(
            &wh,
            None,
            "SELECT partner_name, country, joined_on FROM partners ORDER BY partner_id"
        )
        .await,
        rows(&[
            "Acme, \"Best\" Partners|Germany|2020-01-15",
            "Müller & Söhne||",
            "東京データ|Japan|2021-06-01"
        ])
    );
    // Enumerations are stored in the contract's spelling; booleans in every spelling.
    assert_eq!(
        query(&wh, None, "SELECT opportunity_id, stage, deal_registered FROM opportunities ORDER BY opportunity_id").await,
        rows(&["OP-1|Proposal|true", "OP-2|Closed Won|", "OP-3|Closed Lost|false"])
    );
    // Timestamps are UTC: no offset means UTC, +02:00 is taken off, fractions are kept.
    assert_eq!(
        query(&wh, None, "SELECT CAST(opened_at AS VARCHAR), CAST(first_response_at AS VARCHAR), CAST(resolved_at AS VARCHAR) FROM service_requests WHERE request_id = 'SR-1'").await,
        rows(&["2024-01-10T08:00:00Z|2024-01-10T08:30:00.250Z|2024-01-10T10:00:00Z"])
    );
    assert_eq!(
        query(
            &wh,
            None,
            "SELECT annual_revenue FROM customers ORDER BY customer_id"
        )
        .await,
        rows(&["2500000000.00", ""])
    );
}

#[tokio::test]
async fn a_later_export_replaces_rows_by_key_adds_new_ones_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    load(
        &wh,
        &write_export(&tmp.path().join("v1"), &base_files()),
        LoadMode::Upsert,
        false,
    )
    .await
    .unwrap();

    // O-1/1 is corrected, O-4/1 is new; the partners file moves P-2 to Gold; nothing else is sent.
    let update = write_export(&tmp.path().join("v2"), &[
        ("partners.csv", b"partner_id,partner_name,tier,partner_type,region,country,joined_on,status\nP-2,M\xc3\xbcller & S\xc3\xb6hne,Gold,System Integrator,EMEA,,,Active\n".to_vec()),
        ("orders.csv", b"order_id,line_number,partner_id,customer_id,product_id,order_date,quantity,revenue,cost\nO-1,1,P-1,C-1,PR-1,2024-01-10,3,3600.00,2250.00\nO-4,1,P-3,C-1,PR-2,2024-05-01,1,99.50,50.00\n".to_vec()),
    ]);
    let report = load(&wh, &update, LoadMode::Upsert, false).await.unwrap();
    assert_eq!(report.version, Some(2));
    let orders = report
        .files
        .iter()
        .find(|f| f.file == "orders.csv")
        .unwrap();
    assert_eq!((orders.added, orders.replaced), (1, 1));
    let partners = report
        .files
        .iter()
        .find(|f| f.file == "partners.csv")
        .unwrap();
    assert_eq!((partners.added, partners.replaced), (0, 1));

    assert_eq!(
        query(&wh, None, "SELECT order_id, line_number, quantity, revenue FROM orders ORDER BY order_id, line_number").await,
        rows(&["O-1|1|3|3600.00", "O-1|2|1|99.50", "O-2|1|1|1200.00", "O-3|1|1|-49.75", "O-4|1|1|99.50"])
    );
    assert_eq!(
        query(&wh, None, "SELECT tier FROM partners ORDER BY partner_id").await,
        rows(&["Gold", "Gold", "Registered"])
    );
    let current = wh.snapshot(None).unwrap().version;
    assert_eq!(current.tables["orders"].rows, 5);
    assert_eq!(current.tables["partners"].rows, 3);
    // Untouched tables keep their pin.
    let first = wh.snapshot(Some(1)).unwrap().version;
    assert_eq!(
        current.tables["satisfaction_surveys"],
        first.tables["satisfaction_surveys"]
    );

    // Time travel: version 1 still reads the rows as they were.
    assert_eq!(
        query(&wh, Some(1), "SELECT order_id, line_number, quantity, revenue FROM orders ORDER BY order_id, line_number").await,
        rows(&["O-1|1|2|2400.00", "O-1|2|1|99.50", "O-2|1|1|1200.00", "O-3|1|1|-49.75"])
    );
    assert_eq!(
        query(
            &wh,
            Some(1),
            "SELECT tier FROM partners WHERE partner_id = 'P-2'"
        )
        .await,
        rows(&["Silver"])
    );
    let err = wh.snapshot(Some(7)).unwrap_err().to_string();
    assert_eq!(err, "no warehouse version 7: versions 1 to 2 exist");
}

#[tokio::test]
async fn replace_makes_the_export_the_whole_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    load(
        &wh,
        &write_export(&tmp.path().join("v1"), &base_files()),
        LoadMode::Upsert,
        false,
    )
    .await
    .unwrap();
    let smaller = write_export(&tmp.path().join("v2"), &[
        ("partners.csv", PARTNERS.as_bytes().to_vec()),
        ("products.csv", PRODUCTS.as_bytes().to_vec()),
        ("customers.csv", CUSTOMERS.as_bytes().to_vec()),
        ("orders.csv", b"order_id,line_number,partner_id,customer_id,product_id,order_date,quantity,revenue,cost\nO-9,1,P-2,C-2,PR-2,2024-06-01,2,199.00,\n".to_vec()),
    ]);
    load(&wh, &smaller, LoadMode::Replace, false).await.unwrap();
    assert_eq!(
        query(&wh, None, "SELECT order_id, revenue FROM orders").await,
        rows(&["O-9|199.00"])
    );
    // Facts absent from a replacing export are empty afterwards.
    assert_eq!(
        query(&wh, None, "SELECT COUNT(*) FROM opportunities").await,
        rows(&["0"])
    );
    assert_eq!(
        query(&wh, None, "SELECT COUNT(*) FROM satisfaction_surveys").await,
        rows(&["0"])
    );
    assert_eq!(wh.snapshot(None).unwrap().version.tables["orders"].rows, 1);
    // The replaced version is still there to read.
    assert_eq!(
        query(&wh, Some(1), "SELECT COUNT(*) FROM orders").await,
        rows(&["4"])
    );
}

#[tokio::test]
async fn quarantine_loads_the_valid_rows_and_sets_each_rejected_row_aside_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let bad_orders = ORDERS
        .replace(
            "O-1,2,C-1,PR-2,P-1,2024-01-10,1,",
            "O-1,2,C-1,PR-2,P-1,2024-01-10,-1,",
        )
        .replace(
            "O-3,1,C-2,PR-2,P-2,",
            "O-3,1,C-2,PR-2,\"P-7, \"\"new\"\"\",",
        );
    let export = variant(
        &tmp.path().join("export"),
        "orders.csv",
        Some(bad_orders.as_bytes()),
    );
    let report = load(&wh, &export, LoadMode::Upsert, true).await.unwrap();
    assert_eq!(report.version, Some(1));
    let orders = report
        .files
        .iter()
        .find(|f| f.file == "orders.csv")
        .unwrap();
    assert_eq!(
        (orders.rows_read, orders.rows_loaded, orders.rows_rejected),
        (4, 2, 2)
    );
    assert_eq!(
        query(
            &wh,
            None,
            "SELECT order_id, line_number FROM orders ORDER BY order_id"
        )
        .await,
        rows(&["O-1|1", "O-2|1"])
    );

    let rejects = std::fs::read_to_string(report.rejects_dir.unwrap().join("orders.csv")).unwrap();
    assert_eq!(
        rejects,
        "order_id,line_number,customer_id,product_id,partner_id,order_date,quantity,revenue,cost,note,reject_line,reject_reason\n\
        O-1,2,C-1,PR-2,P-1,2024-01-10,-1,99.50,,,3,\"quantity: quantity must be greater than 0, found -1 (a return is a line with negative revenue, not negative quantity)\"\n\
        O-3,1,C-2,PR-2,\"P-7, \"\"new\"\"\",2024-03-05,1,-49.75,-30.00,return,5,\"partner_id: unknown partner_id: \"\"P-7, \\\"\"new\\\"\"\"\" is neither in this export's partners.csv nor in the warehouse\"\n"
    );
    assert_eq!(
        wh.snapshot(None).unwrap().version.changes["orders"].rejected,
        2
    );

    // The full report lists every rejection with its place.
    let report_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report.report_path).unwrap()).unwrap();
    let lines: Vec<u64> = report_json["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 5]);
    assert_eq!(report_json["summary"]["committed"], true);
}

#[tokio::test]
async fn a_generated_export_loads_whole_and_status_counts_what_the_generator_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let (export, summary, wh) = generated(tmp.path(), 0.02, 7);
    let report = load(&wh, &export, LoadMode::Upsert, false).await.unwrap();
    assert_eq!(
        report.rows_rejected(),
        0,
        "the generator writes only valid rows"
    );
    let snapshot = wh.snapshot(None).unwrap();
    for (entity, written) in &summary.rows {
        assert_eq!(
            snapshot.version.tables[entity.name()].rows,
            *written,
            "{entity}"
        );
        let counted = query(
            &wh,
            None,
            &format!("SELECT COUNT(*) FROM {}", entity.name()),
        )
        .await;
        assert_eq!(counted, rows(&[&written.to_string()]), "{entity}");
    }
    // Direct sales exist, and so do partners with revenue.
    let direct = query(&wh, None, "SELECT COUNT(*) > 0, COUNT(partner_id) > 0 FROM orders WHERE partner_id IS NULL OR partner_id IS NOT NULL").await;
    assert_eq!(direct, rows(&["true|true"]));
    // A grouping by partner is planned with the step that looks up each run of one partner's
    // rows once, and its groups add up to the totals taken without grouping.
    let plan = query(
        &wh,
        None,
        "EXPLAIN SELECT partner_id, SUM(revenue) FROM orders GROUP BY partner_id",
    )
    .await;
    assert!(
        plan.iter()
            .flatten()
            .any(|cell| cell.contains("RunsAggregateExec")),
        "{plan:?}"
    );
    let grouped = query(
        &wh,
        None,
        "SELECT SUM(s), SUM(n), COUNT(*) FROM \
         (SELECT partner_id, SUM(revenue) AS s, COUNT(*) AS n FROM orders GROUP BY partner_id)",
    )
    .await;
    let whole = query(
        &wh,
        None,
        "SELECT SUM(revenue), COUNT(*), \
         COUNT(DISTINCT partner_id) + MAX(CASE WHEN partner_id IS NULL THEN 1 ELSE 0 END) \
         FROM orders",
    )
    .await;
    assert_eq!(grouped, whole);
}

#[tokio::test]
async fn a_duplicate_key_far_from_its_first_row_is_found_and_only_the_later_row_set_aside() {
    // Rows are validated in chunks on several threads; a key repeated in another chunk must
    // still be found, in file order.
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    let summary = prism_generator::generate(&prism_generator::GenerateConfig {
        out: export.clone(),
        scale: 0.06,
        seed: 5,
        partners: None,
        customers: None,
    })
    .unwrap();
    let orders_written = summary.rows_of(prism_contract::Entity::Orders);
    assert!(orders_written > 40_000, "the file spans several chunks");
    let path = export.join("orders.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let second_line = text.lines().nth(1).unwrap().to_string();
    std::fs::write(&path, format!("{text}{second_line}\n")).unwrap();
    let last_line = orders_written + 2;

    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let err = load(&wh, &export, LoadMode::Upsert, false)
        .await
        .unwrap_err();
    let prism_warehouse::WarehouseError::Rejected(report) = err else {
        panic!("rejected load expected")
    };
    let orders = report
        .files
        .iter()
        .find(|f| f.file == "orders.csv")
        .unwrap();
    assert_eq!(orders.shown.len(), 1);
    assert_eq!(orders.shown[0].line, last_line);
    assert!(
        orders.shown[0]
            .reason
            .starts_with("duplicate key order_id, line_number = "),
        "{}",
        orders.shown[0].reason
    );

    let report = load(&wh, &export, LoadMode::Upsert, true).await.unwrap();
    let orders = report
        .files
        .iter()
        .find(|f| f.file == "orders.csv")
        .unwrap();
    assert_eq!(
        (orders.rows_read, orders.rows_loaded, orders.rows_rejected),
        (orders_written + 1, orders_written, 1)
    );
    assert_eq!(
        query(&wh, None, "SELECT COUNT(*) FROM orders").await,
        rows(&[&orders_written.to_string()])
    );
}

#[tokio::test]
async fn order_lines_are_stored_so_that_a_product_s_and_a_partner_s_lines_each_lie_in_few_pages() {
    use arrow::array::AsArray;
    let tmp = tempfile::tempdir().unwrap();
    let (export, _, wh) = generated(tmp.path(), 0.1, 11);
    load(&wh, &export, LoadMode::Upsert, false).await.unwrap();
    // For each column, summed over its values: the pages a filter on the value reads (those
    // of 4,096 rows, as written, whose least and greatest value hold it, as a reader prunes
    // them), and all the pages of
    // the row groups the value is in (what it reads when the rows are in no useful order).
    let mut read: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    let mut lines = 0;
    for file in std::fs::read_dir(tmp.path().join("data/tables/orders")).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let open = || {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&path).unwrap(),
            )
            .unwrap()
        };
        for group in 0..open().metadata().num_row_groups() {
            for column in ["product_id", "partner_id"] {
                let mut values: Vec<Option<String>> = Vec::new();
                for batch in open().with_row_groups(vec![group]).build().unwrap() {
                    let batch = batch.unwrap();
                    let c = batch.column(batch.schema().index_of(column).unwrap());
                    values.extend(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)));
                }
                if column == "product_id" {
                    lines += values.len();
                }
                let pages: Vec<(String, String)> = values
                    .chunks(4096)
                    .filter_map(|page| {
                        let present = page.iter().flatten();
                        Some((present.clone().min()?.clone(), present.max()?.clone()))
                    })
                    .collect();
                let distinct: std::collections::BTreeSet<&String> =
                    values.iter().flatten().collect();
                let entry = read.entry(column).or_default();
                for v in distinct {
                    entry.0 += pages.iter().filter(|(lo, hi)| lo <= v && v <= hi).count();
                    entry.1 += pages.len();
                }
            }
        }
    }
    assert!(
        lines > 16 * 4096,
        "enough order lines for many pages: {lines}"
    );
    // In one column's order a filter on the other reads every page; here a filter on either
    // reads at most half the pages its row groups have (a fifth to a third here, where a row
    // group has 25 pages; about a sixteenth at scale 100, where it has 256).
    for (column, (pages_read, pages)) in &read {
        assert!(
            *pages_read * 2 <= *pages,
            "a filter on one {column} reads {pages_read} of {pages} pages, summed over its values"
        );
    }
    // Every line is stored once.
    assert_eq!(
        query(&wh, None, "SELECT COUNT(*) FROM orders").await,
        rows(&[&format!("{lines}")])
    );
}

/// Each page of the Parquet files in `dir` (staged by a first load or rewritten by a merge): its
/// column, its rows, and the bytes of its column chunk's dictionary.
fn pages_of(dir: &std::path::Path) -> Vec<(String, usize, i64)> {
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    let mut pages = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            std::fs::File::open(&path).unwrap(),
            ArrowReaderOptions::new()
                .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required),
        )
        .unwrap();
        let meta = reader.metadata();
        let offsets = meta.offset_index().expect("the files carry a page index");
        for (g, group) in meta.row_groups().iter().enumerate() {
            for (c, chunk) in group.columns().iter().enumerate() {
                // The order lines' numbers (as the data contract types them) bit-packed by
                // their differences, not compressed again; their text in LZ4.
                let column = chunk.column_path().string();
                let number = ["line_number", "quantity", "revenue", "cost"].contains(&&*column);
                assert_eq!(
                    chunk.compression(),
                    match number {
                        true => parquet::basic::Compression::UNCOMPRESSED,
                        false => parquet::basic::Compression::LZ4_RAW,
                    },
                    "{}: every file of a table is written alike ({column})",
                    path.display()
                );
                let packed = chunk
                    .encodings()
                    .any(|e| e == parquet::basic::Encoding::DELTA_BINARY_PACKED);
                assert_eq!(
                    packed,
                    number,
                    "{column}: {:?}",
                    chunk.encodings().collect::<Vec<_>>()
                );
                let dictionary = chunk
                    .dictionary_page_offset()
                    .map_or(0, |d| chunk.data_page_offset() - d);
                let starts: Vec<i64> = offsets[g][c]
                    .page_locations()
                    .iter()
                    .map(|p| p.first_row_index)
                    .chain([group.num_rows()])
                    .collect();
                for w in starts.windows(2) {
                    pages.push((
                        chunk.column_path().string(),
                        (w[1] - w[0]) as usize,
                        dictionary,
                    ));
                }
            }
        }
    }
    pages
}

#[tokio::test]
async fn order_lines_are_written_in_small_pages_with_small_dictionaries_by_every_load() {
    let tmp = tempfile::tempdir().unwrap();
    let (export, summary, wh) = generated(tmp.path(), 0.02, 11);
    load(&wh, &export, LoadMode::Upsert, false).await.unwrap();
    // The same export again: every key matches, so the merge rewrites every file it touches.
    load(&wh, &export, LoadMode::Upsert, false).await.unwrap();
    let pages = pages_of(&tmp.path().join("data/tables/orders"));
    let files = std::fs::read_dir(tmp.path().join("data/tables/orders"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "parquet")
        })
        .count();
    assert!(files >= 2, "the merge wrote files of its own: {files}");
    let lines = summary
        .rows
        .iter()
        .find(|(e, _)| e.name() == "orders")
        .unwrap()
        .1 as usize;
    assert!(
        lines > 4 * 4096,
        "enough order lines for several pages: {lines}"
    );
    // A product's lines are a few thousand of a row group: its pages are what a question about
    // it reads, so they hold at most 4,096 rows (Parquet's default is 20,000).
    let customer_pages: Vec<usize> = pages
        .iter()
        .filter(|(c, ..)| c == "customer_id")
        .map(|(_, rows, _)| *rows)
        .collect();
    assert_eq!(customer_pages.iter().sum::<usize>(), 2 * lines);
    assert!(
        pages.iter().all(|(_, rows, _)| *rows <= 4096),
        "a page of more than 4,096 rows: {:?}",
        pages.iter().find(|(_, rows, _)| *rows > 4096)
    );
    // The customer ids (one for every few lines) outgrow a dictionary of 64 KB, which a read of
    // any of the row group's pages decodes whole; the few products keep theirs.
    let dictionary = |column: &str| {
        pages
            .iter()
            .filter(|(c, ..)| c == column)
            .map(|(.., d)| *d)
            .max()
            .unwrap()
    };
    assert!(
        dictionary("customer_id") > 0 && dictionary("customer_id") <= 64 * 1024 + 1024,
        "customer ids' dictionary: {} bytes",
        dictionary("customer_id")
    );
    assert!(dictionary("product_id") > 0);
}
