-- 0002: the guided-intake conversation's state per case (findings so far, the pending question,
-- language). The messages themselves go to `messages`; customer findings are mirrored into
-- `findings` (source 'customer') so later stages and HQ see them without parsing the state.
CREATE TABLE case_intake (
    case_id     TEXT PRIMARY KEY REFERENCES cases(id),
    state       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);
