"""Erasing one patient from every cohort run's results: result pages and ``patients.parquet``.

A run's per-patient rows carry the patient's research pseudonym; they are kept as result pages
(documents ``cohort_result``) and, when the run had an output folder, in its
``patients.parquet``. Erasure rewrites both without the patient's rows. The aggregate of a run
is a mean over many twins and stays. Cost: one pass over every run's pages (erasure is rare).
"""

from __future__ import annotations

import json
import time
from typing import Any

from deployments import jobs, ray_env
from twin import ports
from twin.settings import TwinSettings

__all__ = ["erase_from_cohort_results"]


async def erase_from_cohort_results(
    settings: TwinSettings, documents: ports.DocumentStore, pseudonym: str
) -> int:
    """Remove the rows of ``pseudonym`` from every run's pages and Parquet file; returns how many.

    Idempotent: a second call finds nothing to remove.
    """
    removed = 0
    after: str | None = None
    while True:
        runs, after = await jobs.COHORT.page(documents, after=after, limit=200)
        for run in runs:
            for page in range(run.result_pages):
                doc_id = f"{run.job_id}.{page:06d}"
                found = await documents.get(jobs.COHORT_RESULTS, doc_id)
                if found is None:
                    continue
                rows: list[dict[str, Any]] = json.loads(found.body)
                kept = [row for row in rows if row.get("pseudonym") != pseudonym]
                if len(kept) != len(rows):
                    removed += len(rows) - len(kept)
                    body = json.dumps(kept).encode()
                    await documents.put(
                        ports.Document(jobs.COHORT_RESULTS, doc_id, None, body, time.time())
                    )
            if run.output:
                _rewrite_parquet(settings, run.output, pseudonym)
        if after is None:
            return removed


def _rewrite_parquet(settings: TwinSettings, output: str, pseudonym: str) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyarrow import fs

    filesystem, root = ray_env.output_root(settings, output)
    path = f"{root}/patients.parquet"
    if filesystem.get_file_info(path).type == fs.FileType.NotFound:
        return
    table = pq.read_table(path, filesystem=filesystem)
    if "pseudonym" not in table.column_names:
        return
    keep = pc.invert(pc.equal(table["pseudonym"], pseudonym))
    kept = table.filter(pc.fill_null(keep, True))
    if kept.num_rows != table.num_rows:
        temporary = f"{path}.erasing"
        pq.write_table(kept, temporary, filesystem=filesystem)
        filesystem.move(temporary, path)
