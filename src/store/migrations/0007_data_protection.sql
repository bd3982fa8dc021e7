-- 0007: data protection (encryption at rest came with the SQLCipher build; this adds what the
-- retention job, legal holds and customers' erasure requests need).

-- A legal hold (its reason): the case and its customer are kept whatever retention says.
ALTER TABLE cases ADD COLUMN legal_hold TEXT;
-- A customer erased on request or by retention: personal fields hold tombstones from then on.
ALTER TABLE customers ADD COLUMN erased_at TEXT;
-- A photo whose file was removed (retention, erasure); the row stays for the case's history.
ALTER TABLE photos ADD COLUMN removed_at TEXT;
ALTER TABLE photos ADD COLUMN removed_reason TEXT;

-- The timeline stays append-only, with one exception: erasure may blank an event's free-text
-- reason (it can hold a customer's words) and change nothing else.
DROP TRIGGER case_events_no_update;
CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
WHEN NOT (NEW.reason IS '[erased]' AND NEW.id = OLD.id AND NEW.case_id = OLD.case_id AND NEW.at = OLD.at
          AND NEW.actor IS OLD.actor AND NEW.actor_id IS OLD.actor_id AND NEW.kind = OLD.kind
          AND NEW.from_status IS OLD.from_status AND NEW.to_status IS OLD.to_status)
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;

-- What the daily jobs did (backup, retention): the status page, /metrics and the operator read it.
CREATE TABLE maintenance_runs (
    id      INTEGER PRIMARY KEY,
    job     TEXT NOT NULL CHECK (job IN ('backup','retention')),
    at      TEXT NOT NULL,
    ok      INTEGER NOT NULL,
    report  TEXT NOT NULL
);
CREATE INDEX maintenance_runs_job ON maintenance_runs(job, at);
