-- Event log, idempotency keys and wrapped data keys of the embedded store.
CREATE TABLE events (
    patient_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    day REAL NOT NULL,
    payload BLOB NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (patient_id, seq),
    UNIQUE (patient_id, idempotency_key)
) WITHOUT ROWID;

CREATE TABLE data_keys (
    patient_id TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    blob BLOB NOT NULL
) WITHOUT ROWID;
