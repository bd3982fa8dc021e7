-- 0001: the appliance's first schema. Money is stored in fen (1/100 CNY) as integers; times are
-- RFC 3339 UTC text (sorts lexically); ids of synced records are UUID v7 text (unique across stores).

CREATE TABLE stores (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id                    INTEGER PRIMARY KEY,
    username              TEXT NOT NULL UNIQUE,
    display_name          TEXT NOT NULL,
    role                  TEXT NOT NULL CHECK (role IN ('advisor','technician','qc_inspector','customer_service','manager','hq_auditor')),
    password_hash         TEXT NOT NULL,
    must_change_password  INTEGER NOT NULL DEFAULT 1,
    disabled              INTEGER NOT NULL DEFAULT 0,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    client_addr  TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE customers (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    phone               TEXT,
    email               TEXT,
    preferred_language  TEXT NOT NULL DEFAULT 'zh-CN',
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

CREATE TABLE vehicles (
    id           TEXT PRIMARY KEY,
    customer_id  TEXT NOT NULL REFERENCES customers(id),
    vin          TEXT UNIQUE,
    plate        TEXT,
    make         TEXT,
    model        TEXT,
    year         INTEGER,
    mileage_km   INTEGER,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX vehicles_customer ON vehicles(customer_id);

CREATE TABLE cases (
    id            TEXT PRIMARY KEY,
    store_id      TEXT NOT NULL REFERENCES stores(id),
    customer_id   TEXT NOT NULL REFERENCES customers(id),
    vehicle_id    TEXT REFERENCES vehicles(id),
    status        TEXT NOT NULL,
    prior_status  TEXT,
    summary       TEXT NOT NULL,
    assigned_to   INTEGER REFERENCES users(id),
    needs_review  INTEGER NOT NULL DEFAULT 0,
    created_by    INTEGER REFERENCES users(id),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX cases_status ON cases(status, id);
CREATE INDEX cases_customer ON cases(customer_id, id);
CREATE INDEX cases_assigned ON cases(assigned_to, id);

-- Append-only timeline: who, what, when, why. Triggers refuse edits so history cannot be rewritten.
CREATE TABLE case_events (
    id           INTEGER PRIMARY KEY,
    case_id      TEXT NOT NULL REFERENCES cases(id),
    at           TEXT NOT NULL,
    actor_id     INTEGER REFERENCES users(id),
    actor        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    from_status  TEXT,
    to_status    TEXT,
    reason       TEXT
);
CREATE INDEX case_events_case ON case_events(case_id, id);
CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;
CREATE TRIGGER case_events_no_delete BEFORE DELETE ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;

CREATE TABLE messages (
    id       INTEGER PRIMARY KEY,
    case_id  TEXT NOT NULL REFERENCES cases(id),
    at       TEXT NOT NULL,
    sender   TEXT NOT NULL CHECK (sender IN ('customer','assistant','staff')),
    text     TEXT NOT NULL,
    meta     TEXT
);
CREATE INDEX messages_case ON messages(case_id, id);

CREATE TABLE photos (
    id           TEXT PRIMARY KEY,
    case_id      TEXT NOT NULL REFERENCES cases(id),
    sha256       TEXT NOT NULL,
    media_type   TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    shot         TEXT,
    uploaded_by  TEXT NOT NULL,
    uploaded_at  TEXT NOT NULL
);
CREATE INDEX photos_case ON photos(case_id);
CREATE INDEX photos_sha ON photos(sha256);

CREATE TABLE findings (
    id              TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL REFERENCES cases(id),
    source          TEXT NOT NULL CHECK (source IN ('customer','vision','advisor')),
    part            TEXT NOT NULL,
    position        TEXT,
    damage_type     TEXT NOT NULL,
    length_cm       REAL,
    primer_visible  INTEGER,
    occurs_when     TEXT,
    confidence      REAL,
    review_status   TEXT NOT NULL DEFAULT 'pending' CHECK (review_status IN ('pending','confirmed','corrected','rejected')),
    photo_id        TEXT REFERENCES photos(id),
    bbox            TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX findings_case ON findings(case_id);

CREATE TABLE estimates (
    id             TEXT PRIMARY KEY,
    case_id        TEXT NOT NULL REFERENCES cases(id),
    version        INTEGER NOT NULL,
    currency       TEXT NOT NULL DEFAULT 'CNY',
    total_fen      INTEGER NOT NULL,
    min_fen        INTEGER,
    max_fen        INTEGER,
    duration_days  REAL NOT NULL,
    status         TEXT NOT NULL DEFAULT 'draft',
    created_by     INTEGER REFERENCES users(id),
    created_at     TEXT NOT NULL,
    UNIQUE (case_id, version)
);

CREATE TABLE estimate_items (
    id               INTEGER PRIMARY KEY,
    estimate_id      TEXT NOT NULL REFERENCES estimates(id),
    kind             TEXT NOT NULL CHECK (kind IN ('labour','part')),
    code             TEXT NOT NULL,
    name_zh          TEXT NOT NULL,
    name_en          TEXT NOT NULL,
    hours            REAL,
    rate_fen         INTEGER,
    qty              REAL,
    unit_price_fen   INTEGER,
    amount_fen       INTEGER NOT NULL,
    part_origin      TEXT CHECK (part_origin IN ('oem','aftermarket'))
);
CREATE INDEX estimate_items_estimate ON estimate_items(estimate_id);

CREATE TABLE appointments (
    id          TEXT PRIMARY KEY,
    case_id     TEXT NOT NULL REFERENCES cases(id),
    bay         TEXT NOT NULL,
    starts_at   TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'booked',
    created_at  TEXT NOT NULL
);
CREATE INDEX appointments_bay ON appointments(bay, starts_at);

CREATE TABLE work_orders (
    id              TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL REFERENCES cases(id),
    status          TEXT NOT NULL DEFAULT 'open',
    technician_id   INTEGER REFERENCES users(id),
    opened_at       TEXT NOT NULL,
    closed_at       TEXT,
    labour_minutes  INTEGER NOT NULL DEFAULT 0,
    notes           TEXT
);

CREATE TABLE work_order_parts (
    id             INTEGER PRIMARY KEY,
    work_order_id  TEXT NOT NULL REFERENCES work_orders(id),
    part_code      TEXT NOT NULL,
    origin         TEXT NOT NULL CHECK (origin IN ('oem','aftermarket','unknown')),
    qty            REAL NOT NULL,
    recorded_at    TEXT NOT NULL
);

CREATE TABLE qc_records (
    id            TEXT PRIMARY KEY,
    case_id       TEXT NOT NULL REFERENCES cases(id),
    kind          TEXT NOT NULL CHECK (kind IN ('baseline','final')),
    checkpoints   TEXT NOT NULL,
    passed        INTEGER,
    report        TEXT,
    inspector_id  INTEGER REFERENCES users(id),
    created_at    TEXT NOT NULL
);

CREATE TABLE surveys (
    id             TEXT PRIMARY KEY,
    case_id        TEXT NOT NULL REFERENCES cases(id),
    token_hash     TEXT NOT NULL UNIQUE,
    due_at         TEXT NOT NULL,
    sent_at        TEXT,
    answered_at    TEXT,
    score          INTEGER CHECK (score BETWEEN 1 AND 5),
    problem_fixed  INTEGER,
    comment        TEXT
);

-- Store-and-forward to HQ: written in the same transaction as the change it describes; a row leaves
-- only after HQ's application-level ack (see issue 3 / sync). seq is the per-store sequence.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    record_type     TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    version         INTEGER NOT NULL,
    schema_version  INTEGER NOT NULL,
    at              TEXT NOT NULL,
    body            TEXT NOT NULL
);

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    user_id      INTEGER,
    username     TEXT NOT NULL,
    role         TEXT,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT,
    client_addr  TEXT,
    outcome      TEXT NOT NULL DEFAULT 'ok'
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
