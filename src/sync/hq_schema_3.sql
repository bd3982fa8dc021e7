-- HQ schema v3: erasures. When a store erases a customer's data (their request, or retention), it
-- sends an `erasure` record naming every record it had sent for that customer. HQ deletes those
-- records and their events in the same transaction that stores the batch, and keeps this log (ids
-- and counts only, no personal data) as the proof that it did.
CREATE TABLE hq_erasures (
    id               BIGSERIAL PRIMARY KEY,
    store_id         TEXT NOT NULL,
    event_id         TEXT NOT NULL UNIQUE,
    customer_id      TEXT NOT NULL,
    reason           TEXT NOT NULL,
    cases            INTEGER NOT NULL,
    records_removed  BIGINT NOT NULL,
    events_removed   BIGINT NOT NULL,
    requested_at     TEXT NOT NULL,
    erased_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
