//! Store → HQ sync under faults, with real parts: the `servicebay` daemon (child process), a private
//! Mosquitto over TLS with client certificates (killed with SIGKILL), `servicebay hq-ingest`
//! workers, and a private PostgreSQL database. Every test ends with `assert_exact`: HQ holds each
//! sequence the store committed exactly once, per-record versions in order, latest case states
//! equal to the store's.

mod common;

use std::time::{Duration, Instant};

use common::hq::{assert_exact, produce, wait_synced, Rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_made_while_the_broker_is_down_all_arrive() {
    let mut r = Rig::new().await;
    let store = "store-backlog";
    let (mut d, api, m) = r.store(store, None).await;

    // No broker: the store works standalone and keeps everything.
    let ok = produce(&api, &m, 3334, 32).await;
    assert_eq!(ok, 3334 * 3);
    let (_, st) = api.get("/api/v1/sync/status", &m).await;
    let committed = common::hq::store_max_seq(&d.data_dir());
    assert!(committed >= 10_000, "{committed}");
    assert_eq!(st["outbox_depth"].as_i64(), Some(committed), "{st}");
    assert_eq!(st["connected"], false, "{st}");
    assert_eq!(st["acked_seq"], 0);
    assert!(st["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{st}");
    assert!(st["oldest_unsent_age_secs"].as_f64().is_some(), "{st}");

    r.broker.start();
    r.worker("w1");
    let pg = r.db.client().await;
    let t0 = Instant::now();
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(180)).await;
    eprintln!("{committed} records drained in {:?}", t0.elapsed());
    assert_exact(&pg, store, &d.data_dir()).await;

    let (_, st) = api.get("/api/v1/sync/status", &m).await;
    assert_eq!(
        (st["connected"].clone(), st["outbox_depth"].clone(), st["acked_seq"].as_i64()),
        (true.into(), 0.into(), Some(committed)),
        "{st}"
    );
    assert!(st["last_ack_at"].as_str().is_some(), "{st}");
    // HQ's per-store view.
    let lag =
        pg.query_one("SELECT last_seq, backlog_estimate, link_state FROM hq_sync_lag WHERE store_id = $1", &[&store]).await.expect("lag");
    assert_eq!((lag.get::<_, i64>(0), lag.get::<_, i64>(1)), (committed, 0));
    assert_eq!(lag.get::<_, Option<String>>(2).as_deref(), Some("online"));

    // A clean stop publishes the retained `offline` status.
    d.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: Option<String> =
            pg.query_one("SELECT link_state FROM hq_stores WHERE store_id = $1", &[&store]).await.expect("state").get(0);
        if s.as_deref() == Some("offline") {
            break;
        }
        assert!(Instant::now() < deadline, "store never reported offline");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_repeatedly_during_transfer() {
    let mut r = Rig::new().await;
    let store = "store-brokerkill";
    r.broker.start();
    r.worker("w1");
    let (d, api, m) = r.store(store, None).await;

    let producer = {
        let (api, m) = (api.clone(), m.clone());
        tokio::spawn(async move { produce(&api, &m, 2000, 16).await })
    };
    for i in 0..6u64 {
        tokio::time::sleep(Duration::from_millis(300 + (i * 211) % 700)).await;
        r.broker.kill9();
        tokio::time::sleep(Duration::from_millis(200 + (i * 97) % 500)).await;
        r.broker.start();
    }
    assert_eq!(producer.await.expect("producer"), 6000, "the store keeps taking work while the broker dies");
    let pg = r.db.client().await;
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(180)).await;
    assert_exact(&pg, store, &d.data_dir()).await;
    let (_, st) = api.get("/api/v1/sync/status", &m).await;
    assert!(st["reconnects"].as_u64().unwrap_or(0) >= 1, "{st}");
    assert_eq!(r.hq.exited("w1"), None, "ingest survives broker deaths:\n{}", r.hq.log("w1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_killed_at_random_points_during_sync() {
    let mut r = Rig::new().await;
    let store = "store-appkill";
    r.broker.start();
    r.worker("w1");
    let (mut d, api, m) = r.store(store, None).await;
    let mut produced = 0;
    for round in 0..5u64 {
        let producer = {
            let (api, m) = (api.clone(), m.clone());
            tokio::spawn(async move { produce(&api, &m, 600, 16).await })
        };
        tokio::time::sleep(Duration::from_millis(400 + (round * 373) % 1100)).await;
        d.kill9();
        produced += producer.await.expect("producer");
        d.start();
        d.wait_ready().await;
    }
    assert!(produced > 0);
    let pg = r.db.client().await;
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(180)).await;
    assert_exact(&pg, store, &d.data_dir()).await;
    // Every write the API answered 2xx is at HQ (the store may hold more: commits whose answer the
    // kill cut off).
    let at_hq: i64 = pg.query_one("SELECT COUNT(*) FROM hq_events WHERE store_id = $1", &[&store]).await.expect("n").get(0);
    assert!(at_hq >= produced as i64, "{at_hq} < {produced}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_after_writing_before_acking_makes_no_duplicates() {
    let mut r = Rig::new().await;
    let store = "store-ingestkill";
    r.broker.start();
    // The crash point lives here, in the test, not in the product: a deferred trigger (it runs
    // inside COMMIT) makes the worker's second batch wait at COMMIT for a lock this test holds. The
    // test SIGKILLs the worker while it waits, then lets the lock go: PostgreSQL finishes that
    // COMMIT (a server does not notice a dead client while it waits on a lock), so the batch is
    // written and its ack never sent — the "written but not acked" crash, every run.
    let mut pg = r.db.client().await;
    servicebay::sync::hq::migrate(&mut pg).await.expect("migrate");
    pg.batch_execute(
        "CREATE FUNCTION test_hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF OLD.batches = 1 AND NEW.batches = 2 THEN PERFORM pg_advisory_xact_lock(4242); END IF;
             RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER test_hold_commit AFTER UPDATE ON hq_stores
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_hold_commit();
         SELECT pg_advisory_lock(4242);",
    )
    .await
    .expect("install the hold");
    r.worker("w1");
    let (d, api, m) = r.store(store, None).await;
    assert_eq!(produce(&api, &m, 1000, 16).await, 3000);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = pg
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the second batch never reached COMMIT:\n{}", r.hq.log("w1"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.hq.kill9("w1");
    pg.batch_execute("SELECT pg_advisory_unlock(4242)").await.expect("unlock");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let batches: i64 = pg.query_one("SELECT batches FROM hq_stores WHERE store_id = $1", &[&store]).await.expect("batches").get(0);
        if batches == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the held COMMIT did not complete after the worker died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (before, acked): (i64, i64) = {
        let row = pg
            .query_one(
                "SELECT (SELECT COUNT(*) FROM hq_events WHERE store_id = $1), acked_seq FROM hq_stores WHERE store_id = $1",
                &[&store],
            )
            .await
            .expect("n");
        (row.get(0), row.get(1))
    };
    assert!(before > 0 && acked > 0, "the killed worker committed two batches ({before} rows, acked {acked})");

    r.worker("w2");
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(120)).await;
    assert_exact(&pg, store, &d.data_dir()).await;
    let dups: i64 = pg.query_one("SELECT duplicates FROM hq_stores WHERE store_id = $1", &[&store]).await.expect("dups").get(0);
    assert!(dups > 0, "the committed-but-unacked batch came again and was ignored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_workers_share_the_load() {
    let mut r = Rig::new().await;
    r.broker.start();
    r.worker("w1");
    r.worker("w2");
    let mut stores = Vec::new();
    for i in 0..2 {
        let id = format!("store-shared-{i}");
        let (d, api, m) = r.store(&id, None).await;
        stores.push((id, d, api, m));
    }
    let mut producers = Vec::new();
    for (_, _, api, m) in &stores {
        let (api, m) = (api.clone(), m.clone());
        producers.push(tokio::spawn(async move { produce(&api, &m, 1000, 16).await }));
    }
    for p in producers {
        assert_eq!(p.await.expect("producer"), 3000);
    }
    let pg = r.db.client().await;
    for (id, d, _, _) in &stores {
        wait_synced(&pg, id, &d.data_dir(), Duration::from_secs(120)).await;
        assert_exact(&pg, id, &d.data_dir()).await;
    }
    let workers: Vec<(String, i64)> = pg
        .query("SELECT worker, COUNT(*) FROM hq_events GROUP BY worker ORDER BY worker", &[])
        .await
        .expect("workers")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(workers.len(), 2, "both workers stored batches: {workers:?}");
}
