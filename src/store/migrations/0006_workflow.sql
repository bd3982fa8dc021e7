-- 0006: the workflow spine.
-- One finding list: every source that reported a finding (customer words, a photo, an advisor),
-- the facts the dialogue collected (severity needs them), what a photo measured beside what the
-- customer said, and an advisor's note.
ALTER TABLE findings ADD COLUMN sources TEXT NOT NULL DEFAULT '[]';
UPDATE findings SET sources = json_array(source);
ALTER TABLE findings ADD COLUMN facts TEXT;
ALTER TABLE findings ADD COLUMN measured_cm REAL;
ALTER TABLE findings ADD COLUMN note TEXT;

-- An advisor decided the case needs no (more) photos, and why.
CREATE TABLE photo_waivers (
    case_id    TEXT PRIMARY KEY REFERENCES cases(id),
    reason     TEXT NOT NULL,
    waived_by  TEXT NOT NULL,
    at         TEXT NOT NULL
);

-- The customer's approval of one estimate version: who, how, when, and a hash of the priced lines
-- so a later dispute can show exactly what was approved. One approval per estimate version.
CREATE TABLE approvals (
    id                TEXT PRIMARY KEY,
    case_id           TEXT NOT NULL REFERENCES cases(id),
    estimate_id       TEXT NOT NULL UNIQUE REFERENCES estimates(id),
    estimate_version  INTEGER NOT NULL,
    approved_by       TEXT NOT NULL,
    channel           TEXT NOT NULL CHECK (channel IN ('tablet','in_person','phone')),
    signature_png     BLOB,
    lines_sha256      TEXT NOT NULL,
    recorded_by       TEXT NOT NULL,
    recorded_by_id    INTEGER REFERENCES users(id),
    approved_at       TEXT NOT NULL
);
CREATE INDEX approvals_case ON approvals(case_id);

-- Appointments change (reschedule, cancel): versioned for HQ; at most one booked per case.
ALTER TABLE appointments ADD COLUMN updated_at TEXT;
ALTER TABLE appointments ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX appointments_one_booked ON appointments(case_id) WHERE status = 'booked';
CREATE INDEX appointments_time ON appointments(status, starts_at, ends_at);

-- Whether the detector that made an analysis can find faces or people: a blurred render is made
-- only from such an analysis (older rows read 0: refused until analysed again).
ALTER TABLE photo_analysis ADD COLUMN privacy_capable INTEGER NOT NULL DEFAULT 0;
