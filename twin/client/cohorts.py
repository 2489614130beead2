"""Cohort what-if runs from the SDK: ``client.cohorts.run(...)`` returns a :class:`CohortJob`.

    job = client.cohorts.run(
        synthetic=CohortSpec(n_patients=500, days=14, screen_phq9_min=10),
        scenarios=[Scenario(name="care"), Scenario(name="sertraline", doses=[...])],
    )
    job.wait()                 # polls, with progress (patients done / total)
    df = job.results()         # per (patient pseudonym, scenario) rows, pandas
    summary = job.aggregate()  # per (scenario, week) cohort rows, pandas

DataFrames need the ``client`` extra (pandas).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twin import errors, schemas
from twin.domain.specs import CohortSpec, Scenario

if TYPE_CHECKING:
    from twin.client.http import Client

__all__ = ["CohortJob", "Cohorts"]

_FINISHED = ("succeeded", "failed", "cancelled")


class CohortJob:
    """A submitted cohort run.

    Args:
        client: The client it was submitted with.
        job_id: The run's id.
    """

    def __init__(self, client: Client, job_id: str) -> None:
        self._client = client
        self.job_id = job_id

    def status(self) -> schemas.CohortRunOut:
        """The run's current status document."""
        return self._client.cohort_run(self.job_id)

    def progress(self) -> tuple[int, int | None]:
        """(patients done, patients selected; ``None`` until the selection is resolved)."""
        now = self.status()
        return now.patients_done, now.patients_total

    def wait(
        self,
        *,
        timeout_s: float = 3600.0,
        poll_s: float = 2.0,
        on_progress: Callable[[schemas.CohortRunOut], None] | None = None,
    ) -> schemas.CohortRunOut:
        """Poll until the run has finished; returns its final status.

        Raises:
            TwinError: The run failed or was cancelled (the message says which, and why).
            OverloadedError: Not finished within ``timeout_s`` (poll again later).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            now = self.status()
            if on_progress is not None:
                on_progress(now)
            if now.status in ("failed", "cancelled"):
                raise errors.TwinError(f"cohort run {self.job_id} {now.status}: {now.error}")
            if now.status == "succeeded":
                return now
            if time.monotonic() >= deadline:
                raise errors.OverloadedError(int(poll_s) or 1)
            time.sleep(poll_s)

    def rows(self) -> list[dict[str, Any]]:
        """Per-(patient, scenario) rows of the finished run, by pseudonym."""
        return list(self._client.iter_cohort_rows(self.job_id))

    def results(self) -> Any:
        """:meth:`rows` as a pandas DataFrame."""
        import pandas as pd  # the client extra

        return pd.DataFrame(self.rows())

    def aggregate(self) -> Any:
        """The cohort aggregate (one row per scenario and week) as a pandas DataFrame."""
        import pandas as pd  # the client extra

        final = self.status()
        if final.status != "succeeded":
            raise errors.JobNotFinishedError(f"the run is {final.status}")
        return pd.DataFrame(final.aggregate or [])


class Cohorts:
    """The cohort-run part of :class:`twin.client.Client` (``client.cohorts``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def run(
        self,
        scenarios: Sequence[Scenario],
        *,
        filter: schemas.CohortFilter | None = None,
        pseudonyms: Sequence[str] | None = None,
        synthetic: CohortSpec | None = None,
        weeks: int = 12,
        seed: int = 0,
        particles: int = 2000,
    ) -> CohortJob:
        """Submit a run over exactly one selection (researchers); returns its handle."""
        request = schemas.CohortRunIn(
            filter=filter,
            pseudonyms=list(pseudonyms) if pseudonyms is not None else None,
            synthetic=synthetic,
            scenarios=list(scenarios),
            weeks=weeks,
            seed=seed,
            particles=particles,
        )
        return CohortJob(self._client, self._client.submit_cohort_run(request).job_id)

    def job(self, job_id: str) -> CohortJob:
        """The handle of an earlier run."""
        return CohortJob(self._client, job_id)
