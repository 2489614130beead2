-- depends: 0003_audit_log
-- The patient registry: identifiers only as sealed bytes.
CREATE TABLE patients (
    patient_id TEXT PRIMARY KEY,
    care_team TEXT NOT NULL,
    identifiers BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    erased_at TIMESTAMPTZ
);

CREATE INDEX patients_team ON patients (care_team, created_at);
