-- 0010: data brought in from files. The dealer's DMS export gives customers and vehicles (upserted
-- into the existing tables) and the cars' earlier workshop visits; every import is recorded.

-- One earlier visit of a car, from the DMS (one visit = one repair order: its lines folded into the
-- lists). The natural key makes a re-import of the same file change nothing. `part_keys` are our
-- `domain::Part` ids found in the operation and part texts (the same-part mark, comeback KPI).
CREATE TABLE service_history (
    id          TEXT PRIMARY KEY,
    vehicle_id  TEXT NOT NULL REFERENCES vehicles(id),
    visit_date  TEXT NOT NULL,                -- YYYY-MM-DD, the store's local day
    mileage_km  INTEGER,
    ro_no       TEXT NOT NULL DEFAULT '',     -- 工单号; '' when the export has none
    operations  TEXT NOT NULL DEFAULT '[]',   -- JSON list of texts as written
    parts       TEXT NOT NULL DEFAULT '[]',   -- JSON list of part names as written
    part_keys   TEXT NOT NULL DEFAULT '[]',   -- JSON list of Part ids
    amount_fen  INTEGER,
    source      TEXT NOT NULL DEFAULT 'dms' CHECK (source IN ('dms')),
    import_id   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (vehicle_id, visit_date, ro_no)
);
CREATE INDEX service_history_date ON service_history (visit_date);

-- Every import (dry runs and refused files too): what came in, how it was read, what it did.
-- `counts` holds numbers only (no personal data); the file is known by its SHA-256.
CREATE TABLE import_runs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('dms')),
    file_name    TEXT NOT NULL,
    file_sha256  TEXT NOT NULL,
    mapping      TEXT NOT NULL,
    dry_run      INTEGER NOT NULL CHECK (dry_run IN (0,1)),
    counts       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    at           TEXT NOT NULL
);
CREATE INDEX import_runs_at ON import_runs (at);
