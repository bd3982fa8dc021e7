//! Bad input gets a clear error and loses nothing: malformed JSON, wrong types, unknown and missing
//! fields, oversized bodies, bad queries, and bad photos (not an image, corrupt, too many pixels,
//! too many bytes, empty, wrong form fields). Each asserts the status, the error body naming the
//! field, and that nothing was written. Control characters in any text (bodies, keys, queries, form
//! fields) are refused at the edge, naming the field by its path. Slow or silent clients hit the TLS and header timeouts.
//! After all of it the daemon still serves.

mod common;

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{count_rows, files_under, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw_post(api: &common::Api, path: &str, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = api
        .client
        .post(format!("{}{}", api.base, path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_is_refused_with_the_field_named_and_nothing_written() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "adv", "advisor").await;
    let customers_before = count_rows(srv.data_dir(), "customers");

    let cases: Vec<(Vec<u8>, StatusCode, &str, Option<&str>)> = vec![
        (b"{\"name\": \"x\"".to_vec(), StatusCode::BAD_REQUEST, "malformed_json", None),
        (b"not json at all".to_vec(), StatusCode::BAD_REQUEST, "malformed_json", None),
        (b"".to_vec(), StatusCode::BAD_REQUEST, "malformed_json", None),
        (br#"{"name": 5}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_field", Some("name")),
        (br#"{"name": "x", "nickname": "y"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_field", Some("nickname")),
        (br#"{"phone": "123456"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_field", Some("name")),
        (br#"{"name": "  "}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_field", Some("name")),
        (br#"{"name": "x", "phone": "call me"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_field", Some("phone")),
        (br#"{"name": "x", "preferred_language": "fr"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_field", Some("preferred_language")),
        (br#"[1,2,3]"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_field", None),
        (format!("{{\"name\": \"{}\"}}", "长".repeat(30_000)).into_bytes(), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
    ];
    for (body, status, code, field) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(40)]).to_string();
        let (s, v) = raw_post(&api, "/api/v1/customers", &advisor, body).await;
        assert_eq!(s, status, "{preview}: {v}");
        assert_eq!(v["error"]["code"], code, "{preview}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f, "{preview}: {v}");
        }
    }
    assert_eq!(count_rows(srv.data_dir(), "customers"), customers_before, "nothing written");

    // Wrong references and enum values.
    let (s, v) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": "nope", "summary": "x" })).await;
    assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("customer_id")));
    let (s, v) = api.post("/api/v1/vehicles", &advisor, json!({ "customer_id": "nope", "vin": "123" })).await;
    assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("vin")));
    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "周" })).await;
    let (_, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "异响" })).await;
    let kid = k["id"].as_str().unwrap();
    let (s, v) = api.post(&format!("/api/v1/cases/{kid}/transition"), &advisor, json!({ "to": "flying" })).await;
    assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("to")), "{v}");
    let (s, v) = api.post(&format!("/api/v1/cases/{kid}/transition"), &advisor, json!({ "to": 3 })).await;
    assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("to")), "{v}");
    let (s, v) = api.post(&format!("/api/v1/cases/{kid}/assign"), &advisor, json!({ "user_id": 424242 })).await;
    assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("user_id")), "{v}");
    let (s, _) = api.post("/api/v1/cases/does-not-exist/transition", &advisor, json!({ "to": "intake" })).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(count_rows(srv.data_dir(), "case_events"), 1, "only the creation event");

    // Bad queries name the parameter.
    for (q, field) in
        [("limit=abc", "limit"), ("status=nope", "status"), ("needs_review=perhaps", "needs_review"), ("colour=red", "colour")]
    {
        let (s, v) = api.get(&format!("/api/v1/cases?{q}"), &advisor).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["error"]["field"], field, "{q}: {v}");
    }
    let (s, v) = api.call(Method::DELETE, "/api/v1/cases", Some(&advisor), None).await;
    assert!(s == StatusCode::METHOD_NOT_ALLOWED || s == StatusCode::NOT_FOUND, "{s} {v}");
    let (s, v) = api.get("/api/v1/nothing-here", &advisor).await;
    assert_eq!((s, v["error"]["code"].clone()), (StatusCode::NOT_FOUND, json!("not_found")));

    // Still serving.
    assert_eq!(api.call(Method::GET, "/healthz", None, None).await.0, StatusCode::OK);
    srv.stop().await;
}

/// Control characters in any text of any body, query or form are refused at the edge, naming the
/// field by its JSON path; tab, line feed and CR LF are text. Nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_at_the_edge_and_nothing_written() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "adv", "advisor").await;
    let (s, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "周" })).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "异响" })).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let kid = k["id"].as_str().unwrap().to_string();
    let counts = |d: &std::path::Path| {
        ["customers", "vehicles", "cases", "case_events", "messages", "findings", "photos", "outbox", "audit_log"]
            .map(|t| (t, count_rows(d, t)))
    };
    let (_, customers_page) = api.get("/api/v1/customers", &advisor).await;
    let (_, messages) = api.get(&format!("/api/v1/cases/{kid}/messages"), &advisor).await;
    let before = counts(srv.data_dir());

    let refused: Vec<(String, Value, &str)> = vec![
        ("/api/v1/customers".into(), json!({ "name": "王\u{0}先生" }), "name"),
        ("/api/v1/customers".into(), json!({ "name": "王先生", "email": "a\u{1b}[2J@b.cn" }), "email"),
        ("/api/v1/customers".into(), json!({ "name": "only\rCR" }), "name"),
        ("/api/v1/customers".into(), json!({ "name": "trailing CR\r" }), "name"),
        ("/api/v1/customers".into(), json!({ "name": "del\u{7f}" }), "name"),
        ("/api/v1/customers".into(), json!({ "name": "c1\u{9b}31m" }), "name"),
        // Keys too, and nested values by their path (checked before the unknown field is named).
        ("/api/v1/customers".into(), json!({ "na\u{1}me": "x" }), "na\\u{1}me"),
        (
            "/api/v1/customers".into(),
            json!({ "name": "x", "extra": { "items": [{ "note": "ok" }, { "note": "bell\u{7}" }] } }),
            "extra.items[1].note",
        ),
        ("/api/v1/cases".into(), json!({ "customer_id": c["id"], "summary": "右前门\u{8}刮痕" }), "summary"),
        (format!("/api/v1/cases/{kid}/messages"), json!({ "text": "我的车\u{0}右前门有刮痕" }), "text"),
        (format!("/api/v1/cases/{kid}/escalate"), json!({ "reason": "customer \u{1f} angry" }), "reason"),
        (format!("/api/v1/cases/{kid}/transition"), json!({ "to": "intake", "reason": "\u{0}" }), "reason"),
    ];
    for (path, body, field) in refused {
        let (s, v) = api.post(&path, &advisor, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_field", "{path} {body}: {v}");
        assert_eq!(v["error"]["field"], field, "{path} {body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("control character"), "{v}");
    }
    // Query strings: the decoded names and values.
    for (q, field) in [("q=%00", "q"), ("q=a%1Bb", "q"), ("before=x%7F", "before"), ("q%01=x", "q\\u{1}")] {
        let (s, v) = api.get(&format!("/api/v1/customers?{q}"), &advisor).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!((v["error"]["code"].as_str(), v["error"]["field"].as_str()), (Some("invalid_query"), Some(field)), "{q}: {v}");
    }
    let (s, v) = api.get(&format!("/api/v1/cases?customer_id={}%0D", c["id"].as_str().unwrap()), &advisor).await;
    assert_eq!((s, v["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("customer_id")), "{v}");
    // Multipart text fields.
    let (s, v) = upload(&api, &advisor, &kid, vec![("file", jpeg(64, 48)), ("shot", b"front\x00".to_vec())]).await;
    assert_eq!(
        (s, v["error"]["code"].clone(), v["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_field"), json!("shot")),
        "{v}"
    );

    // Nothing was written: no rows, and the lists read the same.
    assert_eq!(counts(srv.data_dir()), before);
    assert_eq!(api.get("/api/v1/customers", &advisor).await.1, customers_page);
    assert_eq!(api.get(&format!("/api/v1/cases/{kid}/messages"), &advisor).await.1, messages);
    assert_eq!(files_under(&srv.data_dir().join("photos")), 0);

    // Tab, line feed and CR LF are text, stored as sent.
    let summary = "右前门刮痕\n还有异响\t(下雨天)\r\n刹车时更明显";
    let (s, k2) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": summary })).await;
    assert_eq!(s, StatusCode::CREATED, "{k2}");
    assert_eq!(k2["summary"], summary);
    let (s, c2) = api.post("/api/v1/customers", &advisor, json!({ "name": "王\t先生", "email": "wang@example.cn" })).await;
    assert_eq!((s, c2["name"].clone()), (StatusCode::CREATED, json!("王\t先生")), "{c2}");
    let (s, v) = api.get("/api/v1/customers?q=%E7%8E%8B%09", &advisor).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    srv.stop().await;
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 255) as u8, (y % 255) as u8, 90]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 255) as u8, 40, (y % 255) as u8]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for b in data {
        c ^= *b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A small valid PNG whose header claims 10000×6000 = 60 megapixels.
fn png_claiming_60mp() -> Vec<u8> {
    let mut b = png(4, 4);
    b[16..20].copy_from_slice(&10_000u32.to_be_bytes());
    b[20..24].copy_from_slice(&6_000u32.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

async fn upload(api: &common::Api, token: &str, case_id: &str, parts: Vec<(&str, Vec<u8>)>) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in parts {
        form = form.part(name.to_string(), reqwest::multipart::Part::bytes(bytes).file_name("photo.jpg"));
    }
    let r = api.client.post(format!("{}/api/v1/cases/{case_id}/photos", api.base)).bearer_auth(token).multipart(form).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_photos_leave_no_row_and_no_file() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "adv", "advisor").await;
    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "吴" })).await;
    let (_, k) = api.post("/api/v1/cases", &advisor, json!({ "customer_id": c["id"], "summary": "右前门刮痕" })).await;
    let kid = k["id"].as_str().unwrap().to_string();
    let photos_dir = srv.data_dir().join("photos");

    let good = jpeg(320, 240);
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 3);
    let cases: Vec<(&str, Vec<(&str, Vec<u8>)>, StatusCode, &str, &str)> = vec![
        ("text file", vec![("file", b"hello, not a photo".to_vec())], StatusCode::BAD_REQUEST, "invalid_photo", "file"),
        ("gif", vec![("file", b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec())], StatusCode::BAD_REQUEST, "invalid_photo", "file"),
        ("truncated jpeg", vec![("file", truncated)], StatusCode::BAD_REQUEST, "invalid_photo", "file"),
        ("empty", vec![("file", vec![])], StatusCode::BAD_REQUEST, "invalid_photo", "file"),
        ("60 MP header", vec![("file", png_claiming_60mp())], StatusCode::PAYLOAD_TOO_LARGE, "photo_too_large", "file"),
        ("no file part", vec![("shot", b"front".to_vec())], StatusCode::BAD_REQUEST, "invalid_field", "file"),
        ("bad shot", vec![("file", good.clone()), ("shot", b"sideways".to_vec())], StatusCode::BAD_REQUEST, "invalid_field", "shot"),
        ("unknown part", vec![("file", good.clone()), ("caption", b"x".to_vec())], StatusCode::BAD_REQUEST, "invalid_field", "caption"),
    ];
    for (what, parts, status, code, field) in cases {
        let (s, v) = upload(&api, &advisor, &kid, parts).await;
        assert_eq!(s, status, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert_eq!(v["error"]["field"], field, "{what}: {v}");
        assert_eq!(count_rows(srv.data_dir(), "photos"), 0, "{what}: no row");
        assert_eq!(files_under(&photos_dir), 0, "{what}: no file");
    }
    // Over the 20 MiB body cap: refused without storing anything.
    let big = vec![0xFFu8; 21 * 1024 * 1024];
    let (s, v) = upload(&api, &advisor, &kid, vec![("file", big)]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(files_under(&photos_dir), 0);
    // Far beyond the cap (past the drain bound): refused at once. The sender may see the 413 or a
    // closed connection, depending on how much it had written; either way nothing is stored.
    let huge =
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(vec![0xFFu8; 50 * 1024 * 1024]).file_name("x.jpg"));
    match api.client.post(format!("{}/api/v1/cases/{kid}/photos", api.base)).bearer_auth(&advisor).multipart(huge).send().await {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    assert_eq!(files_under(&photos_dir), 0);
    assert_eq!(count_rows(srv.data_dir(), "photos"), 0);
    // Unknown case: 404, after reading the (bounded) body so the client sees it.
    let (s, _) = upload(&api, &advisor, "no-such-case", vec![("file", good.clone())]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A good photo is stored once, content-addressed, and comes back byte for byte.
    let (s, p) = upload(&api, &advisor, &kid, vec![("file", good.clone()), ("shot", b"close_up".to_vec())]).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!((p["width"].clone(), p["height"].clone(), p["media_type"].clone()), (json!(320), json!(240), json!("image/jpeg")));
    assert_eq!(p["shot"], "close_up");
    let r = api.client.get(format!("{}/api/v1/photos/{}", api.base, p["id"].as_str().unwrap())).bearer_auth(&advisor).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.bytes().await.unwrap().to_vec(), good);
    let (s, _) = upload(&api, &advisor, &kid, vec![("file", png(64, 48))]).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(count_rows(srv.data_dir(), "photos"), 2);
    assert_eq!(files_under(&photos_dir), 2);
    let (_, case) = api.get(&format!("/api/v1/cases/{kid}"), &advisor).await;
    assert_eq!(case["photos"].as_array().unwrap().len(), 2);
    assert_eq!(api.call(Method::GET, "/healthz", None, None).await.0, StatusCode::OK);
    srv.stop().await;
}

/// Read until the server closes the connection; returns how long that took.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_cut_off_and_service_continues() {
    let srv = Server::start_with("handshake_timeout_secs = 1\nheader_read_timeout_secs = 1\n").await;
    let api = srv.api();
    let addr = api.base.replace("https://localhost:", "127.0.0.1:");

    // A client that connects and never starts TLS.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let t = closed_within(&mut silent, Duration::from_secs(5)).await.expect("handshake timeout closes the socket");
    assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(3), "{t:?}");

    // A client that completes TLS but dribbles its headers.
    let pem = std::fs::read(srv.data_dir().join("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut tls = connector.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let t = closed_within(&mut tls, Duration::from_secs(5)).await.expect("header-read timeout closes the connection");
    assert!(t < Duration::from_secs(3), "{t:?}");

    // Garbage instead of a TLS ClientHello.
    let mut junk = tokio::net::TcpStream::connect(&addr).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut junk, Duration::from_secs(5)).await.is_some());

    assert_eq!(api.call(Method::GET, "/healthz", None, None).await.0, StatusCode::OK);
    let (_, m) = api.call(Method::GET, "/metrics", None, None).await;
    let text = m.as_str().unwrap_or_default().to_string();
    assert!(text.contains("servicebay_tls_handshake_failures_total 2"), "{text}");
    srv.stop().await;
}
