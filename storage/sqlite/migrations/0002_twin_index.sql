-- depends: 0001_initial
-- Searchable twin summaries; alert_flags holds ",rule,rule," for exact-token matching.
CREATE TABLE twin_index (
    patient_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    day INTEGER NOT NULL,
    severity_mean REAL NOT NULL,
    severity_sd REAL NOT NULL,
    p_episode REAL NOT NULL,
    p_severe REAL NOT NULL,
    alert_flags TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX twin_index_severity ON twin_index (severity_mean DESC);
