-- depends: 0007_index_record_start
-- External identifiers of patients (an MRN and its system), only as keyed digests
-- (twin.domain.deidentify.Deidentifier.identifier_link): what bulk ingest matches patients by.
-- An identifier names one patient; erasing the patient deletes its links.
CREATE TABLE patient_links (
    link TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients (patient_id)
);

CREATE INDEX patient_links_patient ON patient_links (patient_id);
