//! Data protection on the box, through the real binary: nothing personal readable on disk or in a
//! backup, the database refuses the wrong key and explains a lost one, a backup taken under write
//! load restores with every acknowledged write and its photos, an erased customer's photos stay
//! unreadable in older backups, retention removes what is due except held cases, key rotation.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Daemon;
use reqwest::StatusCode;
use serde_json::json;

const NAME: &str = "隐私测试王五";
const PHONE: &str = "13912345678";
const PLATE: &str = "沪Z98765";

fn sb(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servicebay")).arg("--config").arg(config).args(args).output().expect("run servicebay")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn photo(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(96, 64, |x, y| image::Rgb([x as u8 ^ seed, y as u8 * 3, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A customer with a vehicle, a case and two photos; returns (customer id, case id, photo bytes).
async fn customer_with_photos(api: &common::Api, token: &str, name: &str, phone: &str, plate: &str) -> (String, String, Vec<u8>) {
    let (s, c) = api.post("/api/v1/customers", token, json!({ "name": name, "phone": phone })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let cid = c["id"].as_str().unwrap().to_string();
    let (s, v) = api.post("/api/v1/vehicles", token, json!({ "customer_id": cid, "plate": plate })).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, k) =
        api.post("/api/v1/cases", token, json!({ "customer_id": cid, "summary": format!("{name} 的车门刮痕，电话 {phone}") })).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let case = k["id"].as_str().unwrap().to_string();
    let first = photo(phone.as_bytes()[10]);
    common::upload(api, token, &case, first.clone()).await;
    common::upload(api, token, &case, photo(7)).await;
    (cid, case, first)
}

/// A daemon on its own data directory with an activated manager: (daemon, api, manager token).
async fn started(root: &Path) -> (Daemon, common::Api, String) {
    let mut d = Daemon::new(root);
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let m = api.manager().await;
    (d, api, m)
}

fn keys_for(data_dir: &Path) -> Arc<servicebay::keys::Keys> {
    let cfg = servicebay::keys::KeyConfig {
        key_dir: common::key_dir(data_dir),
        data_dir: data_dir.to_path_buf(),
        require_tpm: false,
        credentials_dir: None,
    };
    Arc::new(servicebay::keys::Keys::load(&cfg).expect("keys"))
}

/// A second config on the same box (same key directory), for restoring into a fresh data dir.
fn restore_config(root: &Path, keys_of: &Path, name: &str) -> (PathBuf, PathBuf) {
    let data = root.join(name).join("data");
    let cfg = root.join(format!("{name}.toml"));
    let body = common::config_text(&data, "127.0.0.1:0", "").replace(
        &format!("key_dir = \"{}\"", common::key_dir(&data).display()),
        &format!("key_dir = \"{}\"", common::key_dir(keys_of).display()),
    );
    std::fs::write(&cfg, body).unwrap();
    (cfg, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_is_readable_on_disk_or_in_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, api, m) = started(tmp.path()).await;
    let (cid, _, _) = customer_with_photos(&api, &m, NAME, PHONE, PLATE).await;
    // A read of personal data is audited (kept so).
    let (s, _) = api.get(&format!("/api/v1/customers/{cid}"), &m).await;
    assert_eq!(s, StatusCode::OK);
    let backup = tmp.path().join("b1.sbbackup");
    let o = sb(&d.config, &["backup", "--out", backup.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 photos"), "{}", text(&o));

    // The data directory (database, WAL, photos) and the backup: the name, phone and plate never
    // appear, in UTF-8 or as the photo's pixels' file.
    let data = d.data_dir();
    let mut scanned = files_under(&data);
    scanned.push(backup.clone());
    assert!(scanned.iter().any(|p| p.ends_with("servicebay.db-wal")), "the WAL is scanned too: {scanned:?}");
    assert!(scanned.iter().filter(|p| p.starts_with(data.join("photos"))).count() >= 2);
    for p in &scanned {
        let bytes = std::fs::read(p).unwrap();
        for needle in [NAME, PHONE, PLATE, "沪Z"] {
            assert!(!contains(&bytes, needle), "{needle} found in {}", p.display());
        }
    }
    let db = std::fs::read(data.join("servicebay.db")).unwrap();
    assert!(!db.starts_with(b"SQLite format 3"), "the database file has no SQLite header");

    // Without the key: a clear refusal, never garbage.
    let err = servicebay::store::open_keyed(&data.join("servicebay.db"), &servicebay::keys::Secret::random(), true).unwrap_err();
    assert!(err.to_string().contains("does not open with this appliance's key"), "{err}");
    // Through the daemon's own key the data is there, and the read was audited.
    let conn = common::db(&data);
    let phone: String = conn.query_row("SELECT phone FROM customers WHERE id = ?1", [&cid], |r| r.get(0)).unwrap();
    assert_eq!(phone, PHONE);
    let reads: i64 =
        conn.query_row("SELECT COUNT(*) FROM audit_log WHERE action = 'customer.read' AND target_id = ?1", [&cid], |r| r.get(0)).unwrap();
    assert!(reads >= 1);
    drop(conn);
    d.stop();

    // A lost key is explained, with its own exit code, and no new key is made in its place.
    let keys = common::key_dir(&data);
    std::fs::rename(keys.join("master.key"), tmp.path().join("escrow.key")).unwrap();
    let o = sb(&d.config, &["key", "status"]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(text(&o).contains("the master key is missing") && text(&o).contains("escrow"), "{}", text(&o));
    assert!(!keys.join("master.key").exists());
    std::fs::rename(tmp.path().join("escrow.key"), keys.join("master.key")).unwrap();
    let o = sb(&d.config, &["key", "status"]);
    assert!(o.status.success() && text(&o).contains("mode         key file"), "{}", text(&o));
    // A store that demands the TPM refuses to start on this box (no TPM here).
    let strict = tmp.path().join("strict.toml");
    std::fs::write(&strict, std::fs::read_to_string(&d.config).unwrap().replace("[storage]\n", "[storage]\nrequire_tpm = true\n")).unwrap();
    let o = sb(&strict, &["serve"]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(text(&o).contains("require_tpm = true"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_acknowledged_write_and_its_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, api, m) = started(tmp.path()).await;
    let (cid, _, first) = customer_with_photos(&api, &m, NAME, PHONE, PLATE).await;

    // Writers create cases without pause; every id the API acknowledged is recorded.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (api, m, cid, acked, stop) = (api.clone(), m.clone(), cid.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (s, k) = api.post("/api/v1/cases", &m, json!({ "customer_id": cid, "summary": format!("load {w}-{i}") })).await;
                if s == StatusCode::CREATED {
                    acked.lock().unwrap().push(k["id"].as_str().unwrap().to_string());
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before: Vec<String> = acked.lock().unwrap().clone();
    assert!(before.len() > 10, "the load runs: {}", before.len());
    let backup = tmp.path().join("drill.sbbackup");
    let cfg = d.config.clone();
    let out = backup.clone();
    let o = tokio::task::spawn_blocking(move || sb(&cfg, &["backup", "--out", out.to_str().unwrap()])).await.unwrap();
    assert!(o.status.success(), "{}", text(&o));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let during = acked.lock().unwrap().len();
    assert!(during > before.len(), "writes went on while the backup ran");

    // Restore on a fresh directory of the same box: every write acknowledged before the backup
    // began is there, the integrity check is ok, and the photos decrypt.
    let (cfg2, data2) = restore_config(tmp.path(), &d.data_dir(), "restored");
    let o = sb(&cfg2, &["restore", backup.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("integrity check: ok"), "{}", text(&o));
    assert!(text(&o).contains("photos: 2 decrypt; 0 belong"), "{}", text(&o));
    let conn = common::db_with_keys(&data2, &common::key_dir(&d.data_dir()));
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    for id in &before {
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM cases WHERE id = ?1", [id], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "acknowledged case {id} is in the backup");
    }
    let photos: Vec<(String, String)> = conn
        .prepare("SELECT case_id, sha256 FROM photos")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let files = servicebay::files::PhotoFiles::new(data2.join("photos"), keys_for(&d.data_dir()));
    let bytes: Vec<Vec<u8>> = photos.iter().map(|(c, s)| files.read(c, s).expect("decrypts")).collect();
    assert!(bytes.contains(&first), "the photo comes back byte for byte");
    // Restoring over a database is refused.
    let o = sb(&cfg2, &["restore", backup.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(65), "{}", text(&o));
    assert!(text(&o).contains("restore only into an empty directory"), "{}", text(&o));
    // A file that is not a backup, or a truncated one, is refused with the reason; nothing is left.
    let (cfg3, data3) = restore_config(tmp.path(), &d.data_dir(), "junk");
    let junk = tmp.path().join("junk.sbbackup");
    let whole = std::fs::read(&backup).unwrap();
    for (what, bytes) in [("garbage", b"PK\x03\x04 not really a zip".to_vec()), ("truncated", whole[..whole.len() / 2].to_vec())] {
        std::fs::write(&junk, bytes).unwrap();
        let o = sb(&cfg3, &["restore", junk.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(65), "{what}: {}", text(&o));
        assert!(text(&o).contains("is not a ServiceBay backup"), "{what}: {}", text(&o));
        assert!(!data3.join("servicebay.db").exists(), "{what}: no database left behind");
    }
    // And a restore while the daemon serves that directory is refused.
    let o = sb(&d.config, &["restore", backup.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("stop it first"), "{}", text(&o));
    // The daemon reports the backup's age.
    let (s, st) = api.get("/api/v1/protection/status", &m).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["key_mode"], "key file");
    assert!(st["backup_age_secs"].as_i64().is_some_and(|a| (0..600).contains(&a)), "{st}");
    let metrics = api.client.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("servicebay_backup_age_seconds ") && !l.ends_with(" -1")), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_customer_is_gone_from_the_box_and_unreadable_in_older_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, api, m) = started(tmp.path()).await;
    let (cid, case, first) = customer_with_photos(&api, &m, NAME, PHONE, PLATE).await;
    let (other, other_case, _) = customer_with_photos(&api, &m, "另一位客户", "13700001111", "沪A00001").await;
    // A timeline reason that holds the customer's words (erasure blanks it; nothing else may change).
    let (s, v) = api.post(&format!("/api/v1/cases/{case}/escalate"), &m, json!({ "reason": format!("{NAME}要求回电 {PHONE}") })).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Export: JSON plus the photos, from the CLI; audited.
    let zip_path = tmp.path().join("export.zip");
    let o = sb(&d.config, &["customer", "export", &cid, "--out", zip_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut json_text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("customer.json").unwrap(), &mut json_text).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(v["customer"][0]["phone"], PHONE);
    assert_eq!(v["vehicles"][0]["plate"], PLATE);
    assert_eq!(v["photos"].as_array().unwrap().len(), 2);
    let mut exported = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        if f.name().unwrap().starts_with("photos/") {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).unwrap();
            exported.push(b);
        }
    }
    assert!(exported.contains(&first), "the export holds the photo itself");
    // The API export is the same data, and the manager only may ask.
    let r = api.client.get(format!("{}/api/v1/privacy/customers/{cid}/export", api.base)).bearer_auth(&m).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let (_, advisor) = api.user(&m, "li", "advisor").await;
    let (s, _) = api.get(&format!("/api/v1/privacy/customers/{cid}/export"), &advisor).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let before = tmp.path().join("before.sbbackup");
    assert!(sb(&d.config, &["backup", "--out", before.to_str().unwrap()]).status.success());

    // A legal hold stops an erasure; a wrong confirmation too.
    let (s, _) = api.post(&format!("/api/v1/cases/{other_case}/legal-hold"), &m, json!({ "reason": "交通事故诉讼" })).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api.post(&format!("/api/v1/privacy/customers/{other}/erase"), &m, json!({ "confirm": other })).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("legal_hold")), "{v}");
    // Hostile input on these routes: a clear 400 naming the field, nothing written.
    for reason in ["", "原因\u{0}", "控\u{1b}[31m", &"长".repeat(201)] {
        let (s, v) = api.post(&format!("/api/v1/cases/{case}/legal-hold"), &m, json!({ "reason": reason })).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")), "{reason:?}: {v}");
    }
    let (s, v) = api.post(&format!("/api/v1/cases/{case}/legal-hold"), &m, json!({ "reason": "x", "extra": 1 })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    for q in ["", "%00", "1%0A2", &"9".repeat(65)] {
        let (s, v) = api.get(&format!("/api/v1/privacy/customers?q={q}"), &m).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q:?}: {v}");
    }
    let (s, v) = api.post("/api/v1/privacy/customers/no-such-customer/erase", &m, json!({ "confirm": "no-such-customer" })).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = api.get(&format!("/api/v1/privacy/customers?q={PHONE}"), &advisor).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an advisor cannot look people up for a request");
    let held: i64 =
        common::db(&d.data_dir()).query_row("SELECT COUNT(*) FROM cases WHERE legal_hold IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(held, 1, "only the one real hold");
    let (s, v) = api.post(&format!("/api/v1/privacy/customers/{cid}/erase"), &m, json!({ "confirm": "someone-else" })).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("confirm_mismatch")), "{v}");
    let o = sb(&d.config, &["customer", "erase", &cid]);
    assert_eq!(o.status.code(), Some(65), "erasure needs --yes: {}", text(&o));

    let o = sb(&d.config, &["customer", "erase", &cid, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    // Live: tombstones, photos gone (410), the erasure queued for HQ, both requests audited.
    let conn = common::db(&d.data_dir());
    let (name, phone): (String, Option<String>) =
        conn.query_row("SELECT name, phone FROM customers WHERE id = ?1", [&cid], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((name.as_str(), phone), ("[erased]", None));
    let plate: Option<String> = conn.query_row("SELECT plate FROM vehicles WHERE customer_id = ?1", [&cid], |r| r.get(0)).unwrap();
    assert_eq!(plate, None);
    let summary: String = conn.query_row("SELECT summary FROM cases WHERE id = ?1", [&case], |r| r.get(0)).unwrap();
    assert_eq!(summary, "[erased]");
    let reasons: Vec<Option<String>> = conn
        .prepare("SELECT reason FROM case_events WHERE case_id = ?1")
        .unwrap()
        .query_map([&case], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(reasons.iter().any(|r| r.as_deref() == Some("[erased]")), "{reasons:?}");
    assert!(reasons.iter().flatten().all(|r| !r.contains(PHONE)), "{reasons:?}");
    let kinds = |c: &str| -> Vec<String> {
        conn.prepare("SELECT kind FROM case_events WHERE case_id = ?1")
            .unwrap()
            .query_map([c], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(kinds(&case).contains(&"customer_erased".to_string()), "the erasure is on the case's timeline");
    assert!(kinds(&other_case).contains(&"legal_hold".to_string()), "so is the legal hold");
    // The timeline is otherwise still append-only.
    assert!(conn.execute("UPDATE case_events SET kind = 'x' WHERE case_id = ?1", [&case]).is_err());
    assert!(conn.execute("UPDATE case_events SET reason = 'rewritten' WHERE case_id = ?1", [&case]).is_err());
    let erasures: i64 = conn.query_row("SELECT COUNT(*) FROM outbox WHERE record_type = 'erasure'", [], |r| r.get(0)).unwrap();
    assert_eq!(erasures, 1);
    let audited: Vec<String> = conn
        .prepare("SELECT action FROM audit_log WHERE target_id = ?1 AND action LIKE 'customer.%' ORDER BY id")
        .unwrap()
        .query_map([&cid], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(audited.contains(&"customer.export".to_string()) && audited.contains(&"customer.erase.request".to_string()), "{audited:?}");
    let pid: String = conn.query_row("SELECT id FROM photos WHERE case_id = ?1 LIMIT 1", [&case], |r| r.get(0)).unwrap();
    drop(conn);
    let (s, v) = api.get(&format!("/api/v1/photos/{pid}"), &m).await;
    assert_eq!(s, StatusCode::GONE, "{v}");
    for p in files_under(&d.data_dir()) {
        assert!(!contains(&std::fs::read(&p).unwrap(), PHONE), "{}", p.display());
    }

    // The backup taken before the erasure restores, but that customer's photos no longer decrypt:
    // their keys were destroyed (crypto-shredding); the other customer's photos still do.
    let (cfg2, data2) = restore_config(tmp.path(), &d.data_dir(), "old");
    let o = sb(&cfg2, &["restore", before.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("photos: 2 decrypt; 2 belong to customers erased since"), "{}", text(&o));
    let conn = common::db_with_keys(&data2, &common::key_dir(&d.data_dir()));
    let sha: String = conn.query_row("SELECT sha256 FROM photos WHERE case_id = ?1 LIMIT 1", [&case], |r| r.get(0)).unwrap();
    let files = servicebay::files::PhotoFiles::new(data2.join("photos"), keys_for(&d.data_dir()));
    let e = files.read(&case, &sha).unwrap_err();
    assert!(matches!(e, servicebay::media::MediaError::Key(servicebay::keys::KeyError::Destroyed(_))), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_what_is_due_and_leaves_held_cases_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, api, m) = started(tmp.path()).await;
    let (old, old_case, _) = customer_with_photos(&api, &m, "老客户甲", "13600000001", "沪B00001").await;
    let (held, held_case, _) = customer_with_photos(&api, &m, "老客户乙", "13600000002", "沪B00002").await;
    let (recent, recent_case, _) = customer_with_photos(&api, &m, "新客户丙", "13600000003", "沪B00003").await;
    let (s, _) = api.post(&format!("/api/v1/cases/{held_case}/legal-hold"), &m, json!({ "reason": "保险理赔争议" })).await;
    assert_eq!(s, StatusCode::OK);
    d.stop();
    // Time travel: two cases closed 40 days ago (the third closed today), and an old audit entry.
    let conn = common::db(&d.data_dir());
    let past = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ancient = (chrono::Utc::now() - chrono::Duration::days(400)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for (case, at) in [(&old_case, &past), (&held_case, &past)] {
        conn.execute("UPDATE cases SET status = 'closed', updated_at = ?2 WHERE id = ?1", [case, at]).unwrap();
    }
    conn.execute("UPDATE cases SET status = 'closed' WHERE id = ?1", [&recent_case]).unwrap();
    conn.execute("INSERT INTO audit_log (at, username, action, target_type) VALUES (?1, 'old', 'old.entry', 'x')", [&ancient]).unwrap();
    drop(conn);
    let cfg = d.config.clone();
    let body = std::fs::read_to_string(&cfg).unwrap()
        + "\n[retention]\nintake_photos_days = 30\nclosed_case_personal_days = 35\naudit_log_days = 180\n";
    std::fs::write(&cfg, body).unwrap();
    let o = sb(&cfg, &["retention"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("2 photos removed, 1 customers' personal data erased, 0 survey comments blanked, 1 audit entries removed"),
        "{}",
        text(&o)
    );
    let conn = common::db(&d.data_dir());
    let name = |id: &str| conn.query_row("SELECT name FROM customers WHERE id = ?1", [id], |r| r.get::<_, String>(0)).unwrap();
    assert_eq!(name(&old), "[erased]");
    assert_eq!(name(&held), "老客户乙", "a legal hold keeps the customer");
    assert_eq!(name(&recent), "新客户丙");
    let removed = |case: &str| {
        conn.query_row("SELECT COUNT(*) FROM photos WHERE case_id = ?1 AND removed_at IS NOT NULL", [case], |r| r.get::<_, i64>(0)).unwrap()
    };
    assert_eq!((removed(&old_case), removed(&held_case), removed(&recent_case)), (2, 0, 0));
    let runs: i64 = conn.query_row("SELECT COUNT(*) FROM maintenance_runs WHERE job = 'retention' AND ok = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(runs, 1);
    // An audit log shorter than six months is refused by the config check.
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("audit_log_days = 180", "audit_log_days = 30")).unwrap();
    let o = sb(&cfg, &["check-config"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).contains("retention.audit_log_days"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_rekeys_the_database_and_old_backups_still_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, api, m) = started(tmp.path()).await;
    let (cid, _, first) = customer_with_photos(&api, &m, NAME, PHONE, PLATE).await;
    let old_backup = tmp.path().join("pre-rotation.sbbackup");
    assert!(sb(&d.config, &["backup", "--out", old_backup.to_str().unwrap()]).status.success());
    let o = sb(&d.config, &["key", "rotate"]);
    assert!(!o.status.success() && text(&o).contains("stop it first"), "never under a running daemon: {}", text(&o));
    d.stop();
    let before = String::from_utf8(sb(&d.config, &["key", "status"]).stdout).unwrap();
    let o = sb(&d.config, &["key", "rotate"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 case keys re-wrapped"), "{}", text(&o));
    let after = String::from_utf8(sb(&d.config, &["key", "status"]).stdout).unwrap();
    let fp = |s: &str| s.lines().find(|l| l.starts_with("fingerprint")).unwrap_or("").to_string();
    assert_ne!(fp(&before), fp(&after), "a new master key");
    // The old key no longer opens the database; the daemon starts with the new one and reads all.
    d.start();
    d.wait_ready().await;
    // Sessions live in the (re-keyed) database: the manager's token still works.
    let (s, c) = api.get(&format!("/api/v1/customers/{cid}"), &m).await;
    assert_eq!((s, c["customer"]["phone"].as_str()), (StatusCode::OK, Some(PHONE)), "{c}");
    let conn = common::db(&d.data_dir());
    let (case, pid): (String, String) =
        conn.query_row("SELECT case_id, id FROM photos LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    drop(conn);
    let r = api.client.get(format!("{}/api/v1/photos/{pid}", api.base)).bearer_auth(&m).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = case;
    d.stop();
    // A backup from before the rotation restores with the retired key and is re-keyed to today's.
    let (cfg2, data2) = restore_config(tmp.path(), &d.data_dir(), "from-old-key");
    let o = sb(&cfg2, &["restore", old_backup.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let conn = common::db_with_keys(&data2, &common::key_dir(&d.data_dir()));
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM photos", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2);
    let (c2, sha): (String, String) =
        conn.query_row("SELECT case_id, sha256 FROM photos ORDER BY id LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    let files = servicebay::files::PhotoFiles::new(data2.join("photos"), keys_for(&d.data_dir()));
    let got = files.read(&c2, &sha).unwrap();
    assert!(got == first || got.starts_with(b"\x89PNG"));
}

/// The daily backup job: copies land in the configured directory, the oldest beyond `keep` go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_keep_the_newest_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let keys = keys_for(&data);
    let (store, _) = servicebay::store::Store::open(&data, &keys.db_key(), 1).unwrap();
    let files = servicebay::files::PhotoFiles::new(data.join("photos"), keys);
    let dir = tmp.path().join("nas");
    let schedule = servicebay::protection::backup::Schedule { dir: dir.clone(), keep: 2, interval: Duration::from_secs(3600) };
    let p = servicebay::protection::DataProtection::new(store.clone(), files, "store-x".into(), Default::default(), Some(schedule));
    assert!(p.status().await.unwrap().backup_age_secs.is_none());
    for _ in 0..3 {
        let r = p.scheduled_backup().await.unwrap().expect("configured");
        assert!(r.bytes > 0);
    }
    let kept = servicebay::protection::backup::listed(&dir);
    assert_eq!(kept.len(), 2, "{kept:?}");
    let st = p.status().await.unwrap();
    assert!(st.backup_age_secs.is_some_and(|a| a < 60), "{st:?}");
    assert!(st.last_backup.unwrap().report.contains(kept[1].file_name().unwrap().to_str().unwrap()));
    store.close();
}
