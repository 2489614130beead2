-- depends: 0001_initial
-- Searchable twin summaries.
CREATE TABLE twin_index (
    patient_id TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    day INTEGER NOT NULL,
    severity_mean DOUBLE PRECISION NOT NULL,
    severity_sd DOUBLE PRECISION NOT NULL,
    p_episode DOUBLE PRECISION NOT NULL,
    p_severe DOUBLE PRECISION NOT NULL,
    alert_flags TEXT[] NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX twin_index_severity ON twin_index (severity_mean DESC);
CREATE INDEX twin_index_flags ON twin_index USING GIN (alert_flags);
