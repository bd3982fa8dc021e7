-- HQ schema v2: quarantine. A batch that PostgreSQL refuses for its content (a NUL in a text, a
-- key too large for its index, ...) would be resent by its store forever and wedge that store's
-- sync. Instead it is kept here byte for byte, with PostgreSQL's own reason, and its sequence range
-- counts as received so the store moves on. Nothing here is retried automatically: a person reads
-- the reason, repairs the data and, if it matters, replays it.

CREATE TABLE hq_quarantine (
    id           BIGSERIAL PRIMARY KEY,
    store_id     TEXT NOT NULL,
    after_seq    BIGINT NOT NULL,              -- the batch covers after_seq < seq <= last_seq
    first_seq    BIGINT NOT NULL,              -- its first record's sequence
    last_seq     BIGINT NOT NULL,
    records      INTEGER NOT NULL,
    payload      BYTEA NOT NULL,               -- the MQTT payload as received (gzip'd JSON)
    sqlstate     TEXT NOT NULL,                -- PostgreSQL's error code, e.g. 22P05
    message      TEXT NOT NULL,
    detail       TEXT,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    worker       TEXT NOT NULL,
    -- The same batch redelivered (a worker died before its ack) or resent is one entry, not two.
    UNIQUE (store_id, after_seq, last_seq)
);

ALTER TABLE hq_stores
    ADD COLUMN quarantined_batches BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN quarantined_records BIGINT NOT NULL DEFAULT 0;

-- New columns go last: CREATE OR REPLACE VIEW may only append.
CREATE OR REPLACE VIEW hq_sync_lag AS
SELECT store_id,
       acked_seq                            AS last_seq,
       last_seen,
       GREATEST(head_seq - acked_seq, 0)    AS backlog_estimate,
       now() - last_seen                    AS since_last_seen,
       link_state,
       records,
       duplicates,
       quarantined_batches,
       quarantined_records
FROM hq_stores;
