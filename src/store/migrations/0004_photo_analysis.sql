-- 0004: the analysis of each photo (quality gate, shot guess, detections). A photo without a row
-- here is waiting for the analysis worker: the table doubles as its persistent queue.
CREATE TABLE photo_analysis (
    photo_id     TEXT PRIMARY KEY REFERENCES photos(id),
    status       TEXT NOT NULL CHECK (status IN ('done','failed')),
    model        TEXT,
    quality      TEXT,
    detections   TEXT,
    shot         TEXT,
    error        TEXT,
    analysed_at  TEXT NOT NULL
);
