//! Load benchmark (not a test): the real `servicebay` daemon as a child process on loopback, HTTPS,
//! 50 concurrent clients with keep-alive, a mix of case creates, reads, lists and transitions.
//! Prints throughput and p50/p99 latency per operation. The load generator shares the machine's
//! cores with the daemon, so the numbers are a floor for a box that only serves tablets.
//!
//!   cargo bench --bench load                       # 50 clients, 15 s
//!   SB_LOAD_CLIENTS=100 SB_LOAD_SECS=30 cargo bench --bench load

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Op {
    Create,
    Get,
    List,
    Transition,
}

const OPS: [Op; 4] = [Op::Create, Op::Get, Op::List, Op::Transition];

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// 200 and a fully read body (keep-alive needs the body drained).
async fn ok_body(r: reqwest::Result<reqwest::Response>) -> bool {
    match r {
        Ok(r) if r.status() == StatusCode::OK => r.bytes().await.is_ok(),
        _ => false,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let clients = env_num("SB_LOAD_CLIENTS", 50) as usize;
    let secs = env_num("SB_LOAD_SECS", 15);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut d = common::Daemon::new(tmp.path());
    d.start();
    d.wait_ready().await;
    let api = d.api();
    let manager = api.manager().await;
    let (_, advisor) = api.user(&manager, "bench", "advisor").await;
    let (_, c) = api.post("/api/v1/customers", &advisor, json!({ "name": "压测客户" })).await;
    let customer = c["id"].as_str().expect("customer").to_string();

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..clients {
        let (client, base, token, customer) = (d.client(), d.base(), advisor.clone(), customer.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<(Op, u64, bool)> = Vec::new();
            let mut mine: Vec<(String, bool)> = Vec::new(); // (case id, currently escalated)
            let mut rng = rand::rngs::StdRng::from_entropy();
            while Instant::now() < deadline {
                let roll = rng.gen_range(0..100);
                let op = if mine.is_empty() || roll < 20 {
                    Op::Create
                } else if roll < 70 {
                    Op::Get
                } else if roll < 85 {
                    Op::List
                } else {
                    Op::Transition
                };
                let t0 = Instant::now();
                let ok = match op {
                    Op::Create => {
                        let r = client
                            .post(format!("{base}/api/v1/cases"))
                            .bearer_auth(&token)
                            .json(&json!({ "customer_id": customer, "summary": format!("client {w}: 右前门有刮痕，还有异响") }))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == StatusCode::CREATED => {
                                let v: serde_json::Value = r.json().await.unwrap_or_default();
                                if let Some(id) = v["id"].as_str() {
                                    mine.push((id.to_string(), false));
                                }
                                true
                            }
                            _ => false,
                        }
                    }
                    Op::Get => {
                        let id = &mine[rng.gen_range(0..mine.len())].0;
                        let r = client.get(format!("{base}/api/v1/cases/{id}")).bearer_auth(&token).send().await;
                        ok_body(r).await
                    }
                    Op::List => {
                        let r = client.get(format!("{base}/api/v1/cases?status=reported&limit=20")).bearer_auth(&token).send().await;
                        ok_body(r).await
                    }
                    Op::Transition => {
                        let i = rng.gen_range(0..mine.len());
                        let (id, escalated) = mine[i].clone();
                        let path = if escalated { "hand-back" } else { "escalate" };
                        let r = client
                            .post(format!("{base}/api/v1/cases/{id}/{path}"))
                            .bearer_auth(&token)
                            .json(&json!({ "reason": "bench" }))
                            .send()
                            .await;
                        let ok = ok_body(r).await;
                        if ok {
                            mine[i].1 = !escalated;
                        }
                        ok
                    }
                };
                samples.push((op, t0.elapsed().as_micros() as u64, ok));
            }
            samples
        }));
    }
    let start = Instant::now();
    let mut all: Vec<(Op, u64, bool)> = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed().as_secs_f64().max(secs as f64);
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!();
    println!("ServiceBay HTTPS load: {clients} clients, {secs} s, {ncpu} cores shared by daemon and load generator");
    println!("{:<11} {:>8} {:>9} {:>9} {:>9} {:>7}", "operation", "requests", "req/s", "p50 ms", "p99 ms", "errors");
    let mut rows: Vec<(String, Vec<u64>, usize)> = OPS
        .iter()
        .map(|op| {
            let mut l: Vec<u64> = all.iter().filter(|s| s.0 == *op).map(|s| s.1).collect();
            l.sort_unstable();
            let errors = all.iter().filter(|s| s.0 == *op && !s.2).count();
            (format!("{op:?}").to_lowercase(), l, errors)
        })
        .collect();
    let mut total: Vec<u64> = all.iter().map(|s| s.1).collect();
    total.sort_unstable();
    rows.push(("all".into(), total, all.iter().filter(|s| !s.2).count()));
    for (name, l, errors) in rows {
        println!(
            "{:<11} {:>8} {:>9.0} {:>9.2} {:>9.2} {:>7}",
            name,
            l.len(),
            l.len() as f64 / elapsed,
            pct(&l, 0.50),
            pct(&l, 0.99),
            errors
        );
    }
    d.stop();
}
