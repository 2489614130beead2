-- depends: 0006_erased_index
-- The day of each twin's first event, so that research outputs count days from the patient's
-- own record rather than from the ingest origin (a calendar date). Entries written before
-- have none until their twin next changes.
ALTER TABLE twin_index ADD COLUMN record_start INTEGER;
