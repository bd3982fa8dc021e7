-- 0008: the workshop and QC (seed scenario 2). The placeholder tables of 0001 were never written;
-- they are replaced by the shapes the stages use.
DROP TABLE work_order_parts;
DROP TABLE work_orders;
DROP TABLE qc_records;

-- One work order per case, made from the approved estimate when the technician starts the job;
-- a failed QC reopens it (rework).
CREATE TABLE work_orders (
    id           TEXT PRIMARY KEY,
    case_id      TEXT NOT NULL UNIQUE REFERENCES cases(id),
    estimate_id  TEXT NOT NULL REFERENCES estimates(id),
    status       TEXT NOT NULL CHECK (status IN ('open','qc','done')),
    bay          TEXT,
    technicians  TEXT NOT NULL DEFAULT '[]',
    opened_by    TEXT NOT NULL,
    opened_at    TEXT NOT NULL,
    closed_at    TEXT,
    version      INTEGER NOT NULL DEFAULT 1
);

-- Its lines, copied from the approved estimate: labour with standard hours (and the finding it
-- repairs), parts with the billed origin.
CREATE TABLE work_order_lines (
    id              TEXT PRIMARY KEY,
    work_order_id   TEXT NOT NULL REFERENCES work_orders(id),
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('labour','part')),
    code            TEXT NOT NULL,
    name_zh         TEXT NOT NULL,
    name_en         TEXT NOT NULL,
    labour_class    TEXT,
    standard_hours  REAL,
    qty             INTEGER NOT NULL DEFAULT 1,
    billed_origin   TEXT CHECK (billed_origin IN ('oem','equivalent','refurbished')),
    finding_id      TEXT,
    part            TEXT,
    damage          TEXT,
    status          TEXT NOT NULL DEFAULT 'todo' CHECK (status IN ('todo','active','paused','done')),
    UNIQUE (work_order_id, seq)
);

-- The labour clock: one row per start..pause/finish. One running entry per technician.
CREATE TABLE clock_entries (
    id                 TEXT PRIMARY KEY,
    line_id            TEXT NOT NULL REFERENCES work_order_lines(id),
    technician_id      INTEGER NOT NULL REFERENCES users(id),
    technician         TEXT NOT NULL,
    started_at         TEXT NOT NULL,
    ended_at           TEXT,
    corrected_by       TEXT,
    correction_reason  TEXT
);
CREATE UNIQUE INDEX clock_one_running ON clock_entries(technician_id) WHERE ended_at IS NULL;
CREATE INDEX clock_line ON clock_entries(line_id);

-- Parts fitted, from the label the technician photographed.
CREATE TABLE parts_fitted (
    id             TEXT PRIMARY KEY,
    work_order_id  TEXT NOT NULL REFERENCES work_orders(id),
    line_id        TEXT REFERENCES work_order_lines(id),
    photo_id       TEXT REFERENCES photos(id),
    symbology      TEXT NOT NULL,
    code_text      TEXT NOT NULL,
    part_no        TEXT,
    gtin           TEXT,
    serial         TEXT,
    origin         TEXT NOT NULL CHECK (origin IN ('oem','equivalent','refurbished')),
    scanned_by     TEXT NOT NULL,
    scanned_at     TEXT NOT NULL
);
CREATE INDEX parts_fitted_serial ON parts_fitted(serial) WHERE serial IS NOT NULL;
CREATE INDEX parts_fitted_order ON parts_fitted(work_order_id);

-- Which workshop photo a picture is: a checkpoint before or after the repair, a part label, or
-- in-repair documentation. The photo itself is a row of `photos` (encrypted like every photo).
-- Workshop photos never become intake findings.
CREATE TABLE workshop_shots (
    photo_id    TEXT PRIMARY KEY REFERENCES photos(id),
    case_id     TEXT NOT NULL REFERENCES cases(id),
    phase       TEXT NOT NULL CHECK (phase IN ('before','after','in_repair','part_label')),
    checkpoint  TEXT,
    taken_by    TEXT NOT NULL,
    taken_at    TEXT NOT NULL
);
CREATE INDEX workshop_shots_case ON workshop_shots(case_id, phase, checkpoint);

-- Pre-existing damage an advisor marks on the baseline (besides what the detector finds).
CREATE TABLE baseline_marks (
    id          TEXT PRIMARY KEY,
    case_id     TEXT NOT NULL REFERENCES cases(id),
    checkpoint  TEXT NOT NULL,
    part        TEXT NOT NULL,
    damage      TEXT NOT NULL,
    note        TEXT,
    marked_by   TEXT NOT NULL,
    at          TEXT NOT NULL
);

-- The customer's signature on the baseline at drop-off, with a hash of the shots it covers.
CREATE TABLE baseline_signoffs (
    case_id        TEXT PRIMARY KEY REFERENCES cases(id),
    signed_by      TEXT NOT NULL,
    signature_png  BLOB,
    shots_sha256   TEXT NOT NULL,
    recorded_by    TEXT NOT NULL,
    at             TEXT NOT NULL
);

-- Missed-issue alerts (queue 'qc') and labour/parts anomalies (queue 'manager'): proposals a person
-- settles. One row per (case, kind, subject): raising the same flag again changes nothing.
CREATE TABLE workshop_flags (
    id          TEXT PRIMARY KEY,
    case_id     TEXT NOT NULL REFERENCES cases(id),
    queue       TEXT NOT NULL CHECK (queue IN ('qc','manager')),
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open','confirmed','dismissed','escalated')),
    raised_at   TEXT NOT NULL,
    settled_by  TEXT,
    settled_at  TEXT,
    note        TEXT,
    version     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (case_id, kind, subject)
);
CREATE INDEX workshop_flags_queue ON workshop_flags(queue, status);

-- QC reports (versioned per case: a rework makes a new one). `body` is the report's data; the
-- store copy's PDF is kept with its hash (the customer's blurred copy is rendered on request).
CREATE TABLE qc_reports (
    id            TEXT PRIMARY KEY,
    case_id       TEXT NOT NULL REFERENCES cases(id),
    version       INTEGER NOT NULL,
    passed        INTEGER NOT NULL,
    body          TEXT NOT NULL,
    pdf           BLOB,
    pdf_sha256    TEXT NOT NULL,
    inspector     TEXT NOT NULL,
    inspector_id  INTEGER REFERENCES users(id),
    signed_at     TEXT NOT NULL,
    UNIQUE (case_id, version)
);

-- The latest before/after comparison of a case (viewpoint checks, per-part outcome), made by the
-- QC stage and read by the inspector's screen and the report.
CREATE TABLE qc_comparisons (
    case_id  TEXT PRIMARY KEY REFERENCES cases(id),
    body     TEXT NOT NULL,
    at       TEXT NOT NULL
);
