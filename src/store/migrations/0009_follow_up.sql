-- 0009: follow-up after delivery (seed scenario 3): the 回访 task, consent, survey answers from the
-- phone call or HQ's survey page, hot alerts with their SLA, answers received from HQ, and the daily
-- KPI snapshots that go up. The placeholder `surveys` of 0001 was never written; it is replaced.
DROP TABLE surveys;

-- One follow-up task per delivered case, due 48 h after delivery (moved out of closed hours).
-- `token` is printed as the survey QR; only its SHA-256 ever leaves the store.
CREATE TABLE follow_ups (
    id              TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL UNIQUE REFERENCES cases(id),
    customer_id     TEXT NOT NULL REFERENCES customers(id),
    delivered_at    TEXT NOT NULL,
    due_at          TEXT NOT NULL,
    token           TEXT NOT NULL UNIQUE,
    token_hash      TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('pending','answered','unreachable','declined')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    last_attempt_note TEXT,
    closed_at       TEXT,
    version         INTEGER NOT NULL DEFAULT 1,
    updated_at      TEXT NOT NULL
);
CREATE INDEX follow_ups_due ON follow_ups (status, due_at);

-- PIPL consent, one row per grant; revoking stamps revoked_at (never deleted: it is the proof).
-- channel 'call' with granted = 0 is an opt-out of follow-up calls.
CREATE TABLE consents (
    id            TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers(id),
    case_id       TEXT REFERENCES cases(id),
    channel       TEXT NOT NULL CHECK (channel IN ('sms','wechat','hq_relay','call')),
    granted       INTEGER NOT NULL CHECK (granted IN (0,1)),
    text_version  TEXT NOT NULL,
    recorded_at   TEXT NOT NULL,
    recorded_by   TEXT NOT NULL,
    revoked_at    TEXT,
    revoked_by    TEXT
);
CREATE INDEX consents_customer ON consents (customer_id, channel);

-- Survey answers (several per task are kept: a phone answer and a later QR answer both count).
-- source_id is the HQ answer id for answers taken at HQ (exactly once), the local id otherwise.
CREATE TABLE surveys (
    id             TEXT PRIMARY KEY,
    source_id      TEXT NOT NULL UNIQUE,
    follow_up_id   TEXT NOT NULL REFERENCES follow_ups(id),
    case_id        TEXT NOT NULL REFERENCES cases(id),
    channel        TEXT NOT NULL CHECK (channel IN ('phone','qr')),
    csat           INTEGER NOT NULL CHECK (csat BETWEEN 1 AND 5),
    nps            INTEGER NOT NULL CHECK (nps BETWEEN 0 AND 10),
    fixed          TEXT NOT NULL DEFAULT '[]',   -- [{finding_id, label, answer: yes|partly|no}]
    comment        TEXT,
    category       TEXT CHECK (category IN ('quality','price','time','staff','other')),
    summary        TEXT,
    summary_from_llm INTEGER NOT NULL DEFAULT 0,
    hot            INTEGER NOT NULL DEFAULT 0,
    review_invited INTEGER NOT NULL DEFAULT 1,
    answered_at    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    recorded_by    TEXT NOT NULL
);
CREATE INDEX surveys_case ON surveys (case_id);
CREATE INDEX surveys_answered ON surveys (answered_at);

-- What an answer sent to a person: a hot alert (CSAT <= 3, NPS <= 6, anything not fixed) with its
-- SLA, or a CSAT-4 suggestion (recorded, no SLA).
CREATE TABLE follow_up_alerts (
    id                TEXT PRIMARY KEY,
    case_id           TEXT NOT NULL REFERENCES cases(id),
    survey_id         TEXT NOT NULL UNIQUE REFERENCES surveys(id),
    kind              TEXT NOT NULL CHECK (kind IN ('hot','suggestion')),
    reasons           TEXT NOT NULL DEFAULT '[]',
    category          TEXT NOT NULL,
    summary           TEXT NOT NULL,
    proposed          TEXT,                      -- findings the intake extractor found in the words
    raised_at         TEXT NOT NULL,
    due_at            TEXT,
    escalate_at       TEXT,
    escalated_at      TEXT,
    first_response_at TEXT,
    first_response_by TEXT,
    resolved_at       TEXT,
    resolved_by       TEXT,
    resolution        TEXT,
    new_case_id       TEXT REFERENCES cases(id),
    version           INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX follow_up_alerts_open ON follow_up_alerts (kind, resolved_at);

-- The highest downlink sequence applied per HQ channel, moved in the transaction that applies it.
CREATE TABLE downlink_state (
    channel     TEXT PRIMARY KEY,
    applied_seq INTEGER NOT NULL,
    at          TEXT NOT NULL
);

-- One KPI snapshot per local day (computed at the end of the day, and on demand), synced to HQ.
CREATE TABLE kpi_snapshots (
    day   TEXT PRIMARY KEY,
    body  TEXT NOT NULL,
    at    TEXT NOT NULL
);
