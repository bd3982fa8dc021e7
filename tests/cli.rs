//! The `servicebay` command on the box: check-config names the bad key and exits 78, migrate is
//! idempotent, user administration works and maps errors to exit codes, and `serve` refuses a port
//! that is taken with a clear message and its own exit code.

mod common;

use std::process::{Command, Output};

fn sb(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servicebay")).arg("--config").arg(config).args(args).output().expect("run servicebay")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn check_config_names_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    for (body, key) in [
        ("[server]\nlisten_port = 8443\n", "listen_port"),
        ("[server]\nhttp_listen = \"0.0.0.0:8080\"\n", "server.http_listen"),
        ("[storage]\nread_connections = 0\n", "storage.read_connections"),
        ("[log]\nformat = \"yaml\"\n", "log.format"),
        ("[llm]\nisolation = \"fork\"\n", "llm.isolation"),
        ("[server\nlisten = 1", "c.toml"),
    ] {
        std::fs::write(&cfg, body).unwrap();
        let o = sb(&cfg, &["check-config"]);
        assert_eq!(o.status.code(), Some(78), "{body}: {}", text(&o));
        assert!(text(&o).contains(key), "{body}: {}", text(&o));
    }
    std::fs::write(&cfg, include_str!("../assets/servicebay.example.toml")).unwrap();
    let o = sb(&cfg, &["check-config"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("config OK"));
    let o = sb(&dir.path().join("missing.toml"), &["check-config"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).contains("missing.toml"));
}

#[test]
fn check_config_validates_an_hq_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hq.toml");
    let example = include_str!("../assets/hq.example.toml");
    std::fs::write(&cfg, example).unwrap();
    let o = sb(&cfg, &["check-config"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for what in ["HQ config OK", "user=servicebay_hq dbname=servicebay_hq", "mqtts://mqtt.hq.example.com:8883 (TLS)", "client certificate"]
    {
        assert!(text(&o).contains(what), "{what}: {}", text(&o));
    }
    assert!(!text(&o).contains("unknown field"), "{}", text(&o));
    // HQ's own rules, HQ's own key names, the config exit code.
    for (body, key) in [
        (example.replace("[hq]\n", "[hq]\nbogus = 1\n"), "bogus"),
        (example.replace("postgres = \"host=127.0.0.1 user=servicebay_hq dbname=servicebay_hq\"", ""), "hq.postgres"),
        (example.replace("mqtts://mqtt.hq.example.com:8883", "mqtt://mqtt.hq.example.com:1883"), "hq.mqtt.broker"),
        (example.replace("keepalive_secs = 30", "keepalive_secs = 1"), "hq.mqtt.keepalive_secs"),
        (example.replace("format = \"json\"", "format = \"yaml\""), "log.format"),
    ] {
        assert_ne!(body, example, "the case must change the example");
        std::fs::write(&cfg, &body).unwrap();
        let o = sb(&cfg, &["check-config"]);
        assert_eq!(o.status.code(), Some(78), "{key}: {}", text(&o));
        assert!(text(&o).contains(key), "{key}: {}", text(&o));
    }
}

#[test]
fn migrate_and_user_administration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, common::config_text(&dir.path().join("data"), "127.0.0.1:0", "")).unwrap();
    let o = sb(&cfg, &["migrate"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = servicebay::store::SCHEMA_VERSION;
    assert!(text(&o).contains(&format!("created schema v{v}")), "{}", text(&o));
    let o = sb(&cfg, &["migrate"]);
    assert!(text(&o).contains(&format!("schema is current (v{v})")), "{}", text(&o));

    let o = sb(&cfg, &["user", "add", "chen", "--role", "qc_inspector", "--display-name", "陈工"]);
    assert!(o.status.success(), "{}", text(&o));
    let pw = text(&o).lines().find_map(|l| l.strip_prefix("one-time password: ")).expect("password line").trim().to_string();
    assert_eq!(pw.len(), 16);
    let o = sb(&cfg, &["user", "add", "chen", "--role", "advisor"]);
    assert_eq!(o.status.code(), Some(65), "duplicate: {}", text(&o));
    assert!(text(&o).contains("already exists"));
    let o = sb(&cfg, &["user", "add", "x", "--role", "boss"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).contains("advisor, technician, qc_inspector"), "{}", text(&o));

    let list = text(&sb(&cfg, &["user", "list"]));
    assert!(list.contains("chen") && list.contains("qc_inspector") && list.contains("new") && list.contains("陈工"), "{list}");
    assert!(sb(&cfg, &["user", "disable", "chen"]).status.success());
    assert!(text(&sb(&cfg, &["user", "list"])).contains("disabled"));
    assert!(sb(&cfg, &["user", "enable", "chen"]).status.success());
    let o = sb(&cfg, &["user", "reset-password", "chen"]);
    assert!(o.status.success());
    assert!(!text(&o).contains(&pw), "a new password");
    let o = sb(&cfg, &["user", "disable", "nobody"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(text(&o).contains("user not found"));
    // The password never reaches the audit log.
    let conn = common::db(&dir.path().join("data"));
    let actions: Vec<String> = conn
        .prepare("SELECT action || ' ' || username FROM audit_log ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(actions, ["user.create cli", "user.disable cli", "user.enable cli", "user.reset_password cli"]);
}

#[test]
fn serve_refuses_a_taken_port() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, common::config_text(&dir.path().join("data"), &format!("127.0.0.1:{port}"), "")).unwrap();
    let o = sb(&cfg, &["serve"]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(text(&o).contains(&format!("cannot listen on 127.0.0.1:{port}")), "{}", text(&o));
}
