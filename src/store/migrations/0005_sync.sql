-- Sync with HQ: what HQ has acknowledged, which signed bundles are applied, what was refused.
CREATE TABLE sync_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    acked_seq    INTEGER NOT NULL DEFAULT 0,
    last_ack_at  TEXT
);
INSERT INTO sync_state (id, acked_seq) VALUES (1, 0);

CREATE TABLE bundles (
    kind        TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    target      TEXT NOT NULL,
    applied_at  TEXT NOT NULL
);

CREATE TABLE bundle_rejections (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    topic   TEXT NOT NULL,
    kind    TEXT,
    version INTEGER,
    reason  TEXT NOT NULL
);

-- Findings change under review; HQ orders their outbox rows by this version.
ALTER TABLE findings ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
