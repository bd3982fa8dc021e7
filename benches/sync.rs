//! Sync benchmark (not a test): real uplinks (our `sync` module on real SQLite stores), a private
//! Mosquitto over TLS, two `servicebay hq-ingest` processes and a private PostgreSQL database, all
//! on this machine. Two scenarios:
//!   1. one store with a backlog of 10,000 records drains to PostgreSQL once the link comes up;
//!   2. 100 stores commit records at once and sync them through the two ingest workers.
//! Prints records/s and p50/p99 time from commit at the store to HQ's ack arriving there.
//!
//!   cargo bench --bench sync
//!   SB_SYNC_BACKLOG=20000 SB_SYNC_STORES=200 SB_SYNC_PER_STORE=500 cargo bench --bench sync

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hq::{Broker, Hq, PgDb, Pki};
use servicebay::catalog::{Catalog, SharedCatalog};
use servicebay::store::{self, Store, StoreError};
use servicebay::sync::link::RawLink;
use servicebay::sync::{Sync, SyncSettings};

fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A case record of the usual size (what a real outbox row carries).
fn case(i: usize) -> servicebay::domain::case::Case {
    use servicebay::domain::CaseStatus;
    servicebay::domain::case::Case {
        id: format!("case-{}", i / 3),
        store_id: "bench".into(),
        customer_id: "c1".into(),
        vehicle_id: None,
        status: CaseStatus::Assessed,
        prior_status: None,
        summary: "右前门刮痕，还有异响 / scratch on the right front door".into(),
        assigned_to: None,
        needs_review: false,
        created_at: "2026-11-24T08:00:00Z".into(),
        updated_at: "2026-11-24T08:00:01Z".into(),
        version: (i % 3) as i64 + 1,
    }
}

struct SimStore {
    store: Store,
    sync: Option<Arc<Sync>>,
    /// (seq, commit instant)
    commits: Vec<(i64, Instant)>,
    _dir: tempfile::TempDir,
}

impl SimStore {
    fn open() -> SimStore {
        let dir = tempfile::tempdir().expect("tmp");
        let (store, _) = Store::open(dir.path(), &servicebay::keys::Secret::random(), 2).expect("store");
        SimStore { store, sync: None, commits: Vec::new(), _dir: dir }
    }

    /// Commit `n` records in transactions of `per_tx`; remembers when each committed.
    async fn commit(&mut self, n: usize, per_tx: usize) {
        let mut done = 0;
        while done < n {
            let k = per_tx.min(n - done);
            let start = done;
            let seqs = self
                .store
                .write(move |tx| {
                    // One writer and AUTOINCREMENT: this transaction's rows get the next k sequences.
                    let head = store::sync::outbox_state(tx)?.head_seq;
                    for i in start..start + k {
                        let at = servicebay::domain::now();
                        let c = case(i);
                        let event = store::outbox::CaseEvent {
                            kind: "assessed",
                            actor: "advisor:7",
                            from: Some(servicebay::domain::CaseStatus::Intake),
                            to: Some(servicebay::domain::CaseStatus::Assessed),
                            reason: None,
                        };
                        store::outbox::append(tx, &store::outbox::Record::Case { case: &c, event }, &at)?;
                    }
                    Ok::<_, StoreError>((head + 1..=head + k as i64).collect::<Vec<i64>>())
                })
                .await
                .expect("commit");
            let now = Instant::now();
            self.commits.extend(seqs.into_iter().map(|s| (s, now)));
            done += k;
        }
    }
}

fn settings(id: &str, broker: &Broker, pki: &Pki, cert: &(std::path::PathBuf, std::path::PathBuf)) -> SyncSettings {
    let link = RawLink {
        broker: broker.url(),
        ca_file: Some(pki.ca()),
        client_cert: Some(cert.0.clone()),
        client_key: Some(cert.1.clone()),
        keepalive_secs: Some(10),
        backoff_max_secs: Some(2),
        ..Default::default()
    }
    .validate("sync.mqtt")
    .expect("link");
    SyncSettings {
        store_id: id.to_string(),
        link,
        hq_key: None,
        batch_max_records: 500,
        batch_max_bytes: 512 * 1024,
        window: 4,
        ack_timeout: Duration::from_secs(30),
        alarm_rows: 1_000_000,
    }
}

/// Poll every store's acked sequence until all commits are acked; returns per-record commit→ack ms
/// and the instant the last one was acked.
async fn collect(stores: &[SimStore], timeout: Duration) -> (Vec<f64>, Instant) {
    let mut next: Vec<usize> = vec![0; stores.len()];
    let mut lat = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    loop {
        let now = Instant::now();
        let mut pending = false;
        for (i, s) in stores.iter().enumerate() {
            let acked = s.sync.as_ref().map(|x| x.acked_seq()).unwrap_or(0);
            while next[i] < s.commits.len() && s.commits[next[i]].0 <= acked {
                lat.push(now.saturating_duration_since(s.commits[next[i]].1).as_secs_f64() * 1000.0);
                next[i] += 1;
                last = now;
            }
            pending |= next[i] < s.commits.len();
        }
        if !pending {
            break;
        }
        if Instant::now() > deadline {
            for (i, s) in stores.iter().enumerate().filter(|(i, s)| next[*i] < s.commits.len()).take(5) {
                let st = s.sync.as_ref().map(|x| x.acked_seq()).unwrap_or(0);
                eprintln!("store {i}: acked {st}, waiting for seq {} of {}", s.commits[next[i]].0, s.commits.len());
            }
            panic!("not all records acknowledged within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat, last)
}

fn row(name: &str, records: usize, secs: f64, lat: &[f64]) {
    println!(
        "| {name:<44} | {records:>7} | {secs:>7.2} | {:>9.0} | {:>8.1} | {:>8.1} |",
        records as f64 / secs,
        pct(lat, 0.5),
        pct(lat, 0.99)
    );
}

async fn run() {
    let backlog = env_num("SB_SYNC_BACKLOG", 10_000);
    let n_stores = env_num("SB_SYNC_STORES", 100);
    let per_store = env_num("SB_SYNC_PER_STORE", 500);

    let tmp = tempfile::tempdir().expect("tmp");
    let pki = Pki::new(&tmp.path().join("pki"));
    let mut broker = Broker::new(&tmp.path().join("broker"), &pki);
    broker.start();
    let db = PgDb::create().await;
    let mut hq = Hq::new(&tmp.path().join("hq"));
    for w in ["w1", "w2"] {
        let cfg = hq.config(w, &broker, &pki, &db.conn);
        hq.start_worker(w, &cfg);
    }
    let cert = pki.issue("store-bench", &[]);
    let catalog = SharedCatalog::new(Catalog::builtin());
    tokio::time::sleep(Duration::from_millis(500)).await; // workers connect and subscribe

    println!("\nServiceBay sync benchmark: Mosquitto (TLS, private), 2 × hq-ingest, PostgreSQL; {} cores", num_cpus());
    println!("| scenario                                     | records | seconds | records/s | p50 ms   | p99 ms   |");
    println!("|----------------------------------------------|--------:|--------:|----------:|---------:|---------:|");

    // 1. Backlog: committed while offline, then the link comes up. Latency counts from link-up
    //    (the records themselves waited for the outage).
    let mut one = SimStore::open();
    one.commit(backlog, 100).await;
    let up = Instant::now();
    for c in &mut one.commits {
        c.1 = up;
    }
    let dir = tmp.path().join("bundles-backlog");
    one.sync = Some(Sync::start(
        one.store.clone(),
        "bench-backlog".into(),
        Some(settings("bench-backlog", &broker, &pki, &cert)),
        catalog.clone(),
        dir,
        follow_up_of(&one.store),
    ));
    let stores = vec![one];
    let (lat, last) = collect(&stores, Duration::from_secs(300)).await;
    row(&format!("1 store, {backlog}-record backlog (from link-up)"), backlog, (last - up).as_secs_f64(), &lat);
    for s in &stores {
        if let Some(x) = &s.sync {
            x.stop().await;
        }
    }

    // 2. Many stores at once: each commits `per_store` records in small transactions while syncing.
    let mut stores: Vec<SimStore> = (0..n_stores).map(|_| SimStore::open()).collect();
    for (i, s) in stores.iter_mut().enumerate() {
        let id = format!("bench-{i:03}");
        s.sync = Some(Sync::start(
            s.store.clone(),
            id.clone(),
            Some(settings(&id, &broker, &pki, &cert)),
            catalog.clone(),
            tmp.path().join(&id),
            follow_up_of(&s.store),
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // all connected
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut s in stores.drain(..) {
        tasks.push(tokio::spawn(async move {
            s.commit(per_store, 10).await;
            s
        }));
    }
    for t in tasks {
        stores.push(t.await.expect("store task"));
    }
    let committed_in = start.elapsed();
    let (lat, last) = collect(&stores, Duration::from_secs(env_num("SB_SYNC_TIMEOUT", 300) as u64)).await;
    let total = n_stores * per_store;
    row(&format!("{n_stores} stores × {per_store} records, live"), total, (last - start).as_secs_f64(), &lat);
    println!("\n(stores committed all {total} records in {:.2} s; HQ rows: {})", committed_in.as_secs_f64(), count_events(&db).await);
    for s in &stores {
        if let Some(x) = &s.sync {
            x.stop().await;
        }
    }
}

async fn count_events(db: &PgDb) -> i64 {
    db.client().await.query_one("SELECT COUNT(*) FROM hq_events", &[]).await.map(|r| r.get(0)).unwrap_or(-1)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(run());
}

/// The store side's answer downlink (no model, built-in policy): the benchmark sends none.
fn follow_up_of(store: &servicebay::store::Store) -> std::sync::Arc<servicebay::case::follow_up::FollowUpService> {
    std::sync::Arc::new(servicebay::case::follow_up::FollowUpService::new(
        store.clone(),
        std::sync::Arc::new(servicebay::llm::NoneTextGen),
        servicebay::clock::Clock::system(),
        servicebay::case::follow_up::Setup::builtin("bench"),
        "bench".into(),
    ))
}
