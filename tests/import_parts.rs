//! Parts and labour lists into the store's catalogue: a Chinese-headed XLSX through the shipped
//! mapping priced by the estimate, a bad row refusing the whole file, idempotence and dry runs,
//! export → import giving the same catalogue, the local import vs an HQ bundle (latest in force),
//! and the HQ conversion through the real `servicebay catalog convert` command.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use servicebay::catalog::{Catalog, SharedCatalog};
use servicebay::domain::workshop::Origin;
use servicebay::domain::Actor;
use servicebay::estimate::{plan, PartsChoice, PlanRequest};
use servicebay::import::parts::{export_csv, mapping, CatalogFile, CatalogImport, CatalogReport};
use servicebay::intake::{DamageType, Finding, Part, Position};
use servicebay::store::{audit, Store, StoreError};
use servicebay::sync::bundles::load_catalog;

struct Box_ {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    store: Store,
    catalog: SharedCatalog,
    import: CatalogImport,
}

impl Box_ {
    fn new() -> Box_ {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let cfg = servicebay::keys::KeyConfig {
            key_dir: common::key_dir(&data),
            data_dir: data.clone(),
            require_tpm: false,
            credentials_dir: None,
        };
        let keys = Arc::new(servicebay::keys::Keys::load(&cfg).unwrap());
        let (store, _) = Store::open(&data, &keys.db_key(), 1).unwrap();
        let catalog = SharedCatalog::new(load_catalog(&data.join("bundles")));
        let import = CatalogImport::new(store.clone(), catalog.clone(), data.join("bundles"));
        Box_ { _tmp: tmp, data, store, catalog, import }
    }

    async fn run(&self, what: CatalogFile, name: &str, bytes: Vec<u8>, dry_run: bool) -> CatalogReport {
        let m = mapping(what.default_mapping()).unwrap();
        self.import.run(&Actor::system("test"), what, name, bytes, &m, dry_run).await.unwrap()
    }

    async fn audit_rows(&self) -> usize {
        self.store
            .read(|tx| -> Result<_, StoreError> { audit::list(tx, None, None, 100) })
            .await
            .unwrap()
            .iter()
            .filter(|r| r.action == "catalog.import")
            .count()
    }

    fn local_dir(&self) -> PathBuf {
        self.data.join("catalog/local")
    }
}

/// A GTIN-13 from 12 digits, with its check digit.
fn gtin(body: &str) -> String {
    let sum: u32 = body.chars().rev().enumerate().map(|(i, c)| c.to_digit(10).unwrap() * if i % 2 == 0 { 3 } else { 1 }).sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn xlsx(rows: &[[&str; 7]]) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in ["配件编号", "配件名称", "英文名称", "适用部位", "配件来源/品质", "销售价", "条码"].iter().enumerate()
    {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (r, c) = (r as u32 + 1, c as u16);
            // Prices and barcodes typed as numbers, as Excel users do.
            match cell.parse::<f64>() {
                Ok(x) if c >= 5 => ws.write_number(r, c, x).map(|_| ()).unwrap(),
                _ => ws.write_string(r, c, *cell).map(|_| ()).unwrap(),
            }
        }
    }
    wb.save_to_buffer().unwrap()
}

fn price_list(bad_gtin: bool) -> Vec<u8> {
    let oem = gtin("690123499901");
    let eq = if bad_gtin { "6907654999012".to_string() } else { gtin("690765499901") };
    xlsx(&[
        ["DL-ACT-RF", "右前门锁执行器", "right front door lock actuator", "车门", "原厂", "488", &oem],
        ["DL-ACT-RF", "右前门锁执行器", "right front door lock actuator", "车门", "同质", "260", &eq],
        ["NEW-CLIP-1", "车门饰板卡扣", "door trim clip", "车门", "原厂", "12.5", ""],
    ])
}

fn door_lock_plan(cat: &Catalog) -> f64 {
    let f = vec![Finding::new(Part::Door, Some(Position::RightFront), DamageType::NotWorking)];
    let now = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap().and_hms_opt(10, 0, 0).unwrap();
    let p = plan(cat, &PlanRequest { findings: &f, store_id: "default", parts_choice: PartsChoice::Oem, now, booked: &[] }).unwrap();
    let line = p.parts.iter().find(|l| l.part_no == "DL-ACT-RF").expect("the lock actuator is priced");
    line.oem_cny
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chinese_xlsx_imports_and_the_estimate_prices_the_new_part_price() {
    let b = Box_::new();
    assert_eq!(door_lock_plan(&b.catalog.get()), 420.0);
    let r = b.run(CatalogFile::Parts, "配件价格表.xlsx", price_list(false), false).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!((r.rows, r.new, r.changed, r.unchanged, r.applied), (3, 1, 1, 0, true));
    assert_eq!(r.kept, Catalog::builtin().parts.len() - 1);
    let cat = b.catalog.get();
    assert_eq!(door_lock_plan(&cat), 488.0);
    let p = cat.part("DL-ACT-RF").unwrap();
    assert_eq!((p.oem_cny, p.aftermarket_cny), (488.0, Some(260.0)));
    // The listed origins' barcodes are the file's, in its order; an unlisted origin keeps its own.
    let old = Catalog::builtin().part("DL-ACT-RF").unwrap().barcodes.clone();
    let kept: Vec<_> = old.iter().filter(|b| b.origin == Origin::Refurbished).cloned().collect();
    let want: Vec<(String, Origin)> = [(gtin("690123499901"), Origin::Oem), (gtin("690765499901"), Origin::Equivalent)]
        .into_iter()
        .chain(kept.iter().map(|b| (b.gtin.clone(), b.origin)))
        .collect();
    assert_eq!(p.barcodes.iter().map(|b| (b.gtin.clone(), b.origin)).collect::<Vec<_>>(), want);
    assert_eq!(cat.part_by_gtin(&gtin("690765499901")).map(|(p, o)| (p.part_no.as_str(), o.as_str())), Some(("DL-ACT-RF", "equivalent")));
    assert_eq!(cat.part("NEW-CLIP-1").unwrap().aftermarket_cny, None);
    // What a restarted daemon loads from disk is the same catalogue.
    assert_eq!(door_lock_plan(&load_catalog(&b.data.join("bundles"))), 488.0);
    assert_eq!(b.audit_rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_row_changes_nothing_and_is_named() {
    let b = Box_::new();
    let r = b.run(CatalogFile::Parts, "p.xlsx", price_list(true), false).await;
    assert!(!r.applied);
    let got: Vec<(usize, &str)> = r.errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(got, [(3, "barcode")], "{:?}", r.errors);
    assert!(r.errors[0].message.contains("check digit"), "{}", r.errors[0].message);
    assert_eq!(b.catalog.get().part("DL-ACT-RF").unwrap().oem_cny, 420.0);
    assert!(b.catalog.get().part("NEW-CLIP-1").is_none());
    assert!(!b.local_dir().exists());
    assert_eq!(b.audit_rows().await, 0);
    // A row that breaks the catalogue as a whole (aftermarket dearer than OEM) is refused too, named by its part's line.
    let csv = "配件编号,配件名称,配件来源/品质,销售价\nDL-ACT-RF,右前门锁执行器,原厂,100\nDL-ACT-RF,右前门锁执行器,同质,300\n";
    let r = b.run(CatalogFile::Parts, "p.csv", csv.as_bytes().to_vec(), false).await;
    assert_eq!(r.errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2], "{:?}", r.errors);
    assert_eq!(b.catalog.get().part("DL-ACT-RF").unwrap().oem_cny, 420.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_twice_changes_nothing_and_a_dry_run_writes_nothing() {
    let b = Box_::new();
    let dry = b.run(CatalogFile::Parts, "p.xlsx", price_list(false), true).await;
    assert!(dry.dry_run && !dry.applied && dry.errors.is_empty());
    assert!(!b.local_dir().exists());
    assert_eq!(b.catalog.get().part("DL-ACT-RF").unwrap().oem_cny, 420.0);
    let first = b.run(CatalogFile::Parts, "p.xlsx", price_list(false), false).await;
    assert_eq!(
        (dry.rows, dry.new, dry.changed, dry.unchanged, dry.kept),
        (first.rows, first.new, first.changed, first.unchanged, first.kept)
    );
    let layer = std::fs::read(b.local_dir().join("parts.toml.layer")).unwrap();
    let second = b.run(CatalogFile::Parts, "p.xlsx", price_list(false), false).await;
    assert_eq!((second.new, second.changed, second.unchanged, second.applied), (0, 0, 2, false));
    assert_eq!(std::fs::read(b.local_dir().join("parts.toml.layer")).unwrap(), layer, "the second import writes nothing");
    assert_eq!(b.audit_rows().await, 1);
}

fn labour_csv() -> Vec<u8> {
    // An existing code re-priced (its matching rules kept) and a store's own code without rules.
    "工时代码,工时名称,工种,标准工时,辅料费\n\
     MC-DOOR-LOCK,车门锁机构检修,机修,1.2,15\n\
     ZZ-WASH-01,精洗,诊断,0.8,\n"
        .as_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labour_keeps_matching_rules_and_export_then_import_is_identical() {
    let b = Box_::new();
    let before = b.catalog.get().operation("MC-DOOR-LOCK").unwrap().clone();
    let r = b.run(CatalogFile::Labour, "工时表.csv", labour_csv(), false).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!((r.new, r.changed, r.applied), (1, 1, true));
    let r = b.run(CatalogFile::Parts, "p.xlsx", price_list(false), false).await;
    assert!(r.applied);
    let cat = b.catalog.get();
    let lock = cat.operation("MC-DOOR-LOCK").unwrap();
    assert_eq!((lock.hours, lock.materials_cny), (1.2, 15.0));
    assert_eq!(
        json(&(&lock.parts, &lock.damage, &lock.severity, &lock.parts_needed)),
        json(&(&before.parts, &before.damage, &before.severity, &before.parts_needed))
    );
    let wash = cat.operation("ZZ-WASH-01").unwrap();
    assert!(wash.parts.is_empty() && wash.damage.is_empty(), "a new code without rules is never matched");
    assert_eq!(wash.name_en, "精洗");

    let parts = export_csv(&cat, CatalogFile::Parts).unwrap();
    let labour = export_csv(&cat, CatalogFile::Labour).unwrap();
    assert!(
        parts.starts_with(b"\xEF\xBB\xBF")
            && String::from_utf8_lossy(&parts).contains("配件编号,配件名称,英文名称,适用部位,配件来源/品质,销售价,条码")
    );
    // Onto a fresh store (the built-in catalogue): the same parts and operations come back.
    let fresh = Box_::new();
    let r = fresh.run(CatalogFile::Parts, "parts.csv", parts.clone(), false).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let r = fresh.run(CatalogFile::Labour, "labour.csv", labour.clone(), false).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let again = fresh.catalog.get();
    assert_eq!(json(&again.parts), json(&cat.parts));
    assert_eq!(json(&again.operations), json(&cat.operations));
    // And onto the store it came from: nothing changes.
    let r = b.run(CatalogFile::Parts, "parts.csv", parts, false).await;
    assert_eq!((r.changed, r.new, r.applied), (0, 0, false));
    let r = b.run(CatalogFile::Labour, "labour.csv", labour, false).await;
    assert_eq!((r.changed, r.new, r.applied), (0, 0, false));
}

/// Install a price_list bundle the way `sync::bundles` does (`<kind>/v<N>/` + `current` link).
fn install_bundle(bundles: &Path, version: u64, parts_toml: &str) {
    let dir = bundles.join("price_list").join(format!("v{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("parts.toml"), parts_toml).unwrap();
    std::fs::write(dir.join("operations.toml"), Catalog::builtin_text("operations.toml").unwrap()).unwrap();
    let link = bundles.join("price_list").join(".current.tmp");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("v{version}"), &link).unwrap();
    std::fs::rename(&link, bundles.join("price_list").join("current")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_list_loaded_is_in_force() {
    let b = Box_::new();
    let bundles = b.data.join("bundles");
    let rf = "fits = \"door\"\noem_cny = 420\naftermarket_cny = 210";
    let at = |price: u32| {
        let text = Catalog::builtin_text("parts.toml").unwrap();
        let i = text.find("part_no = \"DL-ACT-RF\"").unwrap();
        format!("{}{}", &text[..i], text[i..].replacen(rf, &format!("fits = \"door\"\noem_cny = {price}\naftermarket_cny = 210"), 1))
    };
    let hq_parts = at(430);
    install_bundle(&bundles, 1, &hq_parts);
    assert_eq!(door_lock_plan(&load_catalog(&bundles)), 430.0);
    // A local import after bundle v1 wins over it.
    b.catalog.replace(load_catalog(&bundles));
    b.run(CatalogFile::Parts, "p.xlsx", price_list(false), false).await;
    assert_eq!(door_lock_plan(&load_catalog(&bundles)), 488.0);
    // HQ's next bundle replaces the local import...
    install_bundle(&bundles, 2, &at(440));
    let cat = load_catalog(&bundles);
    assert_eq!(door_lock_plan(&cat), 440.0);
    assert!(cat.part("NEW-CLIP-1").is_none());
    // ...and importing the list again puts it back in force.
    b.catalog.replace(cat);
    let r = b.run(CatalogFile::Parts, "p.xlsx", price_list(false), false).await;
    assert!(r.applied && r.new == 1, "{r:?}");
    assert_eq!(door_lock_plan(&load_catalog(&bundles)), 488.0);
    assert_eq!(door_lock_plan(&b.catalog.get()), 488.0);
}

#[test]
fn hq_converts_a_list_into_a_price_list_bundle_the_stores_accept() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("配件价格表.xlsx");
    std::fs::write(&list, price_list(false)).unwrap();
    let out = tmp.path().join("bundle");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_servicebay"))
        .args(["catalog", "convert", "parts"])
        .arg(&list)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files = BTreeMap::new();
    for n in ["parts.toml", "operations.toml"] {
        files.insert(n.to_string(), std::fs::read(out.join(n)).unwrap());
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let sealed = servicebay::sync::wire::seal_bundle(&key, servicebay::sync::wire::BundleKind::PriceList, 3, "all", &files).unwrap();
    let opened = servicebay::sync::wire::open_bundle(&sealed, &key.verifying_key()).unwrap();
    let cat = servicebay::sync::bundles::catalog_with(&tmp.path().join("store/bundles"), &opened.files).unwrap();
    assert_eq!(door_lock_plan(&cat), 488.0);
    // A bad list: exit 65, every bad row on stderr, no files.
    let bad = tmp.path().join("bad.xlsx");
    std::fs::write(&bad, price_list(true)).unwrap();
    let out2 = tmp.path().join("bundle2");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_servicebay"))
        .args(["catalog", "convert", "parts"])
        .arg(&bad)
        .arg("--out")
        .arg(&out2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 3, barcode"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out2.join("parts.toml").exists());
}
