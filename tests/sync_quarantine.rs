//! Poison and outages at HQ, with real parts (a private Mosquitto with client certificates,
//! `servicebay hq-ingest` processes, PostgreSQL): a batch PostgreSQL refuses for its content is
//! quarantined with PostgreSQL's own code and acknowledged, so the store moves on; a PostgreSQL that
//! goes away mid-transfer only delays the data, which then arrives exactly once.

mod common;

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use servicebay::sync::hq::{publish_once, HqConfig};
use servicebay::sync::wire::{self, Batch, Record};

use common::hq::{assert_exact, produce, wait_synced, PrivatePg, Rig};

/// A record as an older appliance sent it: its API let any text into a case, so a body may hold
/// `\u0000` — valid JSON, refused by PostgreSQL's jsonb.
fn record(seq: i64, case: &str, version: i64, summary: &str) -> Record {
    Record {
        seq,
        event_id: format!("old-{seq}"),
        record_type: "case".into(),
        record_id: case.into(),
        version,
        schema_version: 1,
        at: "2026-11-30T08:00:00Z".into(),
        body: serde_json::json!({ "id": case, "status": "reported", "summary": summary, "version": version }).to_string(),
    }
}

fn batch(store: &str, after: i64, records: Vec<Record>) -> Batch {
    Batch {
        v: wire::WIRE_VERSION,
        store_id: store.into(),
        after_seq: after,
        last_seq: records.last().map_or(after, |r| r.seq),
        head_seq: 9,
        sent_at: "2026-11-30T08:00:01Z".into(),
        records,
    }
}

/// Wait until HQ's ack for `store` (retained, as a store subscribing to its ack topic gets it, and
/// then live) says `want`; returns the last ack seen.
async fn ack_reaches(cfg: &HqConfig, store: &str, want: i64) -> i64 {
    let (client, mut ev) = AsyncClient::new(cfg.link.options(&format!("ack-reader-{want}")).expect("options"), 16);
    client.subscribe(format!("servicebay/v1/{store}/ack"), QoS::AtLeastOnce).await.expect("subscribe");
    let mut last = -1;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    last = wire::decode_ack(&p.payload).expect("an ack").acked_seq;
                    if last == want {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("ack reader: {e}"),
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    last
}

/// HQ's acked sequence for `store` (-1 before HQ knows the store or has its schema).
async fn acked(pg: &tokio_postgres::Client, store: &str) -> i64 {
    pg.query_opt("SELECT acked_seq FROM hq_stores WHERE store_id = $1", &[&store]).await.ok().flatten().map_or(-1, |r| r.get(0))
}

/// Publish like a store does: again after an ack timeout, until HQ's acked sequence is `want`
/// (the first copy may reach the broker before the worker's shared subscription exists).
async fn send_until_acked(sender: &HqConfig, pg: &tokio_postgres::Client, store: &str, payload: &[u8], want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        publish_once(sender, &format!("servicebay/v1/{store}/events"), payload.to_vec(), false).await.expect("publish");
        let timeout = Instant::now() + Duration::from_secs(3);
        while Instant::now() < timeout {
            if acked(pg, store).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(Instant::now() < deadline, "HQ acked {}, expected {want}", acked(pg, store).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_postgres_refuses_is_quarantined_acked_and_the_store_moves_on() {
    let mut r = Rig::new().await;
    r.broker.start();
    let hq_toml = r.worker("w1");
    let store = "store-older";
    let sender = r.client_config("older-appliance");
    let pg = r.db.client().await;

    let first = batch(store, 0, vec![record(1, "c1", 1, "左前门凹陷"), record(2, "c2", 1, "ok"), record(3, "c1", 2, "左前门凹陷")]);
    let poison =
        batch(store, 3, vec![record(4, "c2", 2, "ok"), record(5, "c3", 1, "pasted from a form\u{0}with a NUL"), record(6, "c1", 3, "ok")]);
    let after = batch(store, 6, vec![record(7, "c3", 2, "fixed"), record(8, "c2", 3, "ok"), record(9, "c4", 1, "新")]);
    let poison_bytes = wire::encode_batch(&poison);
    send_until_acked(&sender, &pg, store, &wire::encode_batch(&first), 3).await;
    // Set aside with PostgreSQL's own reason, byte for byte, and its range counts as received.
    send_until_acked(&sender, &pg, store, &poison_bytes, 6).await;
    assert_eq!(ack_reaches(&sender, store, 6).await, 6, "the store is told to drop 4..=6 from its outbox");
    let q = pg
        .query(
            "SELECT after_seq, first_seq, last_seq, records, payload, sqlstate, message, COALESCE(detail, ''), worker FROM hq_quarantine",
            &[],
        )
        .await
        .expect("quarantine");
    assert_eq!(q.len(), 1);
    let q = &q[0];
    assert_eq!((q.get::<_, i64>(0), q.get::<_, i64>(1), q.get::<_, i64>(2), q.get::<_, i32>(3)), (3, 4, 6, 3));
    assert_eq!(q.get::<_, Vec<u8>>(4), poison_bytes, "the payload as received");
    assert_eq!(q.get::<_, String>(5), "22P05", "jsonb refuses \\u0000: {} / {}", q.get::<_, String>(6), q.get::<_, String>(7));
    assert!(q.get::<_, String>(7).contains("\\u0000"), "PostgreSQL's detail names the character: {}", q.get::<_, String>(7));
    assert_eq!(q.get::<_, String>(8), "w1");

    // The same batch again (a resend that crossed the ack): acknowledged, not a second entry.
    send_until_acked(&sender, &pg, store, &poison_bytes, 6).await;
    // The batches after it arrive.
    send_until_acked(&sender, &pg, store, &wire::encode_batch(&after), 9).await;
    assert_eq!(ack_reaches(&sender, store, 9).await, 9);
    let seqs: Vec<i64> = pg
        .query("SELECT seq FROM hq_events WHERE store_id = $1 ORDER BY seq", &[&store])
        .await
        .expect("seqs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 7, 8, 9], "stored: all but the quarantined range");
    let latest: Vec<(String, i64)> = pg
        .query("SELECT record_id, version FROM hq_records WHERE store_id = $1 ORDER BY record_id", &[&store])
        .await
        .expect("records")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(latest, [("c1".to_string(), 2), ("c2".into(), 3), ("c3".into(), 2), ("c4".into(), 1)]);

    // Counted: in the view, and in `servicebay hq-lag`.
    let lag = pg
        .query_one(
            "SELECT last_seq, backlog_estimate, quarantined_batches, quarantined_records FROM hq_sync_lag WHERE store_id = $1",
            &[&store],
        )
        .await
        .expect("lag");
    assert_eq!((lag.get::<_, i64>(0), lag.get::<_, i64>(1), lag.get::<_, i64>(2), lag.get::<_, i64>(3)), (9, 0, 1, 3));
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_servicebay")).arg("--config").arg(&hq_toml).arg("hq-lag").output().expect("hq-lag");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    // `quarantined` is the last column.
    assert_eq!(table.lines().next().and_then(|h| h.split_whitespace().last()), Some("quarantined"), "{table}");
    let row = table.lines().find(|l| l.starts_with(store)).unwrap_or_default();
    assert_eq!(row.split_whitespace().last(), Some("1"), "{table}");

    // The worker says why, with PostgreSQL's code; never just "db error".
    let log = r.hq.log("w1");
    assert!(log.contains("batch quarantined") && log.contains("22P05"), "{log}");
    assert!(!log.contains("db error"), "{log}");
    assert_eq!(r.hq.exited("w1"), None, "the worker lives on:\n{log}");
}

/// The same through a real store: its SQLite outbox holds a row an older version committed with a
/// NUL (the API no longer lets one in). The store's own uplink sends it; HQ quarantines that
/// batch, the store's outbox drains, and what the store makes afterwards arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_store_with_an_old_poisoned_row_drains_its_outbox() {
    let mut r = Rig::new().await;
    let store = "store-oldrow";
    let (mut d, api, m) = r.store(store, None).await;
    assert_eq!(produce(&api, &m, 10, 4).await, 30);
    d.stop();
    {
        let db = common::db(&d.data_dir());
        let n = db.execute(r#"UPDATE outbox SET body = '{"summary":"pasted\u0000text"}' WHERE seq = 5"#, []).expect("poison the row");
        assert_eq!(n, 1);
    }
    d.start();
    d.wait_ready().await;
    r.broker.start();
    r.worker("w1");
    let pg = r.db.client().await;
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(60)).await;
    let (quarantined, lo, hi, code): (i64, i64, i64, String) = {
        let q = pg
            .query_one("SELECT COUNT(*), MIN(after_seq), MAX(last_seq), MIN(sqlstate) FROM hq_quarantine WHERE store_id = $1", &[&store])
            .await
            .expect("quarantine");
        (q.get(0), q.get(1), q.get(2), q.get(3))
    };
    assert_eq!(quarantined, 1);
    assert!(lo < 5 && hi >= 5, "the quarantined range ({lo}, {hi}] holds the poisoned row");
    assert_eq!(code, "22P05");

    // Afterwards: new work arrives, exactly once; HQ has every sequence either stored or in the
    // quarantined range, never both.
    assert_eq!(produce(&api, &m, 20, 4).await, 60);
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(60)).await;
    let max = common::hq::store_max_seq(&d.data_dir());
    let r2 = pg
        .query_one(
            "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MIN(seq), 0), COUNT(*) FILTER (WHERE seq > $2 AND seq <= $3)
             FROM hq_events WHERE store_id = $1",
            &[&store, &lo, &hi],
        )
        .await
        .expect("events");
    let (n, distinct, min_seq, inside): (i64, i64, i64, i64) = (r2.get(0), r2.get(1), r2.get(2), r2.get(3));
    assert_eq!(inside, 0, "nothing of the quarantined range is in hq_events");
    assert_eq!((n, distinct), (max - (hi - lo), max - (hi - lo)), "every other sequence once");
    assert!(min_seq == 1 || lo == 0, "stored from the start unless the first batch was the poisoned one");
}

/// Wait until HQ's acked sequence for `store` passes `above`; returns it.
async fn wait_progress(private: &PrivatePg, store: &str, above: i64) -> i64 {
    let pg = private.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a: i64 = pg
            .query_opt("SELECT acked_seq FROM hq_stores WHERE store_id = $1", &[&store])
            .await
            .ok() // before the worker's first migration there is no table yet
            .flatten()
            .map_or(0, |r| r.get(0));
        if a > above {
            return a;
        }
        assert!(Instant::now() < deadline, "HQ stuck at {a}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_mid_transfer_loses_nothing() {
    let mut r = Rig::new().await;
    let private = PrivatePg::start_new();
    let store = "store-pgdown";
    r.broker.start();
    let (d, api, m) = r.store(store, None).await;
    // A backlog made before HQ ingests anything.
    assert_eq!(produce(&api, &m, 1000, 16).await, 3000);
    r.worker_on("w1", &private.conn("postgres"));

    // The store keeps making work throughout.
    let producer = {
        let (api, m) = (api.clone(), m.clone());
        tokio::spawn(async move { produce(&api, &m, 500, 4).await })
    };
    let mut seen = 0;
    for mode in ["fast", "immediate"] {
        let at = wait_progress(&private, store, seen).await;
        let head = common::hq::store_max_seq(&d.data_dir());
        private.stop(mode);
        if mode == "fast" {
            // Acks come per batch of 500 and the backlog is 3000: this stop is mid-transfer.
            assert!(at < head, "stopped mid-transfer: HQ had {at} of {head}");
        }
        eprintln!("PostgreSQL stopped ({mode}) with HQ at {at} of {head}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        private.start();
        seen = at;
    }
    assert_eq!(producer.await.expect("producer"), 1500);
    let pg = private.client().await;
    wait_synced(&pg, store, &d.data_dir(), Duration::from_secs(180)).await;
    assert_exact(&pg, store, &d.data_dir()).await;

    // An outage is not poison: nothing was set aside, and the worker rode it out.
    let quarantined: i64 = pg.query_one("SELECT COUNT(*) FROM hq_quarantine", &[]).await.expect("quarantine").get(0);
    assert_eq!(quarantined, 0);
    let log = r.hq.log("w1");
    assert_eq!(r.hq.exited("w1"), None, "ingest survives PostgreSQL restarts:\n{log}");
    // Logged with PostgreSQL's code: 57P01 (terminating connection due to administrator command)
    // or 57P03 (the database system is shutting down), whichever the worker met first — which one
    // depends on timing, the class does not.
    assert!(log.contains("57P01") || log.contains("57P03"), "{log}");
    assert!(!log.contains("db error"), "{log}");
}
