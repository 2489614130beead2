-- depends: 0003_audit_log
-- The patient registry: identifiers only as sealed bytes.
CREATE TABLE patients (
    patient_id TEXT PRIMARY KEY,
    care_team TEXT NOT NULL,
    identifiers BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    erased_at TEXT
) WITHOUT ROWID;

CREATE INDEX patients_team ON patients (care_team, created_at);
