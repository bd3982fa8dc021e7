-- HQ schema v4: the survey service (`servicebay hq-survey`). Customers answer the follow-up survey
-- on HQ's page (a QR code printed by the store, or a link HQ sent by SMS/WeChat); each answer is
-- stored once per follow-up, and travels down to its store over MQTT with a per-store sequence
-- that the store acknowledges.

-- The page finds a follow-up task by the SHA-256 of the token in its URL.
CREATE INDEX hq_records_follow_up_token ON hq_records ((body->>'token_hash')) WHERE record_type = 'follow_up';
-- The notifier scans the pending follow-ups.
CREATE INDEX hq_records_follow_up_pending ON hq_records (store_id, record_id)
    WHERE record_type = 'follow_up' AND body->>'status' = 'pending';

-- One answer per follow-up, whatever the channel and however often the form is sent.
CREATE TABLE hq_survey_answers (
    id            TEXT PRIMARY KEY,
    store_id      TEXT NOT NULL,
    follow_up_id  TEXT NOT NULL,
    case_id       TEXT NOT NULL,
    via           TEXT NOT NULL CHECK (via IN ('qr', 'sms', 'wechat')),  -- which link was opened
    lang          TEXT NOT NULL,
    csat          SMALLINT NOT NULL CHECK (csat BETWEEN 1 AND 5),
    nps           SMALLINT NOT NULL CHECK (nps BETWEEN 0 AND 10),
    fixed         JSONB NOT NULL,                 -- [{"finding_id","answer"}]
    comment       TEXT,
    hot           BOOLEAN NOT NULL,               -- domain::follow_up::route: a person must call back
    answered_at   TIMESTAMPTZ NOT NULL,
    downlink_seq  BIGINT NOT NULL,
    UNIQUE (store_id, follow_up_id)
);

-- Per store: the next downlink sequence to hand out (allocated under this row's lock, so sequences
-- have no gaps) and the highest one the store has applied (from its retained answers/ack; it only
-- moves forward).
CREATE TABLE hq_downlink_state (
    store_id      TEXT PRIMARY KEY,
    next_seq      BIGINT NOT NULL DEFAULT 1,
    acked_seq     BIGINT NOT NULL DEFAULT 0,
    acked_at      TIMESTAMPTZ,
    last_sent_at  TIMESTAMPTZ,
    sends         BIGINT NOT NULL DEFAULT 0,
    CHECK (acked_seq >= 0 AND acked_seq < next_seq)
);

-- What goes down to each store, in order: `payload` is the `wire::HqAnswer` as sent.
CREATE TABLE hq_downlink (
    store_id    TEXT NOT NULL,
    seq         BIGINT NOT NULL CHECK (seq >= 1),
    answer_id   TEXT NOT NULL UNIQUE REFERENCES hq_survey_answers (id),
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, seq)
);

-- SMS/WeChat invitations through the configured webhook: at most one row per follow-up and
-- channel (the claim), retried with backoff up to the configured attempts, then `failed` (kept,
-- visible). `cancelled`: consent was withdrawn or the follow-up was answered before it went out.
-- `link_hash` is the SHA-256 of the token in the link the message carries.
CREATE TABLE hq_notifications (
    id               TEXT PRIMARY KEY,
    store_id         TEXT NOT NULL,
    follow_up_id     TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('sms', 'wechat')),
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    last_error       TEXT,
    sent_at          TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    link_hash        TEXT NOT NULL UNIQUE,
    UNIQUE (store_id, follow_up_id, channel)
);
CREATE INDEX hq_notifications_due ON hq_notifications (next_attempt_at) WHERE status = 'pending';

-- The survey service's signing secret (CSRF tokens, the links in invitations), made once by the
-- first hq-survey to start, so every hq-survey process and restart agrees. `[survey] secret_file`
-- replaces it.
CREATE TABLE hq_survey_secret (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    secret      BYTEA NOT NULL CHECK (length(secret) >= 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A store's erasure (a customer's request, or retention) deletes its follow_up records here
-- (hq-ingest, `erasure` records); the customer's own words taken on HQ's page go with them,
-- whatever path deleted the record. The scores stay: they are not personal and the KPIs count them.
-- Invitations hold no phone number or token (only the link's hash), so there is nothing to erase.
CREATE FUNCTION hq_survey_erase() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hq_downlink d SET payload = jsonb_set(d.payload, '{answer,comment}', 'null'::jsonb)
    FROM hq_survey_answers a
    WHERE a.id = d.answer_id AND a.store_id = OLD.store_id AND a.follow_up_id = OLD.record_id;
    UPDATE hq_survey_answers SET comment = NULL
    WHERE store_id = OLD.store_id AND follow_up_id = OLD.record_id AND comment IS NOT NULL;
    RETURN OLD;
END
$$;
CREATE TRIGGER hq_records_erase_survey AFTER DELETE ON hq_records
    FOR EACH ROW WHEN (OLD.record_type = 'follow_up') EXECUTE FUNCTION hq_survey_erase();
