//! Crash safety: the daemon as a child process takes 200 concurrent case creations and is killed
//! with SIGKILL part-way; after a restart every case whose creation was answered 2xx is there (with
//! its timeline event and outbox row, written in the same transaction) and the database passes
//! `PRAGMA integrity_check`. Repeated for 20 trials on the same data directory.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::Daemon;
use reqwest::StatusCode;
use serde_json::json;

const TRIALS: usize = 20;
const REQUESTS: usize = 200;

fn db_state(data_dir: &std::path::Path) -> (String, HashSet<String>, HashSet<String>, HashSet<String>) {
    let conn = common::db(data_dir);
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    let ids = |sql: &str| -> HashSet<String> {
        let mut st = conn.prepare(sql).unwrap();
        st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
    };
    (
        integrity,
        ids("SELECT id FROM cases"),
        ids("SELECT case_id FROM case_events WHERE kind = 'created'"),
        ids("SELECT record_id FROM outbox WHERE record_type = 'case'"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_cases_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(tmp.path());
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let manager = api.manager().await;
    let (s, c) = api.post("/api/v1/customers", &manager, json!({ "name": "崩溃测试" })).await;
    assert_eq!(s, StatusCode::CREATED);
    let customer = c["id"].as_str().unwrap().to_string();

    let mut acknowledged_total = 0;
    let mut lost_in_flight_total = 0;
    for trial in 0..TRIALS {
        if trial > 0 {
            d.start();
            d.wait_ready().await;
        }
        let client = d.client();
        let base = d.base();
        let ok = Arc::new(AtomicUsize::new(0));
        // Kill after a varying number of acknowledgements, so crashes land at different points.
        let kill_after = 10 + (trial * 37) % 150;
        let mut tasks = Vec::new();
        for i in 0..REQUESTS {
            let (client, base, token, customer, ok) = (client.clone(), base.clone(), manager.clone(), customer.clone(), ok.clone());
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(format!("{base}/api/v1/cases"))
                    .bearer_auth(token)
                    .json(&json!({ "customer_id": customer, "summary": format!("trial {trial} case {i}: 右前门刮痕") }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let id = r.json::<serde_json::Value>().await.ok()?["id"].as_str()?.to_string();
                        ok.fetch_add(1, Ordering::SeqCst);
                        Some(id)
                    }
                    _ => None,
                }
            }));
        }
        while ok.load(Ordering::SeqCst) < kill_after && !tasks.iter().all(|t| t.is_finished()) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        d.kill9();
        let mut acked = Vec::new();
        for t in tasks {
            if let Ok(Some(id)) = t.await {
                acked.push(id);
            }
        }
        let (integrity, cases, created, outbox) = db_state(&d.data_dir());
        assert_eq!(integrity, "ok", "trial {trial}");
        for id in &acked {
            assert!(cases.contains(id), "trial {trial}: acknowledged case {id} lost");
            assert!(created.contains(id), "trial {trial}: case {id} has no creation event");
            assert!(outbox.contains(id), "trial {trial}: case {id} has no outbox row");
        }
        // Same transaction: no case without its event and outbox row, and none of those without it.
        assert_eq!(cases.len(), created.len(), "trial {trial}");
        assert_eq!(cases, outbox, "trial {trial}");
        acknowledged_total += acked.len();
        lost_in_flight_total += REQUESTS - acked.len();
        eprintln!(
            "trial {trial}: {} acknowledged, {} cut off by the kill, {} cases stored",
            acked.len(),
            REQUESTS - acked.len(),
            cases.len()
        );
    }
    assert!(acknowledged_total > 0);
    assert!(lost_in_flight_total > 0, "the kill must land mid-way in some trials");
    // And the appliance comes back once more, serving everything.
    d.start();
    d.wait_ready().await;
    let (s, l) = d.api().get("/api/v1/cases?limit=5", &manager).await;
    assert_eq!(s, StatusCode::OK, "{l}");
    d.stop();
}
