//! Store data import over the API (managers): the shipped mappings; a DMS export with Chinese
//! headers checked dry, refused whole for one bad row (named by line and field), imported, and
//! imported again with nothing changed; a labour list into the catalogue in force; and the
//! refusals (roles, unreadable files, unknown mappings, kinds and form fields).

mod common;

use reqwest::StatusCode;
use serde_json::Value;

const HEADER: &str = "客户姓名,手机号,车牌号,VIN,品牌,车型,行驶里程,进厂日期,工单号,维修项目,配件名称\n";

fn dms_csv(bad_vin_on_line_3: bool) -> String {
    let vin2 = if bad_vin_on_line_3 { "LSVAU2180N212345" } else { "LSVAU2180N2123456" };
    format!(
        "{HEADER}张三,138 1234 5678,沪A12345,LFV2A21K8M4000001,大众,朗逸,\"35,200\",2024/3/5,RO-001,右前门钣金喷漆,\n\
         李四,13900001111,沪B54321,{vin2},大众,帕萨特,52000km,2024-05-06,RO-002,更换左前大灯,左前大灯总成\n"
    )
}

async fn import(api: &common::Api, token: &str, kind: &str, name: &str, bytes: Vec<u8>, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let r = api.client.post(format!("{}/api/v1/imports/{kind}", api.base)).bearer_auth(token).multipart(form).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_and_labour_files_through_the_api() {
    let server = common::Server::start().await;
    let api = server.api();
    let data = server.data_dir().to_path_buf();
    let m = api.manager().await;
    let (_, tech) = api.user(&m, "tech-import", "technician").await;

    // The shipped mappings, by kind.
    let (s, v) = api.get("/api/v1/imports/mappings", &m).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let names: Vec<String> = v["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| format!("{}/{}", x["kind"].as_str().unwrap(), x["name"].as_str().unwrap()))
        .collect();
    for want in ["dms/generic_zh", "parts/parts_zh", "labour/labour_zh"] {
        assert!(names.contains(&want.to_string()), "{want} in {names:?}");
    }
    assert_eq!(api.get("/api/v1/imports/mappings", &tech).await.0, StatusCode::FORBIDDEN);
    let (s, _) = import(&api, &tech, "dms", "a.csv", dms_csv(false).into_bytes(), &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // One bad row: the whole file is refused, the row named; nothing is written.
    let (s, e) = import(&api, &m, "dms", "dms.csv", dms_csv(true).into_bytes(), &[("mapping", "generic_zh")]).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("rows_refused")), "{e}");
    let errors = e["error"]["report"]["errors"].as_array().unwrap();
    assert_eq!((errors[0]["line"].as_u64(), errors[0]["field"].as_str()), (Some(3), Some("vin")), "{e}");
    assert_eq!(common::count_rows(&data, "customers"), 0);

    // Dry run: the counts a real run then gives, nothing written.
    let (s, dry) = import(&api, &m, "dms", "dms.csv", dms_csv(false).into_bytes(), &[("dry_run", "true")]).await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!((dry["kind"].as_str(), dry["dry_run"].as_bool(), dry["rows"].as_u64()), (Some("dms"), Some(true), Some(2)), "{dry}");
    assert_eq!(dry["customers"]["new"], 2, "{dry}");
    assert_eq!((common::count_rows(&data, "customers"), common::count_rows(&data, "vehicles")), (0, 0));
    let (s, real) = import(&api, &m, "dms", "dms.csv", dms_csv(false).into_bytes(), &[("dry_run", "false")]).await;
    assert_eq!(s, StatusCode::OK, "{real}");
    for what in ["customers", "vehicles", "visits"] {
        assert_eq!(real[what], dry[what], "{what}: the dry run said what the run did");
    }
    assert_eq!((common::count_rows(&data, "customers"), common::count_rows(&data, "vehicles")), (2, 2));
    // The phone was normalised: the customer is found by it.
    let phone: String = common::db(&data).query_row("SELECT phone FROM customers WHERE name = '张三'", [], |r| r.get(0)).unwrap();
    assert_eq!(phone, "13812345678");
    // Again: nothing changes.
    let (s, again) = import(&api, &m, "dms", "dms.csv", dms_csv(false).into_bytes(), &[]).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    for what in ["customers", "vehicles", "visits"] {
        assert_eq!((again[what]["new"].as_u64(), again[what]["updated"].as_u64()), (Some(0), Some(0)), "{what}: {again}");
    }

    // A labour list: the door repair's standard hours change, once.
    let labour = "工时代码,工时名称,工种,标准工时,辅料费\nBP-DOOR-PANEL,车门钣金修复,body,2.5,0\n";
    let (s, r) = import(&api, &m, "labour", "工时表.csv", labour.as_bytes().to_vec(), &[]).await;
    assert_eq!(
        (s, r["kind"].as_str(), r["changed"].as_u64(), r["applied"].as_bool()),
        (StatusCode::OK, Some("catalog"), Some(1), Some(true)),
        "{r}"
    );
    let (s, r) = import(&api, &m, "labour", "工时表.csv", labour.as_bytes().to_vec(), &[]).await;
    assert_eq!((s, r["changed"].as_u64(), r["unchanged"].as_u64()), (StatusCode::OK, Some(0), Some(1)), "{r}");

    // Refusals: not a table, no file name, an unknown mapping, kind or field, a control character.
    let (s, e) = import(&api, &m, "dms", "photo.pdf", b"%PDF-1.4".to_vec(), &[]).await;
    assert_eq!(
        (s, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_file"), Some("file")),
        "{e}"
    );
    let (s, e) = import(&api, &m, "dms", "dms.xlsx", b"not a zip".to_vec(), &[]).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_file")), "{e}");
    let (s, e) = import(&api, &m, "dms", "dms.csv", dms_csv(false).into_bytes(), &[("mapping", "parts_zh")]).await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("mapping")), "{e}");
    let (s, _) = import(&api, &m, "vehicles", "dms.csv", dms_csv(false).into_bytes(), &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = import(&api, &m, "dms", "dms.csv", dms_csv(false).into_bytes(), &[("sheet", "1")]).await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("sheet")), "{e}");
    let (s, e) = import(&api, &m, "dms", "dms.csv", dms_csv(false).into_bytes(), &[("mapping", "generic\u{0}zh")]).await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("mapping")), "{e}");
    let (s, e) = import(&api, &m, "dms", "dms.csv", dms_csv(false).into_bytes(), &[("dry_run", "maybe")]).await;
    assert_eq!((s, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("dry_run")), "{e}");
    assert_eq!(common::count_rows(&data, "customers"), 2, "no refusal wrote anything");
}
