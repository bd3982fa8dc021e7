//! The DMS import on real SQLite (SQLCipher) files: a 50,000-row export in and again (nothing
//! changes), one bad row refuses the whole file, a Chinese XLSX through a shipped mapping, the dry
//! run's counts, the CLI's exit code, and the history with its same-part mark on the case page.

mod common;

use std::path::Path;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::json;
use servicebay::domain::Actor;
use servicebay::import::dms::{self, Counts, DmsImport, DmsReport};
use servicebay::keys::Secret;
use servicebay::store::Store;
use sha2::{Digest, Sha256};

const HEAD: &str = "客户姓名,手机号,车牌号,VIN,品牌,车型,年款,行驶里程,进厂日期,工单号,维修项目,配件名称,金额\n";
const OPS: &[(&str, &str)] =
    &[("右前门钣金喷漆", "右前门外板"), ("更换机油", "机油滤清器"), ("前保险杠喷漆", ""), ("四轮定位", ""), ("更换刹车片", "前刹车片")];

/// A VIN from a number: 17 characters of the allowed alphabet.
fn vin(i: usize) -> String {
    format!("LSV{:014}", i)
}

/// `vehicles` cars, each with its own customer and `visits` repair orders of `lines` lines.
fn export(vehicles: usize, visits: usize, lines: usize) -> String {
    let mut s = String::with_capacity(vehicles * visits * lines * 120);
    s.push_str(HEAD);
    for v in 0..vehicles {
        for h in 0..visits {
            for l in 0..lines {
                let (op, part) = OPS[(v + h + l) % OPS.len()];
                s.push_str(&format!(
                    "客户{v},139{:08},粤B{:05},{},大众,朗逸,2019,\"{},{:03}\",2024/{}/{},RO{v}-{h},{op},{part},{}.50\n",
                    v,
                    v % 100_000,
                    vin(v),
                    10 + h,
                    v % 1000,
                    1 + h % 12,
                    1 + h % 28,
                    100 + l
                ));
            }
        }
    }
    s
}

fn open(dir: &Path, key: &Secret) -> Store {
    Store::open(dir, key, 2).expect("store").0
}

/// A digest of every row of the imported tables (and `updated_at` with them).
fn checksum(dir: &Path, key: &Secret) -> String {
    let c = servicebay::store::open_keyed(&dir.join("servicebay.db"), key, true).expect("db");
    let mut h = Sha256::new();
    for (table, order) in [("customers", "id"), ("vehicles", "id"), ("service_history", "id")] {
        let mut st = c.prepare(&format!("SELECT * FROM {table} ORDER BY {order}")).unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i).unwrap();
                h.update(format!("{v:?}\u{1f}").as_bytes());
            }
            h.update(b"\n");
        }
    }
    hex::encode(h.finalize())
}

fn count(dir: &Path, key: &Secret, table: &str) -> i64 {
    let c = servicebay::store::open_keyed(&dir.join("servicebay.db"), key, true).expect("db");
    c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

async fn run(store: &Store, name: &str, bytes: Vec<u8>, mapping: &str, dry: bool) -> DmsReport {
    let (_, m) = dms::mapping(mapping).unwrap();
    DmsImport::new(store.clone()).run(&Actor::system("test"), name, bytes, &m, dry).await.expect("import")
}

fn c(new: usize, updated: usize, unchanged: usize) -> Counts {
    Counts { new, updated, unchanged }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_rows_import_and_a_second_import_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = Secret::random();
    let store = open(dir.path(), &key);
    let csv = export(5_000, 2, 5);
    assert_eq!(csv.lines().count(), 50_001);

    let t = Instant::now();
    let r1 = run(&store, "dms.csv", csv.clone().into_bytes(), "generic_zh", false).await;
    let s1 = t.elapsed().as_secs_f64();
    println!("first import: {} rows in {:.2} s = {:.0} rows/s (import {} ms)", r1.rows, s1, r1.rows as f64 / s1, r1.elapsed_ms);
    assert!(!r1.refused(), "{:?}", r1.errors);
    assert_eq!((r1.rows, r1.customers, r1.vehicles, r1.visits), (50_000, c(5_000, 0, 0), c(5_000, 0, 0), c(10_000, 0, 0)));
    let before = checksum(dir.path(), &key);

    let t = Instant::now();
    let r2 = run(&store, "dms.csv", csv.into_bytes(), "generic_zh", false).await;
    let s2 = t.elapsed().as_secs_f64();
    println!("second import: {} rows in {:.2} s = {:.0} rows/s (import {} ms)", r2.rows, s2, r2.rows as f64 / s2, r2.elapsed_ms);
    assert_eq!((r2.customers, r2.vehicles, r2.visits), (c(0, 0, 5_000), c(0, 0, 5_000), c(0, 0, 10_000)));
    assert_eq!(r2.file_sha256, r1.file_sha256);
    store.close();
    assert_eq!(checksum(dir.path(), &key), before, "the second import changed nothing, updated_at included");

    // The visits carry the parts their lines named; two runs and two audit rows, no personal data.
    let db = servicebay::store::open_keyed(&dir.path().join("servicebay.db"), &key, true).unwrap();
    let keys: String = db
        .query_row(
            "SELECT part_keys FROM service_history h JOIN vehicles v ON v.id = h.vehicle_id WHERE v.vin = ?1 AND h.ro_no = 'RO0-0'",
            [vin(0)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keys, r#"["door","engine","bumper","brakes"]"#);
    let audit: Vec<String> = db
        .prepare("SELECT outcome FROM audit_log WHERE action = 'import.dms' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(audit.len(), 2);
    assert!(audit[1].contains("customers +0 ~0") && audit[1].contains(&r1.file_sha256), "{}", audit[1]);
    assert!(!audit.iter().any(|a| a.contains("客户") || a.contains("13900000000") || a.contains("粤B")), "{audit:?}");
    let outbox: i64 = db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0)).unwrap();
    assert_eq!(outbox, 0, "customers and vehicles stay in the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_row_refuses_the_whole_file_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = Secret::random();
    let store = open(dir.path(), &key);
    let mut lines: Vec<String> = export(700, 1, 5).lines().map(str::to_string).collect();
    // Line 3,117 of the file (the header is line 1) gets a VIN of 16 characters.
    let bad = lines[3116].replacen(&vin(623), &vin(623)[..16], 1);
    assert_ne!(bad, lines[3116]);
    lines[3116] = bad;
    let r = run(&store, "dms.csv", (lines.join("\n") + "\n").into_bytes(), "generic_zh", false).await;
    assert!(r.refused());
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!((r.errors[0].line, r.errors[0].field.as_str()), (3117, "vin"));
    assert!(r.errors[0].message.contains("16 characters"), "{}", r.errors[0].message);
    assert_eq!((r.customers, r.vehicles, r.visits), (c(0, 0, 0), c(0, 0, 0), c(0, 0, 0)));
    store.close();
    for t in ["customers", "vehicles", "service_history"] {
        assert_eq!(count(dir.path(), &key, t), 0, "{t}: nothing imported");
    }
    assert_eq!(count(dir.path(), &key, "import_runs"), 1, "the refused attempt is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xlsx_with_chinese_headers_imports_through_a_shipped_mapping() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let head = [
        "车主",
        "联系电话",
        "牌照号",
        "车架号",
        "厂牌",
        "车型名称",
        "出厂年份",
        "进站里程",
        "结算日期",
        "委托书号",
        "维修内容",
        "材料名称",
        "结算金额",
    ];
    for (i, h) in head.iter().enumerate() {
        ws.write_string(0, i as u16, *h).unwrap();
    }
    let date_fmt = Format::new().set_num_format("yyyy-mm-dd");
    let rows: [(&str, f64, &str, (u16, u8, u8), &str, &str, &str, f64); 3] = [
        ("孙八", 13700001234.0, "LFV2A21K9G3012345", (2024, 3, 5), "WT240305", "右前门钣金喷漆", "右前门外板", 800.0),
        ("孙八", 13700001234.0, "LFV2A21K9G3012345", (2024, 3, 5), "WT240305", "更换左后视镜", "左后视镜总成", 450.5),
        ("周九", 13811112222.0, "LSGPC52U5AF123456", (2025, 1, 20), "WT250120", "常规保养", "机油", 380.0),
    ];
    for (r, (name, phone, vin, (y, m, d), ro, op, part, amount)) in rows.iter().enumerate() {
        let r = r as u32 + 1;
        ws.write_string(r, 0, *name).unwrap();
        ws.write_number(r, 1, *phone).unwrap();
        ws.write_string(r, 2, "京A·12345").unwrap();
        ws.write_string(r, 3, *vin).unwrap();
        ws.write_string(r, 4, "一汽-大众").unwrap();
        ws.write_string(r, 5, "速腾").unwrap();
        ws.write_number(r, 6, 2016.0).unwrap();
        ws.write_number(r, 7, 45_678.0).unwrap();
        ws.write_datetime_with_format(r, 8, &ExcelDateTime::from_ymd(*y, *m, *d).unwrap(), &date_fmt).unwrap();
        ws.write_string(r, 9, *ro).unwrap();
        ws.write_string(r, 10, *op).unwrap();
        ws.write_string(r, 11, *part).unwrap();
        ws.write_number(r, 12, *amount).unwrap();
    }
    let bytes = wb.save_to_buffer().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key = Secret::random();
    let store = open(dir.path(), &key);
    // The generic layout does not know these headers: the file names the missing column.
    let (_, generic) = dms::mapping("generic_zh").unwrap();
    let e = DmsImport::new(store.clone()).run(&Actor::system("test"), "导出.xlsx", bytes.clone(), &generic, false).await.unwrap_err();
    assert!(e.to_string().contains("no column for name"), "{e}");
    let r = run(&store, "导出.xlsx", bytes, "ro_lines_zh", false).await;
    assert!(!r.refused(), "{:?}", r.errors);
    assert_eq!((r.rows, r.customers, r.vehicles, r.visits), (3, c(2, 0, 0), c(2, 0, 0), c(2, 0, 0)));
    let history =
        store.read(|tx| -> Result<_, servicebay::store::StoreError> { servicebay::store::history::all_visits(tx) }).await.unwrap();
    let v = history.iter().find(|v| v.ro_no == "WT240305").unwrap();
    assert_eq!(v.visit_date, "2024-03-05");
    assert_eq!(v.operations, ["右前门钣金喷漆", "更换左后视镜"]);
    assert_eq!(v.part_keys, ["door", "mirror"]);
    assert_eq!((v.amount_fen, v.mileage_km), (Some(125_050), Some(45_678)));
    store.close();
    let db = servicebay::store::open_keyed(&dir.path().join("servicebay.db"), &key, true).unwrap();
    let (phone, plate, year): (String, String, i32) = db
        .query_row(
            "SELECT c.phone, v.plate, v.year FROM vehicles v JOIN customers c ON c.id = v.customer_id WHERE v.vin = 'LFV2A21K9G3012345'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((phone.as_str(), plate.as_str(), year), ("13700001234", "京A12345", 2016));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_counts_what_the_real_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let key = Secret::random();
    let store = open(dir.path(), &key);
    let first = export(300, 2, 2);
    run(&store, "a.csv", first.into_bytes(), "generic_zh", false).await;
    // The next export: 20 customers renamed, 10 cars with more kilometres, one more visit each for
    // 30 cars, and 50 new cars with new customers.
    let mut next: Vec<String> = export(300, 2, 2).lines().map(str::to_string).collect();
    for l in next.iter_mut().skip(1).take(80) {
        if let Some(rest) = l.strip_prefix("客户") {
            let v: usize = rest.split(',').next().unwrap().parse().unwrap();
            if v < 20 {
                *l = l.replacen(&format!("客户{v},"), &format!("新客户{v},"), 1);
            }
        }
    }
    for v in 100..110 {
        next.push(format!("客户{v},139{:08},,{},,,,\"99,000\",,,,,", v, vin(v)));
    }
    for v in 200..230 {
        next.push(format!("客户{v},139{:08},,{},,,,,2025-05-01,NEW{v},更换轮胎,轮胎,", v, vin(v)));
    }
    for v in 1000..1050 {
        next.push(format!("客户{v},139{:08},,{},,,,,2025-05-02,R{v},保养,,", v, vin(v)));
    }
    let bytes = (next.join("\n") + "\n").into_bytes();
    store.close();
    let before = checksum(dir.path(), &key);
    let store = open(dir.path(), &key);

    let dry = run(&store, "b.csv", bytes.clone(), "generic_zh", true).await;
    assert!(dry.dry_run && !dry.refused());
    assert_eq!((dry.customers, dry.vehicles, dry.visits), (c(50, 20, 280), c(50, 10, 290), c(80, 0, 600)));
    store.close();
    assert_eq!(checksum(dir.path(), &key), before, "the dry run wrote nothing");
    let store = open(dir.path(), &key);
    let real = run(&store, "b.csv", bytes, "generic_zh", false).await;
    assert_eq!((real.customers, real.vehicles, real.visits), (dry.customers, dry.vehicles, dry.visits));
    store.close();
    assert_ne!(checksum(dir.path(), &key), before);
    let db = servicebay::store::open_keyed(&dir.path().join("servicebay.db"), &key, true).unwrap();
    let runs: Vec<(i64, String)> = db
        .prepare("SELECT dry_run, counts FROM import_runs ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 0]);
    let km: i64 = db.query_row("SELECT mileage_km FROM vehicles WHERE vin = ?1", [vin(105)], |r| r.get(0)).unwrap();
    assert_eq!(km, 99_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_page_shows_the_history_and_marks_the_same_part() {
    let srv = common::Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (s, cu) = api.post("/api/v1/customers", &manager, json!({ "name": "周女士", "phone": "+86 138-0013-8000" })).await;
    assert_eq!(s, StatusCode::CREATED, "{cu}");
    let (s, car) = api.post("/api/v1/vehicles", &manager, json!({ "customer_id": cu["id"], "vin": "LSVAA4182E2123456" })).await;
    assert_eq!(s, StatusCode::CREATED, "{car}");
    let (_, k) =
        api.post("/api/v1/cases", &manager, json!({ "customer_id": cu["id"], "vehicle_id": car["id"], "summary": "右前门" })).await;
    let case = k["id"].as_str().unwrap().to_string();
    let (s, t) = api.post(&format!("/api/v1/cases/{case}/messages"), &manager, json!({ "text": "右前门有一道刮痕" })).await;
    assert_eq!(s, StatusCode::OK, "{t}");

    // The DMS history of that car, through the CLI while the daemon serves (same phone: same customer).
    let csv = format!(
        "{HEAD}周女士,13800138000,粤B12345,LSVAA4182E2123456,大众,朗逸,2019,30000,2023-06-01,RO-A,右前门钣金喷漆,,\n\
         周女士,13800138000,粤B12345,LSVAA4182E2123456,大众,朗逸,2019,41000,2024-08-15,RO-B,常规保养；更换空调滤芯,,\n"
    );
    let file = srv.dir.path().join("dms.csv");
    std::fs::write(&file, csv).unwrap();
    let config = srv.dir.path().join("cli.toml");
    std::fs::write(&config, common::config_text(srv.data_dir(), "127.0.0.1:0", "")).unwrap();
    let out = cli(&config, &["import", "dms", file.to_str().unwrap(), "--mapping", "generic_zh"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("customers: 0 new, 0 updated, 1 unchanged"), "{stdout}");
    assert!(stdout.contains("visits:    2 new"), "{stdout}");

    // A bad file: exit code 65 (EX_DATAERR) and the line named.
    std::fs::write(&file, format!("{HEAD}周女士,12345,,LSVAA4182E2123456,,,,,,,,,\n")).unwrap();
    let out = cli(&config, &["import", "dms", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(65), "{stdout}");
    assert!(stdout.contains("line 2: phone:"), "{stdout}");

    let (cookie, _) = api.form_login("manager", "manager-Permanent-Pw1").await;
    let r = api.form_client().get(format!("{}/cases/{case}", api.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let section = html.split("id=\"service-history\"").nth(1).expect("the history section").split("</section>").next().unwrap();
    let newer = section.find("2024-08-15").expect("the newer visit");
    let older = section.find("2023-06-01").expect("the older visit");
    assert!(newer < older, "newest first");
    assert!(section.contains("41000 公里") && section.contains("常规保养"), "{section}");
    assert_eq!(section.matches("上次维修同一部位").count(), 1, "only the door repair is marked: {section}");
    assert!(section[older..].contains("上次维修同一部位"), "{section}");
    srv.stop().await;
}

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_servicebay")).arg("--config").arg(config).args(args).output().expect("run servicebay")
}
