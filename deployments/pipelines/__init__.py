"""Ray Data pipelines and the job runner: bulk ingest, cohort what-ifs, population calibration."""
