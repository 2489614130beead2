-- Event log with per-patient heads (row-locked to serialise appends), and wrapped data keys.
CREATE TABLE patient_heads (
    patient_id TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    last_day DOUBLE PRECISION NOT NULL
);

CREATE TABLE events (
    patient_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    day DOUBLE PRECISION NOT NULL,
    payload BYTEA NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, seq),
    UNIQUE (patient_id, idempotency_key)
);

CREATE TABLE data_keys (
    patient_id TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    blob BYTEA NOT NULL
);
