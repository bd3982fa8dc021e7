-- HQ schema v1: every store's events, the latest state of each record, and per-store sync position.

CREATE TABLE hq_stores (
    store_id         TEXT PRIMARY KEY,
    acked_seq        BIGINT NOT NULL DEFAULT 0,       -- highest contiguous sequence stored
    head_seq         BIGINT NOT NULL DEFAULT 0,       -- newest sequence the store reported having
    first_seen       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_batch_at    TIMESTAMPTZ,
    batches          BIGINT NOT NULL DEFAULT 0,
    records          BIGINT NOT NULL DEFAULT 0,
    duplicates       BIGINT NOT NULL DEFAULT 0,
    link_state       TEXT,                            -- from the store's retained status
    link_state_at    TIMESTAMPTZ,
    bundles          JSONB
);

-- Every outbox row of every store, once.
CREATE TABLE hq_events (
    store_id        TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    event_id        TEXT NOT NULL UNIQUE,
    record_type     TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    version         BIGINT NOT NULL,
    schema_version  INTEGER NOT NULL,
    at              TEXT NOT NULL,
    body            JSONB NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    worker          TEXT NOT NULL,
    PRIMARY KEY (store_id, seq)
);
CREATE INDEX hq_events_record ON hq_events (store_id, record_type, record_id, seq);

-- The latest state of each record (the row with the highest sequence wins).
CREATE TABLE hq_records (
    store_id     TEXT NOT NULL,
    record_type  TEXT NOT NULL,
    record_id    TEXT NOT NULL,
    version      BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    at           TEXT NOT NULL,
    body         JSONB NOT NULL,
    PRIMARY KEY (store_id, record_type, record_id)
);

-- Batches stored beyond a gap, waiting for the gap to fill before the ack can pass them.
CREATE TABLE hq_ranges (
    store_id   TEXT NOT NULL,
    after_seq  BIGINT NOT NULL,
    last_seq   BIGINT NOT NULL,
    PRIMARY KEY (store_id, after_seq, last_seq)
);

-- Per-store sync lag for HQ analysts and alerting.
CREATE VIEW hq_sync_lag AS
SELECT store_id,
       acked_seq                            AS last_seq,
       last_seen,
       GREATEST(head_seq - acked_seq, 0)    AS backlog_estimate,
       now() - last_seen                    AS since_last_seen,
       link_state,
       records,
       duplicates
FROM hq_stores;
