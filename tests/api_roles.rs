//! Least privilege, walked exhaustively: every route × every role against `api::policy::ROUTES`
//! (403 for each forbidden pair, never 401/403 for an allowed one, 401 without a session), login
//! throttling, one-time password gating, the audit log, and the OpenAPI document's coverage.

mod common;

use std::collections::HashMap;

use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use servicebay::api::policy::{allows, Access, RouteId, ROUTES};
use servicebay::domain::Role;

fn concrete(path: &str) -> String {
    // Ids are looked up only after authorisation, so any well-formed id will do.
    path.replace("/users/{id}", "/users/999999").replace("{id}", "01a00000-0000-7000-8000-000000000000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_role_matrix() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let mut tokens: HashMap<Role, String> = HashMap::new();
    for role in Role::ALL {
        let t = if role == Role::Manager {
            manager.clone()
        } else {
            api.user(&manager, &format!("u_{}", role.as_str()), role.as_str()).await.1
        };
        tokens.insert(role, t);
    }
    let mut checked = 0;
    for spec in ROUTES {
        let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
        let path = concrete(spec.path);
        let body = (spec.method == "POST").then(|| json!({}));
        // Without a session: 401 for everything that is not public (metrics: loopback is allowed).
        if !matches!(spec.access, Access::Public | Access::LoopbackOr(_)) {
            let (s, v) = api.call(method.clone(), &path, None, body.clone()).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{} {} without session: {v}", spec.method, spec.path);
            assert_eq!(v["error"]["code"], "unauthorized");
            let (s, _) = api.call(method.clone(), &path, Some("not-a-real-token"), body.clone()).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{} {} with a bogus token", spec.method, spec.path);
        }
        if matches!(spec.id, RouteId::Logout | RouteId::ChangePassword | RouteId::Login) {
            continue; // would end or change the sessions used below; covered by their own tests
        }
        if let Access::LoopbackOr(_) = spec.access {
            // Tests run on loopback, where this route is open by design; check that it answers.
            let (s, _) = api.call(method.clone(), &path, None, None).await;
            assert_eq!(s, StatusCode::OK, "{} from loopback", spec.path);
            continue;
        }
        for role in Role::ALL {
            let (s, v) = api.call(method.clone(), &path, Some(&tokens[&role]), body.clone()).await;
            checked += 1;
            if allows(spec.id, role) {
                assert!(
                    s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                    "{} {} as {role} should be allowed, got {s}: {v}",
                    spec.method,
                    spec.path
                );
                assert_ne!(v["error"]["message"], "no such route", "{} {} is not routed", spec.method, spec.path);
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{} {} as {role} should be forbidden: {v}", spec.method, spec.path);
                assert_eq!(v["error"]["code"], "forbidden");
            }
        }
    }
    // Every route except login/logout/password/metrics, times every role.
    assert_eq!(checked, (ROUTES.len() - 4) * Role::ALL.len(), "walked {checked} pairs");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_in_the_openapi_document() {
    let srv = Server::start().await;
    let api = srv.api();
    let (s, doc) = api.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    for spec in ROUTES {
        let op = &doc["paths"][spec.path][spec.method.to_lowercase()];
        assert!(op.is_object(), "{} {} missing from openapi.json", spec.method, spec.path);
    }
    let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, ROUTES.len(), "openapi.json documents routes the API does not have");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_password_must_be_changed_first_and_sessions_end() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (s, v) = api.post("/api/v1/users", &manager, json!({ "username": "zhao", "role": "advisor" })).await;
    assert_eq!(s, StatusCode::CREATED);
    let (id, pw) = (v["user"]["id"].as_i64().unwrap(), v["one_time_password"].as_str().unwrap().to_string());
    let (s, l) = api.login("zhao", &pw).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(l["user"]["must_change_password"], true);
    let t = l["token"].as_str().unwrap();
    let (s, e) = api.get("/api/v1/cases", t).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(e["error"]["code"], "password_change_required");
    let (s, me) = api.get("/api/v1/auth/me", t).await;
    assert_eq!((s, me["username"].clone()), (StatusCode::OK, json!("zhao")));
    // Too-short password is refused and names the field.
    let (s, e) = api.post("/api/v1/auth/password", t, json!({ "old_password": pw, "new_password": "short" })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "new_password");
    let token = api.activate("zhao", &pw).await;
    let (s, _) = api.get("/api/v1/cases", &token).await;
    assert_eq!(s, StatusCode::OK);
    // Logout ends the session.
    let (s, _) = api.call(Method::POST, "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.get("/api/v1/cases", &token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Disabling ends sessions and blocks login; the manager cannot disable themself.
    let token = api.login("zhao", "zhao-Permanent-Pw1").await.1["token"].as_str().unwrap().to_string();
    let (s, _) = api.call(Method::POST, &format!("/api/v1/users/{id}/disable"), Some(&manager), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/api/v1/cases", &token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.login("zhao", "zhao-Permanent-Pw1").await.0, StatusCode::FORBIDDEN);
    let me_id = api.get("/api/v1/auth/me", &manager).await.1["id"].as_i64().unwrap();
    let (s, _) = api.call(Method::POST, &format!("/api/v1/users/{me_id}/disable"), Some(&manager), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttling_slows_guessing_but_never_locks_out_for_good() {
    let srv =
        Server::start_with("\n[auth]\nlogin_failures_before_delay = 3\nlogin_max_delay_secs = 2\naddress_failures_before_delay = 50\n")
            .await;
    let api = srv.api();
    let manager = api.manager().await;
    let _ = manager;
    for i in 0..3 {
        let (s, v) = api.login("manager", "wrong-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}: {v}");
        assert_eq!(v["error"]["code"], "bad_credentials");
    }
    // Now even the right password must wait: the guesser gains nothing by hammering.
    let (s, v) = api.login("manager", "manager-Permanent-Pw1").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "throttled");
    // An unknown user name answers like a wrong password (no account probing).
    let (s, v) = api.login("nobody", "x").await;
    assert_eq!((s, v["error"]["code"].clone()), (StatusCode::UNAUTHORIZED, json!("bad_credentials")));
    // After the (capped) delay the owner gets in.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, v) = api.login("manager", "manager-Permanent-Pw1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_per_address_across_accounts() {
    let srv =
        Server::start_with("\n[auth]\nlogin_failures_before_delay = 100\naddress_failures_before_delay = 4\nlogin_max_delay_secs = 60\n")
            .await;
    let api = srv.api();
    for i in 0..4 {
        let (s, _) = api.login(&format!("spray{i}"), "guess").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, v) = api.login("spray9", "guess").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_records_writes_and_personal_data_reads() {
    let srv = Server::start().await;
    let api = srv.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "sun", "advisor").await;
    let (_, auditor) = api.user(&manager, "hq", "hq_auditor").await;
    let (s, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "李女士", "phone": "13900001111" })).await;
    assert_eq!(s, StatusCode::CREATED);
    let cid = c["id"].as_str().unwrap();
    let (s, _) = api.get(&format!("/api/v1/customers/{cid}"), &advisor).await;
    assert_eq!(s, StatusCode::OK);
    let (s, rows) = api.get(&format!("/api/v1/audit?target_id={cid}"), &auditor).await;
    assert_eq!(s, StatusCode::OK);
    let rows: Vec<&Value> = rows["items"].as_array().unwrap().iter().collect();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["customer.read", "customer.create"]);
    for r in &rows {
        assert_eq!(r["username"], "sun");
        assert_eq!(r["role"], "advisor");
        assert_eq!(r["client_addr"], "127.0.0.1");
        assert!(r["at"].as_str().unwrap().ends_with('Z'));
    }
    // The audit log never holds the personal data itself.
    let (_, all) = api.get("/api/v1/audit?limit=100", &manager).await;
    assert!(!all.to_string().contains("13900001111"));
    assert!(!all.to_string().contains("李女士"));
    // A list read is audited too; auditors cannot read customers at all.
    let (s, _) = api.get("/api/v1/customers?q=李", &advisor).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(api.get("/api/v1/customers", &auditor).await.0, StatusCode::FORBIDDEN);
    let (_, all) = api.get("/api/v1/audit?limit=5", &manager).await;
    assert_eq!(all["items"][0]["action"], "customer.list");
    srv.stop().await;
}
