"""Cohort what-if runs on Ray Data: many twins × scenarios, de-identified results.

Pipeline::

    selection (index filter | research pseudonyms | synthetic CohortSpec) -> items
      -> map_batches on an actor pool: rebuild each twin from its checkpoint and the log after
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
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from deployments import jobs, ray_env
from deployments.bootstrap import open_cohort_stores, open_documents, open_twin_reader
from twin import errors, ports, schemas
from twin.analytics import synthetic
from twin.analytics.whatif import CohortTwin, Tally, aggregate_rows, simulate_batch
from twin.model.parameters import PopulationParameters
from twin.service.priors import PriorParameters
from twin.service.restore import current_states
from twin.settings import TwinSettings

__all__ = ["PAGE_ROWS", "run_cohort"]

#: Per-patient rows per result document.
PAGE_ROWS = 1000
_BATCH_TWINS = 8
_PROGRESS_EVERY_S = 2.0
_OUT = pa.schema([("kind", pa.string()), ("body", pa.string())])
_PSEUDONYM_SCAN = 10_000_000


def _out(rows: list[dict[str, object]], tally: Tally, skipped: Iterable[str]) -> pa.Table:
    """One batch's output: its rows, its tally and the reasons of twins left out."""
    reasons = list(skipped)
    kinds = ["row"] * len(rows) + ["tally"] + ["skipped"] * len(reasons)
    bodies = [json.dumps(r) for r in rows] + [json.dumps(tally.to_dict()), *reasons]
    return pa.table({"kind": kinds, "body": bodies}, schema=_OUT)


class _Forecaster:
    """Base of the pool actors: the run (scenarios, horizon, seed)."""

    def __init__(self, run_json: str) -> None:
        self._run = schemas.CohortRunIn.model_validate_json(run_json)

    def _forecast(
        self, twins: list[CohortTwin], skipped: list[str], params: PopulationParameters
    ) -> pa.Table:
        rows, tally = simulate_batch(
            twins, self._run.scenarios, weeks=self._run.weeks, seed=self._run.seed, params=params
        )
        return _out(rows, tally, skipped)


class _StoredTwins(_Forecaster):
    """Rebuilds stored twins (checkpoint + log tail) and forecasts them."""

    def __init__(self, run_json: str, settings_values: dict[str, Any]) -> None:
        super().__init__(run_json)
        self._settings = TwinSettings(**settings_values)
        self._loop = asyncio.new_event_loop()  # the stores' connections live on it
        self._stack = AsyncExitStack()
        events, checkpoints, sealer, registry = self._loop.run_until_complete(
            self._stack.enter_async_context(open_twin_reader(self._settings))
        )
        self._stores = (events, checkpoints, sealer)
        self._priors = PriorParameters(registry)

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        skipped: list[str] = []
        groups: dict[tuple[int, str], list[CohortTwin]] = {}
        for pid, pseudonym in zip(batch["patient_id"], batch["pseudonym"], strict=True):
            try:
                (state,) = self._loop.run_until_complete(
                    current_states(
                        self._stores, [str(pid)], particles=self._settings.particles,
                        priors=self._priors,
                    )
                )  # fmt: skip
            except errors.TwinError as exc:
                skipped.append(f"twin unreadable: {type(exc).__name__}")
                continue
            key = (state.n_particles, state.prior_version)
            groups.setdefault(key, []).append(CohortTwin(str(pseudonym), state))
        # Twins are simulated together only when their particle counts and priors agree; each
        # is forecast with the prior set it was created with.
        tables = [
            self._forecast(group, [], self._loop.run_until_complete(self._priors.of(version)))
            for (_, version), group in sorted(groups.items())
        ]
        empty = Tally.empty([s.name for s in self._run.scenarios], self._run.weeks)
        tables.append(_out([], empty, skipped))
        return pa.concat_tables(tables)

    def __del__(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._stack.aclose())
            self._loop.close()


class _SyntheticTwins(_Forecaster):
    """Simulates and assimilates blocks of a synthetic cohort, then forecasts them.

    Synthetic patients and their twins use the built-in priors (the defaults of twin-model.md).
    """

    def __init__(self, run_json: str) -> None:
        super().__init__(run_json)
        self._params = PopulationParameters()

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        spec = self._run.synthetic
        assert spec is not None  # the run was validated with a synthetic selection
        twins = [
            twin
            for block in batch["id"]
            for twin in synthetic.synthetic_twins(
                spec, int(block), particles=self._run.particles, params=self._params
            )
        ]
        return self._forecast(twins, [], self._params)


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
        if time.monotonic() - last >= _PROGRESS_EVERY_S:
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
        workers: Largest forecaster pool.

    Returns:
        The final status (``succeeded``), also saved as the run's document.

    Raises:
        TwinError: The run failed; its document says ``failed`` with the reason.
    """
    running = (queued or jobs.submitted(run, jobs.new_job_id())).model_copy(
        update={"status": "running", "output": output}
    )
    started = time.perf_counter()
    return jobs.COHORT.tracked(
        settings, running, lambda status: _run(settings, run, status, output, workers, started)
    )


def _run(
    settings: TwinSettings, run: schemas.CohortRunIn, status: schemas.CohortRunOut,
    output: str | None, workers: int, started: float,
) -> schemas.CohortRunOut:  # fmt: skip
    pre_skipped: Counter[str] = Counter()
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, workers))
    # Forecasts are CPU-bound, but a whole CPU per actor can starve the read tasks on a small
    # cluster; the pool's size bounds the parallelism instead.
    common: dict[str, Any] = {"compute": pool, "num_cpus": 0.5, "batch_format": "numpy"}
    if run.synthetic is not None:
        total = run.synthetic.n_patients
        ds = ray.data.range(synthetic.blocks(run.synthetic)).map_batches(
            _SyntheticTwins, batch_size=1,
            fn_constructor_kwargs={"run_json": run.model_dump_json()}, **common,
        )  # fmt: skip
    else:
        items = asyncio.run(_select(settings, run, pre_skipped))
        total = len(items)
        if not items:
            raise errors.InvalidInputError("the selection matches no twin")
        ds = ray.data.from_items(items).map_batches(
            _StoredTwins, batch_size=_BATCH_TWINS,
            fn_constructor_kwargs={
                "run_json": run.model_dump_json(),
                "settings_values": ray_env.worker_settings(settings),
            },
            **common,
        )  # fmt: skip
    status = status.model_copy(update={"patients_total": total})
    with jobs.COHORT.progress(settings) as save:
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
    return final
