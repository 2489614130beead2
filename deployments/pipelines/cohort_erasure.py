"""Erasing one patient from every cohort run's results: result pages and ``patients.parquet``.

A run's per-patient rows carry the patient's research pseudonym; they are kept as result pages
(documents ``cohort_result``) and, when the run had an output folder, in its
``patients.parquet``. Erasure rewrites both without the patient's rows. The aggregate of a run
is a mean over many twins and stays. Cost: one pass over every run's pages (erasure is rare).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from deployments import ray_env
from twin import ports
from twin.service import jobs
from twin.settings import TwinSettings

__all__ = ["erase_from_cohort_results", "erase_from_parquet"]


async def erase_from_cohort_results(
    settings: TwinSettings,
    documents: ports.DocumentStore,
    pseudonyms: frozenset[str],
    *,
    outputs: bool = True,
) -> int:
    """Remove the rows of ``pseudonyms`` from every result page and Parquet file; returns how many.

    Every page of the collection is read (not only those a finished run counts: a failed or
    cancelled run may have written pages). Idempotent: a second call finds nothing to remove.
    Callers pass every erased patient's pseudonym, not only the one being erased: a page that
    another erasure rewrote concurrently (and so wrote an erased row back) is cleaned by the
    next erasure that passes.

    Args:
        settings: Where outputs are reached from (credentials, the data folder).
        documents: The document store holding the result pages and the runs.
        pseudonyms: The research pseudonyms whose rows go.
        outputs: Also rewrite each run's ``patients.parquet``. ``False`` for a drill's
            scratch environment: its run documents name the live environment's outputs.
    """
    removed = 0
    after: str | None = None
    while True:
        pages = await documents.list(jobs.COHORT_RESULTS, after=after, limit=200)
        for found in pages:
            rows: list[dict[str, Any]] = json.loads(found.body)
            kept = [row for row in rows if row.get("pseudonym") not in pseudonyms]
            if len(kept) != len(rows):
                removed += len(rows) - len(kept)
                body = json.dumps(kept).encode()
                await documents.put(
                    ports.Document(jobs.COHORT_RESULTS, found.doc_id, None, body, time.time())
                )
        if len(pages) < 200:
            break
        after = pages[-1].doc_id
    if not outputs:
        return removed
    run_after: str | None = None
    while True:
        runs, run_after = await jobs.COHORT.page(documents, after=run_after, limit=200)
        for run in runs:
            if run.output:
                removed += await asyncio.to_thread(
                    erase_from_parquet, settings, run.output, pseudonyms
                )
        if run_after is None:
            return removed


def erase_from_parquet(settings: TwinSettings, output: str, pseudonyms: frozenset[str]) -> int:
    """Rewrite ``output/patients.parquet`` without the pseudonyms' rows; returns how many."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyarrow import fs

    # Never created here: a folder that is gone stays gone.
    filesystem, root = ray_env.output_root(settings, output, create=False)
    path = f"{root}/patients.parquet"
    if filesystem.get_file_info(path).type == fs.FileType.NotFound:
        return 0
    table = pq.read_table(path, filesystem=filesystem)
    if "pseudonym" not in table.column_names:
        return 0
    erased = pa.array(sorted(pseudonyms), pa.string())
    keep = pc.fill_null(pc.invert(pc.is_in(table["pseudonym"], value_set=erased)), True)
    kept = table.filter(keep)
    if kept.num_rows == table.num_rows:
        return 0
    temporary = f"{path}.{uuid.uuid4().hex}.erasing"
    pq.write_table(kept, temporary, filesystem=filesystem)
    filesystem.move(temporary, path)
    return table.num_rows - kept.num_rows
