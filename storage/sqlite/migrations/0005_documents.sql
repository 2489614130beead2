-- depends: 0004_patients
-- Documents (saved scenario comparisons, emergency-access grants), bodies sealed by the caller;
-- and keyset pagination of a care team's patients by id.
CREATE TABLE documents (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    patient_id TEXT,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (collection, doc_id)
) WITHOUT ROWID;

CREATE INDEX documents_patient ON documents (patient_id);
CREATE INDEX patients_team_id ON patients (care_team, patient_id);
