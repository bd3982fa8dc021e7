//! The manager's import screen (数据导入) in a real browser (Debian Chromium through chromedriver)
//! against the real stack over TLS: a DMS export with one bad row is checked and refused with the
//! row's line and field on screen, nothing written; the fixed file is checked (the counts), then
//! confirmed in the same form (the file stays chosen), with the upload's progress bar; checking it
//! again says there is nothing to import. A technician is refused the screen.
//!
//! Screenshots go to `<target>/ui-screenshots/9x-*.png`.

mod common;

use std::time::Duration;

use common::browser::{clean, login, server_errors, Browser};

const HEADER: &str = "客户姓名,手机号,车牌号,VIN,品牌,车型,行驶里程,进厂日期,工单号,维修项目,配件名称\n";

fn dms_csv(bad: bool) -> String {
    let vin = if bad { "LSVAU2180N21234" } else { "LSVAU2180N2123456" };
    format!("{HEADER}王五,13700002222,粤B88888,{vin},丰田,凯美瑞,41000,2023年11月2日,RO-9,更换前保险杠,前保险杠\n")
}

/// Chooses `path` in the file input and presses `button`; waits until the report shows `wait_for`.
async fn send(b: &Browser, path: Option<&std::path::Path>, button: &str, wait_for: &str) {
    if let Some(p) = path {
        b.find("#import-file").await.send_keys(p.to_str().unwrap()).await.unwrap();
    }
    b.js("document.querySelector('#import-report').dataset.old = '1'").await;
    b.js(&format!("document.querySelector({button:?}).scrollIntoView({{ block: 'center' }})")).await;
    b.click(button).await;
    b.wait_js(
        &format!("!document.querySelector('#import-report').dataset.old && document.querySelector({wait_for:?})"),
        Duration::from_secs(60),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_checks_and_imports_a_dms_export() {
    let srv = common::Server::start().await;
    let api = srv.api();
    let m = api.manager().await;
    api.user(&m, "mgr2", "manager").await;
    api.user(&m, "tech9", "technician").await;
    let dir = tempfile::tempdir().unwrap();
    let (bad, good) = (dir.path().join("bad.csv"), dir.path().join("dms.csv"));
    std::fs::write(&bad, dms_csv(true)).unwrap();
    std::fs::write(&good, dms_csv(false)).unwrap();

    let b = Browser::start(&srv.base, 1024, 768).await;
    login(&b, "mgr2").await;
    b.click("a[href='/manager/import']").await;
    b.find("#import-form[data-upload-progress]").await;
    let sources = b.js("return [...document.querySelectorAll('#import-source option')].map(o => o.value)").await;
    assert!(sources.as_array().unwrap().iter().any(|v| v == "dms/generic_zh"), "{sources}");
    assert!(sources.as_array().unwrap().iter().any(|v| v == "labour/labour_zh"), "{sources}");
    b.js("document.querySelector('#import-source').value = 'dms/generic_zh'").await;
    clean(&b, "import page").await;

    // One bad row: refused whole, the line and the field on screen.
    send(&b, Some(&bad), "#import-check", "#import-refused").await;
    let row = b.text("#import-errors tbody tr[data-line='2']").await;
    assert!(row.contains("VIN") || row.contains("vin"), "the refused row names its field: {row}");
    assert!(!b.exists("#import-confirm").await, "no confirmation for a refused file");
    assert_eq!(common::count_rows(srv.data_dir(), "customers"), 0);
    b.screenshot("90-import-refused").await;

    // The fixed file: the check shows the counts, the confirmation imports it.
    send(&b, Some(&good), "#import-check", "#import-dry").await;
    let counts = b.text("#import-counts").await;
    assert!(counts.contains('1'), "{counts}");
    assert_eq!(common::count_rows(srv.data_dir(), "customers"), 0, "a check writes nothing");
    // The bar is there for the upload (hidden again once the answer is in).
    assert!(b.exists("#import-progress").await);
    b.screenshot("91-import-checked").await;
    b.js("window.confirm = () => true").await;
    send(&b, None, "#import-confirm", "#import-done").await;
    assert_eq!(common::count_rows(srv.data_dir(), "customers"), 1);
    assert_eq!(common::count_rows(srv.data_dir(), "vehicles"), 1);
    b.screenshot("92-import-done").await;

    // Again: nothing to import.
    send(&b, None, "#import-check", "#import-nothing").await;
    clean(&b, "import done").await;
    assert_eq!(server_errors(&api).await, 0);

    // A technician has no import screen.
    b.close().await;
    let b = Browser::start(&srv.base, 768, 1024).await;
    login(&b, "tech9").await;
    assert!(!b.exists("a[href='/manager/import']").await, "no link for a technician");
    b.go("/manager/import").await;
    assert!(b.exists("#error-message").await, "a technician is refused the screen");
    b.close().await;
}
