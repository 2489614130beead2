-- depends: 0005_documents
-- Erasure removes a twin's index entry (its severity, risk and alert flags, in plain text for
-- search); entries of patients erased before it did are removed here.
DELETE FROM twin_index
WHERE patient_id IN (SELECT patient_id FROM patients WHERE erased_at IS NOT NULL);
