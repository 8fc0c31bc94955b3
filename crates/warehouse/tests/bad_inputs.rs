//! Every kind of fault in an export, one small file each: the exact error a user sees, and a
//! warehouse that is exactly as it was.

mod common;

use common::*;
use prism_warehouse::{LoadMode, Warehouse, WarehouseError};

/// (case, file, its faulty content, the rejections expected, in order)
fn cases() -> Vec<(&'static str, &'static str, Vec<u8>, Vec<&'static str>)> {
    let orders = |f: &dyn Fn(&str) -> String| f(ORDERS).into_bytes();
    vec![
        ("quantity zero", "orders.csv",
            orders(&|s| s.replace("O-1,2,C-1,PR-2,P-1,2024-01-10,1,", "O-1,2,C-1,PR-2,P-1,2024-01-10,0,")),
            vec!["orders.csv:3:7 (quantity): quantity must be greater than 0, found 0 (a return is a line with negative revenue, not negative quantity)"]),
        ("probability above 100", "opportunities.csv",
            OPPORTUNITIES.replace("Proposal,10000,50", "Proposal,10000,101").into_bytes(),
            vec!["opportunities.csv:2:7 (probability): probability must be between 0 and 100, found 101"]),
        ("score above 5", "satisfaction_surveys.csv",
            SURVEYS.replace("2024-02-10,2", "2024-02-10,6").into_bytes(),
            vec!["satisfaction_surveys.csv:3:6 (score): score must be between 1 and 5, found 6"]),
        ("negative amount", "opportunities.csv",
            OPPORTUNITIES.replace("Closed Won,500.00", "Closed Won,-500.00").into_bytes(),
            vec!["opportunities.csv:3:6 (amount): amount must not be negative, found -500.00"]),
        ("first response before opening", "service_requests.csv",
            SERVICE_REQUESTS.replace("2024-01-10T08:30:00.250Z", "2024-01-10T07:59:59Z").into_bytes(),
            vec!["service_requests.csv:2:7 (first_response_at): first_response_at must not precede opened_at"]),
        ("resolution before opening once the offset is applied", "service_requests.csv",
            SERVICE_REQUESTS.replace("2024-01-10T12:00:00+02:00", "2024-01-10T09:00:00+02:00").into_bytes(),
            vec!["service_requests.csv:2:8 (resolved_at): resolved_at must not precede opened_at"]),
        ("unknown tier", "partners.csv",
            PARTNERS.replace("Silver,System", "Bronze,System").into_bytes(),
            vec!["partners.csv:3:3 (tier): tier must be one of Platinum, Gold, Silver, Registered, found \"Bronze\""]),
        ("unknown stage", "opportunities.csv",
            OPPORTUNITIES.replace("PR-1,Proposal,", "PR-1,Won,").into_bytes(),
            vec!["opportunities.csv:2:5 (stage): stage must be one of Prospecting, Qualification, Proposal, Negotiation, Closed Won, Closed Lost, found \"Won\""]),
        ("impossible date", "orders.csv",
            orders(&|s| s.replacen("2024-01-10", "2024-02-30", 1)),
            vec!["orders.csv:2:6 (order_date): not a calendar date: \"2024-02-30\""]),
        ("date in another format", "orders.csv",
            orders(&|s| s.replacen("2024-01-10", "01/10/2024", 1)),
            vec!["orders.csv:2:6 (order_date): not a date: expected YYYY-MM-DD, found \"01/10/2024\""]),
        ("timestamp with a space", "service_requests.csv",
            SERVICE_REQUESTS.replace("2024-02-01T09:00:00Z", "2024-02-01 09:00:00").into_bytes(),
            vec!["service_requests.csv:3:6 (opened_at): not a timestamp: expected YYYY-MM-DDTHH:MM:SS with optional fraction and Z or ±HH:MM, found \"2024-02-01 09:00:00\""]),
        ("money with three decimals", "orders.csv",
            orders(&|s| s.replace(",1200,800", ",1200.005,800")),
            vec!["orders.csv:4:8 (revenue): not an amount: more than 2 decimals, found \"1200.005\""]),
        ("money with a thousands separator", "orders.csv",
            orders(&|s| s.replace(",1200,800", ",\"1,200.00\",800")),
            vec!["orders.csv:4:8 (revenue): not an amount: only digits and one '.' are allowed (no thousands separators), found \"1,200.00\""]),
        ("integer that is not a number", "orders.csv",
            orders(&|s| s.replacen("O-1,1,", "O-1,one,", 1)),
            vec!["orders.csv:2:2 (line_number): not an integer: \"one\""]),
        ("boolean spelt otherwise", "opportunities.csv",
            OPPORTUNITIES.replace("2024-06-30,yes", "2024-06-30,maybe").into_bytes(),
            vec!["opportunities.csv:2:10 (deal_registered): not a boolean: expected true/false, 1/0 or yes/no, found \"maybe\""]),
        ("required field empty", "orders.csv",
            orders(&|s| s.replace("O-3,1,C-2,", "O-3,1,,")),
            vec!["orders.csv:5:3 (customer_id): customer_id is required but empty"]),
        ("required column missing", "orders.csv",
            b"order_id,line_number,customer_id,product_id,partner_id,order_date,quantity,cost\nO-1,1,C-1,PR-1,P-1,2024-01-10,2,1500.00\n".to_vec(),
            vec!["orders.csv:1 (revenue): required column revenue missing from the header (expected columns: order_id, line_number, partner_id, customer_id, product_id, order_date, quantity, revenue, cost)"]),
        ("column named twice", "customers.csv",
            CUSTOMERS.replacen("region,country", "region,region", 1).into_bytes(),
            vec!["customers.csv:1 (region): column \"region\" appears twice in the header"]),
        ("truncated last line", "orders.csv",
            orders(&|s| s.replace("O-3,1,C-2,PR-2,P-2,2024-03-05,1,-49.75,-30.00,return\n", "O-3,1,C-2,PR-2")),
            vec!["orders.csv:5: truncated row: 4 fields where the header has 10"]),
        ("more fields than the header", "satisfaction_surveys.csv",
            SURVEYS.replace("2024-01-12,5", "2024-01-12,5,extra").into_bytes(),
            vec!["satisfaction_surveys.csv:2: 7 fields where the header has 6"]),
        ("invalid UTF-8", "partners.csv",
            // "Müller" in Latin-1: the byte 0xFC is not UTF-8.
            PARTNERS.replace("Müller", "M\u{2}ller").bytes().map(|b| if b == 2 { 0xFC } else { b }).collect(),
            vec!["partners.csv:3:2 (partner_name): not valid UTF-8 (invalid byte at offset 1 of the field)"]),
        ("reference to an unknown partner", "orders.csv",
            orders(&|s| s.replace("O-1,2,C-1,PR-2,P-1,", "O-1,2,C-1,PR-2,P-9,")),
            vec!["orders.csv:3:5 (partner_id): unknown partner_id: \"P-9\" is neither in this export's partners.csv nor in the warehouse"]),
        ("duplicate key", "orders.csv",
            orders(&|s| format!("{s}O-1,2,C-2,PR-1,P-2,2024-04-01,1,10.00,,\n")),
            vec!["orders.csv:6:1 (order_id): duplicate key order_id, line_number = O-1, 2: an earlier row of this file has the same key"]),
        ("empty file", "satisfaction_surveys.csv",
            Vec::new(),
            vec!["satisfaction_surveys.csv:1: the file is empty: expected a header row naming the columns"]),
        ("a quoted line break before the bad row", "partners.csv",
            // P-1's name holds a line break, so P-2's row starts on line 4.
            PARTNERS.replace("\"Acme, \"\"Best\"\" Partners\"", "\"Acme,\nBest Partners\"").replace("Silver,System", "Bronze,System").into_bytes(),
            vec!["partners.csv:4:3 (tier): tier must be one of Platinum, Gold, Silver, Registered, found \"Bronze\""]),
        ("a blank line before the bad row", "orders.csv",
            orders(&|s| s.replacen("\nO-1,2,C-1,PR-2,P-1,2024-01-10,1,", "\n\nO-1,2,C-1,PR-2,P-1,2024-01-10,0,", 1)),
            vec!["orders.csv:4:7 (quantity): quantity must be greater than 0, found 0 (a return is a line with negative revenue, not negative quantity)"]),
        ("a campaign that ends before it starts", "campaigns.csv",
            CAMPAIGNS.replace("2024-01-01,2024-03-31", "2024-01-01,2023-12-31").into_bytes(),
            vec!["campaigns.csv:2:9 (end_on): end_on must not precede start_on"]),
        ("a campaign for an unknown product", "campaigns.csv",
            CAMPAIGNS.replace("P-1,PR-1,", "P-1,PR-9,").into_bytes(),
            vec!["campaigns.csv:2:4 (product_id): unknown product_id: \"PR-9\" is neither in this export's products.csv nor in the warehouse"]),
        ("a campaign's unknown size band", "campaigns.csv",
            CAMPAIGNS.replace("Healthcare,Enterprise", "Healthcare,Huge").into_bytes(),
            vec!["campaigns.csv:2:6 (target_size_band): target_size_band must be one of SMB, Mid-Market, Enterprise, found \"Huge\""]),
        ("an opportunity sourced by an unknown campaign", "opportunities.csv",
            OPPORTUNITIES.replace(",CA-2", ",CA-9").into_bytes(),
            vec!["opportunities.csv:3:11 (campaign_id): unknown campaign_id: \"CA-9\" is neither in this export's campaigns.csv nor in the warehouse"]),
        ("a registration decided before it was submitted", "deal_registrations.csv",
            DEAL_REGISTRATIONS.replace("2024-01-25,2024-02-04", "2024-01-25,2024-01-24").into_bytes(),
            vec!["deal_registrations.csv:3:7 (decided_on): decided_on must not precede submitted_on"]),
        ("a registration of an unknown opportunity", "deal_registrations.csv",
            DEAL_REGISTRATIONS.replace("Approved,OP-3", "Approved,OP-9").into_bytes(),
            vec!["deal_registrations.csv:3:9 (opportunity_id): unknown opportunity_id: \"OP-9\" is neither in this export's opportunities.csv nor in the warehouse"]),
        ("a registration's unknown status", "deal_registrations.csv",
            DEAL_REGISTRATIONS.replace(",Pending,", ",Waiting,").into_bytes(),
            vec!["deal_registrations.csv:5:8 (status): status must be one of Pending, Approved, Rejected, Expired, found \"Waiting\""]),
        ("a negative registered amount", "deal_registrations.csv",
            DEAL_REGISTRATIONS.replace("PR-2,50,", "PR-2,-50,").into_bytes(),
            vec!["deal_registrations.csv:5:5 (amount): amount must not be negative, found -50"]),
        ("funds paid beyond the claim", "mdf_requests.csv",
            MDF_REQUESTS.replace("4000,3500,3500", "4000,3500,3600").into_bytes(),
            vec!["mdf_requests.csv:2:8 (paid_amount): paid_amount must not be more than claimed_amount (3500)"]),
        ("funds paid without a claim", "mdf_requests.csv",
            MDF_REQUESTS.replace("4000,3500,3500", "4000,,3500").into_bytes(),
            vec!["mdf_requests.csv:2:8 (paid_amount): paid_amount is given without a claimed_amount: it must not be more than that"]),
        ("a negative approved amount", "mdf_requests.csv",
            MDF_REQUESTS.replace("1000,0,", "1000,-1,").into_bytes(),
            vec!["mdf_requests.csv:3:6 (approved_amount): approved_amount must not be negative, found -1"]),
        ("funds for an unknown campaign", "mdf_requests.csv",
            MDF_REQUESTS.replace("P-2,CA-2", "P-2,CA-7").into_bytes(),
            vec!["mdf_requests.csv:5:3 (campaign_id): unknown campaign_id: \"CA-7\" is neither in this export's campaigns.csv nor in the warehouse"]),
        ("a certification that expires before it is earned", "certifications.csv",
            CERTIFICATIONS.replace("2024-02-01,2024-03-15", "2024-02-01,2024-01-15").into_bytes(),
            vec!["certifications.csv:4:8 (expires_on): expires_on must not precede earned_on"]),
        ("a certification for a product line nobody sells", "certifications.csv",
            CERTIFICATIONS.replace("Support,Security", "Support,Storage").into_bytes(),
            vec!["certifications.csv:4:5 (product_line): unknown product_line: \"Storage\" is the product_line of no row in this export's products.csv nor in the warehouse"]),
        ("a certification's unknown track", "certifications.csv",
            CERTIFICATIONS.replace(",Technical,", ",Marketing,").into_bytes(),
            vec!["certifications.csv:2:4 (track): track must be one of Sales, Presales, Technical, Support, found \"Marketing\""]),
        ("a certification of an unknown partner", "certifications.csv",
            CERTIFICATIONS.replace("CE-3,P-2", "CE-3,P-7").into_bytes(),
            vec!["certifications.csv:4:2 (partner_id): unknown partner_id: \"P-7\" is neither in this export's partners.csv nor in the warehouse"]),
        ("several faults in one row are each reported", "opportunities.csv",
            OPPORTUNITIES.replace("OP-1,P-1,C-1,PR-1,Proposal,10000,50", "OP-1,P-1,C-9,PR-1,Proposal,10000,-1").into_bytes(),
            vec![
                "opportunities.csv:2:3 (customer_id): unknown customer_id: \"C-9\" is neither in this export's customers.csv nor in the warehouse",
                "opportunities.csv:2:7 (probability): probability must be between 0 and 100, found -1",
            ]),
    ]
}

fn rejections(e: WarehouseError) -> Vec<String> {
    match e {
        WarehouseError::Rejected(report) => report
            .file_errors
            .iter()
            .chain(report.files.iter().flat_map(|f| f.shown.iter()))
            .map(ToString::to_string)
            .collect(),
        other => panic!("expected a rejected load, got: {other}"),
    }
}

#[tokio::test]
async fn each_bad_input_is_rejected_with_its_location_and_reason_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let good = write_export(&tmp.path().join("good"), &base_files());
    load(&wh, &good, LoadMode::Upsert, false).await.unwrap();
    let before = everything(&wh).await;

    let mut failures = Vec::new();
    for (i, (case, file, content, expected)) in cases().into_iter().enumerate() {
        // The line a person opens in an editor, whatever the line endings: LF; CRLF (what Excel
        // and Python's csv module write); the two mixed; and no ending after the last line.
        for (ending, content) in line_endings(&content) {
            let name = format!("{case}, {ending}");
            let export = variant(
                &tmp.path().join(format!("case{i}-{ending}")),
                file,
                Some(&content),
            );
            // Both modes over LF; the other endings locate the same way in either mode.
            let modes: &[LoadMode] = if ending == "LF" {
                &[LoadMode::Upsert, LoadMode::Replace]
            } else {
                &[LoadMode::Upsert]
            };
            for &mode in modes {
                let got = match load(&wh, &export, mode, false).await {
                    Ok(_) => vec!["(the load was committed)".to_string()],
                    Err(e) => rejections(e),
                };
                // Replacing the warehouse, a rejected dimension row also takes the facts that
                // refer to it; each of those says so.
                let consistent = got == expected
                    || (mode == LoadMode::Replace
                        && got.len() > expected.len()
                        && got[..expected.len()] == expected[..]
                        && got[expected.len()..]
                            .iter()
                            .all(|r| r.contains("that was rejected")));
                if !consistent {
                    failures.push(format!(
                        "{name} ({mode}):\n  expected {expected:#?}\n  got      {got:#?}"
                    ));
                }
                assert_eq!(
                    everything(&wh).await,
                    before,
                    "{name} ({mode}) changed the warehouse"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A file's content with each kind of line ending: as written (LF), every line feed a CRLF,
/// every other one a CRLF, and without the ending of its last line.
fn line_endings(content: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut crlf = Vec::new();
    let mut mixed = Vec::new();
    for (i, line) in content.split_inclusive(|b| *b == b'\n').enumerate() {
        let ends = line.ends_with(b"\n");
        let body = if ends { &line[..line.len() - 1] } else { line };
        crlf.extend_from_slice(body);
        mixed.extend_from_slice(body);
        if ends {
            crlf.extend_from_slice(b"\r\n");
            mixed.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
        }
    }
    let unended = |c: &[u8]| {
        c.strip_suffix(b"\r\n")
            .or_else(|| c.strip_suffix(b"\n"))
            .unwrap_or(c)
            .to_vec()
    };
    vec![
        ("LF", content.to_vec()),
        ("CRLF", crlf.clone()),
        ("mixed", mixed),
        ("CRLF without a last ending", unended(&crlf)),
    ]
}

#[tokio::test]
async fn a_first_load_needs_every_dimension_with_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Option<&[u8]>, &str)> = vec![
        (
            "products.csv",
            None,
            "products.csv: products.csv is missing: a first load needs partners.csv, products.csv and customers.csv",
        ),
        (
            "partners.csv",
            Some(b"partner_id,partner_name,tier,partner_type,region,country,joined_on,status\n"),
            "partners.csv:1: partners.csv has a header but no rows: a first load needs at least one partner",
        ),
    ];
    for (i, (file, content, expected)) in cases.into_iter().enumerate() {
        let wh = Warehouse::open(tmp.path().join(format!("data{i}"))).unwrap();
        let export = variant(&tmp.path().join(format!("export{i}")), file, content);
        let got = rejections(
            load(&wh, &export, LoadMode::Upsert, false)
                .await
                .unwrap_err(),
        );
        // With partners empty, every fact row naming a partner is also rejected; the file
        // error comes first.
        assert_eq!(got[0], expected);
        assert!(
            wh.versions().unwrap().current().is_none(),
            "{file}: nothing may be committed"
        );
        assert!(
            !wh.dir().join("tables").exists()
                || std::fs::read_dir(wh.dir().join("tables"))
                    .unwrap()
                    .next()
                    .is_none()
        );
    }
}

#[tokio::test]
async fn an_absent_fact_file_means_no_rows_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let export = variant(&tmp.path().join("export"), "satisfaction_surveys.csv", None);
    let report = load(&wh, &export, LoadMode::Upsert, false).await.unwrap();
    assert_eq!(report.version, Some(1));
    assert!(
        !wh.snapshot(None)
            .unwrap()
            .version
            .tables
            .contains_key("satisfaction_surveys")
    );
    // Readers see an empty table, not a missing one.
    assert_eq!(
        query(&wh, None, "SELECT COUNT(*) FROM satisfaction_surveys").await,
        vec![vec!["0".to_string()]]
    );
}

#[tokio::test]
async fn the_partner_program_files_are_optional_on_a_first_load_and_may_come_later_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    // The seven files of a brand owner without a partner program: the opportunities name no
    // campaign either.
    let seven: Vec<(&str, Vec<u8>)> = base_files()
        .into_iter()
        .filter(|(n, _)| {
            ![
                "campaigns.csv",
                "deal_registrations.csv",
                "mdf_requests.csv",
                "certifications.csv",
            ]
            .contains(n)
        })
        .map(|(n, c)| {
            if n == "opportunities.csv" {
                let text = String::from_utf8(c)
                    .unwrap()
                    .replace(",CA-1", ",")
                    .replace(",CA-2", ",");
                (n, text.into_bytes())
            } else {
                (n, c)
            }
        })
        .collect();
    let first = write_export(&tmp.path().join("first"), &seven);
    load(&wh, &first, LoadMode::Upsert, false).await.unwrap();
    for table in [
        "campaigns",
        "deal_registrations",
        "mdf_requests",
        "certifications",
    ] {
        assert_eq!(
            query(&wh, None, &format!("SELECT COUNT(*) FROM {table}")).await,
            vec![vec!["0".to_string()]],
            "{table} reads as empty"
        );
    }
    // A later export with only registrations and certifications: their opportunities and
    // product lines are the warehouse's.
    let later = write_export(
        &tmp.path().join("later"),
        &[
            (
                "deal_registrations.csv",
                DEAL_REGISTRATIONS.as_bytes().to_vec(),
            ),
            ("certifications.csv", CERTIFICATIONS.as_bytes().to_vec()),
        ],
    );
    load(&wh, &later, LoadMode::Upsert, false).await.unwrap();
    assert_eq!(
        query(
            &wh,
            None,
            "SELECT COUNT(*), COUNT(opportunity_id) FROM deal_registrations"
        )
        .await,
        vec![vec!["6".to_string(), "3".to_string()]]
    );
    // A campaign named by fund requests must exist: here no campaign was ever loaded.
    let orphan = write_export(
        &tmp.path().join("orphan"),
        &[("mdf_requests.csv", MDF_REQUESTS.as_bytes().to_vec())],
    );
    let before = everything(&wh).await;
    let got = rejections(
        load(&wh, &orphan, LoadMode::Upsert, false)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        got,
        vec![
            "mdf_requests.csv:2:3 (campaign_id): unknown campaign_id: \"CA-1\" is neither in this export's campaigns.csv nor in the warehouse",
            "mdf_requests.csv:5:3 (campaign_id): unknown campaign_id: \"CA-2\" is neither in this export's campaigns.csv nor in the warehouse",
        ]
    );
    assert_eq!(everything(&wh).await, before);
}
