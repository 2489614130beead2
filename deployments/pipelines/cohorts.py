"""Cohort what-if runs on Ray Data: many twins × scenarios, de-identified results.

Pipeline::

    selection (index filter | research pseudonyms | synthetic CohortSpec) -> items
      -> map_batches as Ray tasks: rebuild each twin from its checkpoint and the log after
         it (or simulate and assimilate a synthetic block), forecast every scenario with common
         random numbers (twin.analytics.whatif), emit rows keyed by pseudonym + an exact tally
      -> the driver: progress into the job's status document, rows sorted by pseudonym,
         tallies merged (integer sums) into the aggregate
      -> result pages (documents, for the API and SDK), patients.parquet, aggregate.parquet,
         report.json and report.png in the output folder (local or s3://)

Determinism: a twin's random numbers depend on its key, its last event and the run's seed only,
rows are sorted and aggregates are integer sums, so the same inputs give the same files whatever
the number of workers or the batch size. The results carry pseudonyms, never patient ids; the
patient ids cross Ray's object store only as opaque ids (as in bulk ingest).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from deployments import ray_env
from deployments.pipelines import job_status
from deployments.pipelines.cohort_erasure import erase_from_cohort_results, erase_from_parquet
from deployments.stores import erasure_ledger, open_cohort_stores, open_documents, open_twin_reader
from twin import errors, ports, schemas
from twin.analytics import synthetic
from twin.analytics.budget import CohortBudget, cohort_cost
from twin.analytics.whatif import CohortTwin, Tally, aggregate_rows, simulate_batch
from twin.forecast.engine import scenario_refusal
from twin.model import priors as prior_sets
from twin.model.parameters import PopulationParameters
from twin.service import jobs
from twin.service.priors import PriorParameters
from twin.service.restore import current_states
from twin.settings import TwinSettings

__all__ = ["PAGE_ROWS", "run_cohort"]

#: Per-patient rows per result document.
PAGE_ROWS = 1000
#: Twins per forecast batch (one ``simulate_batch`` call, one table to the driver): enough to
#: amortise the per-call cost of the forecast, small enough for progress to stream.
_BATCH_TWINS = 16
#: Forecast batches per task, at most (see :func:`_shares`).
_BATCHES_PER_TASK = 8
_OUT = pa.schema([("kind", pa.string()), ("body", pa.string())])
_PSEUDONYM_SCAN = 10_000_000


def _out(rows: list[dict[str, object]], tally: Tally, skipped: Iterable[str]) -> pa.Table:
    """One batch's output: its rows, its tally and the reasons of twins left out."""
    reasons = list(skipped)
    kinds = ["row"] * len(rows) + ["tally"] + ["skipped"] * len(reasons)
    bodies = [json.dumps(r) for r in rows] + [json.dumps(tally.to_dict()), *reasons]
    return pa.table({"kind": kinds, "body": bodies}, schema=_OUT)


def _forecast(
    run: schemas.CohortRunIn, twins: list[CohortTwin], params: PopulationParameters
) -> pa.Table:
    # A twin the scenarios cannot apply to (one starts a third concurrent drug) is left out
    # with the reason; the batch's other twins go on.
    refusals = [scenario_refusal(t.state, run.scenarios) for t in twins]
    able = [t for t, why in zip(twins, refusals, strict=True) if why is None]
    rows, tally = simulate_batch(able, run.scenarios, weeks=run.weeks, seed=run.seed, params=params)
    return _out(rows, tally, [f"scenario: {why}" for why in refusals if why is not None])


def _stored_twins(
    batch: dict[str, Any], run_json: str, settings_values: dict[str, Any]
) -> Iterator[pa.Table]:
    """Rebuild a share of the stored twins (checkpoint + log tail) and forecast them (a Ray task).

    A task, not a pool actor: starting an actor pool cost seconds per run. Each task takes one
    worker's share of the run (see :func:`_shares`), opens the read-only stores once and yields
    one table per :data:`_BATCH_TWINS` twins, so progress streams to the driver while the task
    keeps its CPU: Ray Data notices a finished task and starts the next one only after a pause
    (~0.2 s here), which one task per 16 twins paid every 0.6 s of forecasting.
    """
    run = schemas.CohortRunIn.model_validate_json(run_json)
    settings = TwinSettings(**settings_values)
    ids = [str(pid) for pid in batch["patient_id"]]
    pseudonyms = [str(p) for p in batch["pseudonym"]]
    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        events, checkpoints, sealer, registry = runner.run(
            stack.enter_async_context(open_twin_reader(settings))
        )
        stores = (events, checkpoints, sealer)
        priors = PriorParameters(registry)
        # Batches of equal size (at most _BATCH_TWINS): no short batch at the end of a task.
        size = -(-len(ids) // max(1, -(-len(ids) // _BATCH_TWINS)))
        try:
            for start in range(0, len(ids), size):
                chunk = slice(start, start + size)
                yield runner.run(
                    _stored_twins_async(
                        ids[chunk], pseudonyms[chunk], run, stores, priors, settings.particles
                    )
                )
        finally:
            runner.run(stack.aclose())


async def _stored_twins_async(
    ids: list[str],
    pseudonyms: list[str],
    run: schemas.CohortRunIn,
    stores: tuple[ports.EventStore, ports.CheckpointStore, ports.Sealer],
    priors: PriorParameters,
    particles: int,
) -> pa.Table:
    skipped: list[str] = []
    groups: dict[tuple[int, str], list[CohortTwin]] = {}
    for pid, pseudonym in zip(ids, pseudonyms, strict=True):
        try:
            (state,) = await current_states(stores, [pid], particles=particles, priors=priors)
        except errors.TwinError as exc:
            skipped.append(f"twin unreadable: {type(exc).__name__}")
            continue
        key = (state.n_particles, state.prior_version)
        groups.setdefault(key, []).append(CohortTwin(pseudonym, state))
    params = {version: await priors.of(version) for _, version in groups}
    # Twins are simulated together only when their particle counts and priors agree; each is
    # forecast with the prior set it was created with.
    tables = [
        _forecast(run, group, params[version]) for (_, version), group in sorted(groups.items())
    ]
    empty = Tally.empty([s.name for s in run.scenarios], run.weeks)
    tables.append(_out([], empty, skipped))
    return pa.concat_tables(tables)


def _shares(n_twins: int, workers: int) -> int:
    """The number of tasks a stored-twin run is split into.

    A multiple of ``workers``, each task of up to :data:`_BATCHES_PER_TASK` forecast batches:
    fewer, longer tasks lose less to the pause between tasks, and equal shares keep every
    worker busy to the end.
    """
    batches = -(-n_twins // _BATCH_TWINS)
    rounds = -(-batches // (workers * _BATCHES_PER_TASK))
    return max(1, min(batches, workers * rounds))


def _synthetic_twins(batch: dict[str, Any], run_json: str) -> pa.Table:
    """Simulate and assimilate blocks of a synthetic cohort, then forecast them (a Ray task).

    Synthetic patients and their twins use the current model (the shipped joint fit,
    ``twin.model.priors.current``).
    """
    run = schemas.CohortRunIn.model_validate_json(run_json)
    spec = run.synthetic
    assert spec is not None  # the run was validated with a synthetic selection
    params = prior_sets.current()
    twins = [
        twin
        for block in batch["id"]
        for twin in synthetic.synthetic_twins(
            spec, int(block), particles=run.particles, prior=prior_sets.LITERATURE
        )
    ]
    return _forecast(run, twins, params)


@dataclass(slots=True)
class _Collected:
    rows: list[dict[str, Any]]
    tally: Tally
    skipped: Counter[str]


async def _select(
    settings: TwinSettings, run: schemas.CohortRunIn, skipped: Counter[str]
) -> list[dict[str, str]]:
    """The stored twins a run covers, as (patient id, pseudonym) items, sorted by pseudonym."""
    async with open_cohort_stores(settings) as stores:
        if run.filter is not None:
            f = run.filter
            entries = await stores.index.search(
                min_severity=f.min_severity, alert=f.alert, min_p_severe=f.min_p_severe,
                limit=f.limit,
            )  # fmt: skip
            items = [
                {
                    "patient_id": e.patient_id,
                    "pseudonym": stores.deidentifier.pseudonym(e.patient_id),
                }
                for e in entries
            ]
        else:
            wanted = set(run.pseudonyms or ())
            entries = await stores.index.search(limit=_PSEUDONYM_SCAN)
            items = []
            for e in entries:
                pseudonym = stores.deidentifier.pseudonym(e.patient_id)
                if pseudonym in wanted:
                    items.append({"patient_id": e.patient_id, "pseudonym": pseudonym})
            missing = len(wanted) - len(items)
            if missing:
                skipped["pseudonym: no such twin"] += missing
    return sorted(items, key=lambda item: item["pseudonym"])


def _collect(
    ds: Any,
    run: schemas.CohortRunIn,
    status: schemas.CohortRunOut,
    save: Callable[[schemas.CohortRunOut], None],
) -> _Collected:
    got = _Collected([], Tally.empty([s.name for s in run.scenarios], run.weeks), Counter())
    per_patient = len(run.scenarios)
    last = time.monotonic()
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for kind, body in zip(batch["kind"].to_pylist(), batch["body"].to_pylist(), strict=True):
            if kind == "row":
                got.rows.append(json.loads(body))
            elif kind == "tally":
                got.tally = got.tally.merge(Tally.from_dict(json.loads(body)))
            else:
                got.skipped[body] += 1
        if time.monotonic() - last >= jobs.PROGRESS_EVERY_S:
            last = time.monotonic()
            status = status.model_copy(update={"patients_done": len(got.rows) // per_patient})
            save(status)
    got.rows.sort(key=lambda r: (r["pseudonym"], r["scenario_index"]))
    return got


def _plot(aggregate: list[dict[str, Any]], weeks: int) -> bytes:
    """Pooled median PHQ-9 with the 25-75% and 10-90% bands per scenario, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(dict.fromkeys(r["scenario"] for r in aggregate))
    for name in names:
        rows = [r for r in aggregate if r["scenario"] == name]
        week = [r["week"] for r in rows]
        ax.fill_between(week, [r["phq9_q10"] for r in rows], [r["phq9_q90"] for r in rows],
                        alpha=0.12, step="mid")  # fmt: skip
        ax.fill_between(week, [r["phq9_q25"] for r in rows], [r["phq9_q75"] for r in rows],
                        alpha=0.25, step="mid")  # fmt: skip
        ax.plot(week, [r["phq9_mean"] for r in rows], marker="o", label=f"{name} (mean)")
    for cut in (5, 10, 15, 20):
        ax.axhline(cut, color="grey", linewidth=0.5, linestyle=":")
    ax.set(xlabel="week", ylabel="PHQ-9 (observable)", xlim=(1, weeks), ylim=(0, 27))
    ax.set_title("Cohort what-if: pooled PHQ-9 (bands 10-90% and 25-75%)")
    ax.legend(loc="upper right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _write_files(
    settings: TwinSettings, output: str, got: _Collected, aggregate: list[dict[str, Any]],
    report: dict[str, Any], weeks: int,
) -> None:  # fmt: skip
    filesystem, root = ray_env.output_root(settings, output)
    pq.write_table(
        pa.Table.from_pylist(got.rows), f"{root}/patients.parquet", filesystem=filesystem
    )
    pq.write_table(pa.Table.from_pylist(aggregate), f"{root}/aggregate.parquet",
                   filesystem=filesystem)  # fmt: skip
    with filesystem.open_output_stream(f"{root}/report.json") as out:
        out.write(json.dumps(report, indent=2).encode())
    if aggregate:
        with filesystem.open_output_stream(f"{root}/report.png") as out:
            out.write(_plot(aggregate, weeks))


async def _save_pages(settings: TwinSettings, job_id: str, rows: list[dict[str, Any]]) -> int:
    pages = 0
    async with open_documents(settings) as documents:
        for start in range(0, len(rows), PAGE_ROWS):
            body = json.dumps(rows[start : start + PAGE_ROWS]).encode()
            await documents.put(
                ports.Document(
                    jobs.COHORT_RESULTS, f"{job_id}.{pages:06d}", None, body, time.time()
                )
            )
            pages += 1
    return pages


def run_cohort(
    settings: TwinSettings,
    run: schemas.CohortRunIn,
    *,
    queued: schemas.CohortRunOut | None = None,
    output: str | None = None,
    workers: int = 2,
) -> schemas.CohortRunOut:
    """Run a cohort what-if on the connected Ray cluster (``ray.init`` first).

    Args:
        settings: The platform's settings (stores, particles of stored twins).
        run: Selection, scenarios, horizon, seed.
        queued: The run's ``queued`` status when it was submitted through the API (the CLI
            runs at once under a new id).
        output: Folder (local or ``s3://``) for the Parquet files and the report; ``None``
            keeps the results in documents only.
        workers: Forecast tasks run at once.

    Returns:
        The final status (``succeeded``), also saved as the run's document.

    Raises:
        TwinError: The run failed; its document says ``failed`` with the reason.
    """
    running = (queued or jobs.submitted(run, jobs.new_job_id())).model_copy(
        update={"status": "running", "output": output}
    )
    started = time.perf_counter()
    return job_status.tracked(
        jobs.COHORT,
        settings,
        running,
        lambda status: _run(settings, run, status, output, workers, started),
    )


def _run(
    settings: TwinSettings, run: schemas.CohortRunIn, status: schemas.CohortRunOut,
    output: str | None, workers: int, started: float,
) -> schemas.CohortRunOut:  # fmt: skip
    pre_skipped: Counter[str] = Counter()
    # Again where it runs (the CLI queues nothing, and settings may have changed since).
    CohortBudget(settings.cohort_max_particle_days, settings.cohort_max_rows).check(
        cohort_cost(run, settings.particles)
    )

    # Tasks with a bounded concurrency (never more than there are blocks); half a CPU each so
    # that a small cluster whose CPUs are partly held by Serve replicas still runs them.
    def tasks(n_blocks: int, batch_size: int | None) -> dict[str, Any]:
        return {
            "concurrency": max(1, min(workers, n_blocks)), "num_cpus": 0.5,
            "batch_format": "numpy", "batch_size": batch_size,
        }  # fmt: skip

    run_json = run.model_dump_json()
    if run.synthetic is not None:
        total = run.synthetic.n_patients
        n_blocks = synthetic.blocks(run.synthetic)
        ds = ray.data.range(n_blocks, override_num_blocks=n_blocks).map_batches(
            _synthetic_twins, fn_kwargs={"run_json": run_json}, **tasks(n_blocks, 1)
        )
    else:
        items = asyncio.run(_select(settings, run, pre_skipped))
        total = len(items)
        if not items:
            raise errors.InvalidInputError("the selection matches no twin")
        # One block (one task, a whole block per call) per share of the twins.
        n_shares = _shares(len(items), workers)
        ds = ray.data.from_items(items, override_num_blocks=n_shares).map_batches(
            _stored_twins,
            fn_kwargs={
                "run_json": run_json, "settings_values": settings.for_workers()
            },
            **tasks(n_shares, None),
        )  # fmt: skip
    # A two-operator pipeline of CPU-bound tasks with small outputs: Ray Data's per-operator
    # reservation held the second task back until the first one's output size was known (about
    # a second of one idle worker per run, measured), and its downstream-capacity backpressure
    # held a worker idle while the other ran the last tasks (4.7 s of a 12.6 s run at 1000
    # patients, measured: its ratio of queued outputs to the consumer's pace has no meaning for
    # a few kilobytes of rows). The concurrency cap above still bounds the run, and the
    # object-store budget policy still applies.
    ds.context.op_resource_reservation_enabled = False
    ds.context.downstream_capacity_backpressure_ratio = None
    status = status.model_copy(update={"patients_total": total})
    with job_status.progress(jobs.COHORT, settings) as save:
        save(status)
        got = _collect(ds, run, status, save)
    got.skipped.update(pre_skipped)
    aggregate = aggregate_rows(got.tally)
    pages = asyncio.run(_save_pages(settings, status.job_id, got.rows))
    final = status.model_copy(
        update={
            "status": "succeeded",
            "finished_at": jobs.utc_now(),
            "patients_done": got.tally.patients,
            "skipped": dict(sorted(got.skipped.items())),
            "seconds": round(time.perf_counter() - started, 3),
            "result_pages": pages,
            "aggregate": aggregate,
        }
    )
    if output is not None:
        report = final.model_dump(exclude={"aggregate"})
        report["run"] = json.loads(run.model_dump_json(exclude={"pseudonyms"}))
        _write_files(settings, output, got, aggregate, report, run.weeks)
    if run.synthetic is None:
        asyncio.run(_forget_erased(settings, items, output))
    return final


async def _forget_erased(
    settings: TwinSettings, items: list[dict[str, str]], output: str | None
) -> None:
    """Remove the rows of twins erased while the run ran from what it wrote.

    An erasure removes a patient's rows from every result page and Parquet file it finds; one
    that ran while this run was forecasting found none of this run's, which were written after.
    The aggregate is a mean over many twins and stays.
    """
    erased = set(await erasure_ledger(settings).erased())
    gone = [item["pseudonym"] for item in items if item["patient_id"] in erased]
    if not gone:
        return
    async with open_documents(settings) as documents:
        await erase_from_cohort_results(settings, documents, frozenset(gone))
        if output is not None:
            await asyncio.to_thread(erase_from_parquet, settings, output, frozenset(gone))
