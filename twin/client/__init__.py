"""The researcher and integration SDK: typed access to the Novamind HTTP API.

Installs without Ray (httpx, httpx-sse, tenacity and pydantic). Errors come back as the
platform's own exceptions (:mod:`twin.errors`), mapped from ``application/problem+json``;
retryable failures (429, 503, connection errors) are retried with exponential backoff and
jitter, honouring ``Retry-After``; every event sent gets an idempotency key (generated when not
given), so a retried ingest never applies twice. Lists are iterators over pages; the change
feed is an iterator that reconnects from the last event id it saw.

    from datetime import UTC, datetime

    from twin.client import Client, observation
    from twin.domain import events

    with Client("http://127.0.0.1:8000", token=TOKEN) as api:
        pid = api.create_patient(name="...", birth_date="1980-01-31", mrn="...",
                                 care_team="team-1", enrolled_at=datetime(2024, 3, 1, tzinfo=UTC))
        when = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)  # any time zone; never a naive time
        api.add_observations(pid, [observation(events.Phq9(14), effective=when)])
        print(api.twin(pid).severity_mean, api.twin(pid).as_of)

Optional extras (``novamind[client]``): :mod:`twin.client.frames` (pandas DataFrames) and
:mod:`twin.client.plot` (``plot_forecast``, a fan chart with the PHQ-9 severity bands).
"""

from twin.client.cohorts import CohortJob, Cohorts
from twin.client.http import AsyncClient, Client, RetryPolicy, observation

__all__ = ["AsyncClient", "Client", "CohortJob", "Cohorts", "RetryPolicy", "observation"]
