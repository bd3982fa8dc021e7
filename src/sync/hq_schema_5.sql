-- HQ schema v5: `servicebay hq-web`, HQ analysts' own pages. Analysts are HQ's people, not store
-- staff: their accounts live here only. Passwords are argon2id hashes; a session is stored as the
-- SHA-256 of its random token (the token itself is only ever in the analyst's cookie).

CREATE TABLE hq_analysts (
    id                    BIGSERIAL PRIMARY KEY,
    username              TEXT NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9._-]{1,64}$'),
    display_name          TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    password_hash         TEXT NOT NULL,
    -- A one-time password from `servicebay hq-analyst add` must be replaced at first login.
    must_change_password  BOOLEAN NOT NULL DEFAULT true,
    disabled              BOOLEAN NOT NULL DEFAULT false,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at         TIMESTAMPTZ
);

CREATE TABLE hq_analyst_sessions (
    token_hash   TEXT PRIMARY KEY CHECK (length(token_hash) = 64),
    analyst_id   BIGINT NOT NULL REFERENCES hq_analysts (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    client_addr  TEXT
);
CREATE INDEX hq_analyst_sessions_analyst ON hq_analyst_sessions (analyst_id);
CREATE INDEX hq_analyst_sessions_expiry ON hq_analyst_sessions (expires_at);

-- Who logged in (or failed to), logged out, changed a password; the CLI's account changes.
-- Never a password or a token.
CREATE TABLE hq_analyst_audit (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    analyst      TEXT NOT NULL,
    action       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    client_addr  TEXT
);

-- The pages read the newest KPI snapshots per store and the open hot alerts across all stores;
-- hq_records' primary key starts with store_id, so these two reads get their own indexes.
CREATE INDEX hq_records_kpi ON hq_records (store_id, record_id DESC) WHERE record_type = 'kpi_snapshot';
CREATE INDEX hq_records_open_hot ON hq_records (store_id)
    WHERE record_type = 'follow_up_alert' AND body ->> 'kind' = 'hot' AND body ->> 'resolved_at' IS NULL;
