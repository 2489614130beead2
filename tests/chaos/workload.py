"""Concurrent clinical clients over HTTP, and the client-side record of what was acknowledged.

Several patients, several clients per patient, each sending observations one request at a time
through the SDK (its retries with backoff, the same idempotency key on every retry). Every
acknowledged event is recorded with its key, patient, payload digest and sequence number; every
attempt that was never acknowledged is recorded too, since it may or may not have been stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from twin import errors
from twin.client import AsyncClient, RetryPolicy, observation
from twin.domain import codec
from twin.domain import events as E

#: The workload's patients are enrolled here, and every event is at ``AT``, one day later (day
#: 1.0 of the time axis): several clients write to one patient at once, and the log refuses an
#: event older than the patient's newest.
ENROLLED = datetime(2024, 1, 1, tzinfo=UTC)
AT = datetime(2024, 1, 2, tzinfo=UTC)


def digest(payload: E.Payload) -> str:
    """A payload's fingerprint, as stored and as sent (its canonical JSON)."""
    return hashlib.sha256(json.dumps(codec.encode(payload), sort_keys=True).encode()).hexdigest()[
        :16
    ]


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged event, as the client saw it."""

    patient: str
    key: str
    digest: str
    seq: int
    client: int
    at: float
    done: float


@dataclass
class Ledger:
    """What the clients sent and what the service acknowledged.

    Attributes:
        acked: Acknowledged events by idempotency key.
        unacked: Keys sent and never acknowledged (the call failed after its retries), with
            their patient and payload digest.
        statuses: Outcomes by kind (``ok`` or the error class that ended a call).
        latencies: (time sent, seconds) of every acknowledged call.
        failures: The first few failures' messages (what a failed call was answered).
    """

    acked: dict[str, Ack] = field(default_factory=dict)
    unacked: dict[str, tuple[str, str]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class Deadline:
    """When the clients stop (monotonic seconds); a run may move it while they work."""

    at: float


def _payload(client: int, i: int) -> E.Payload:
    # Mostly mood check-ins, with a PHQ-9 now and then: both are applied by every twin.
    if i % 5 == 4:
        return E.Phq9((client + i) % 28)
    return E.EmaAffect(1 + (client * 7 + i) % 7)


async def patient_client(
    sdk: AsyncClient,
    patient: str,
    client: int,
    ledger: Ledger,
    *,
    until: Deadline,
    max_events: int,
    pause_s: float = 0.02,
) -> None:
    """Send observations to one patient, one request at a time, until ``until`` or the cap."""
    for i in range(max_events):
        if time.monotonic() >= until.at:
            return
        payload = _payload(client, i)
        key = f"c{client}-{i}"
        started = time.monotonic()
        try:
            out = await sdk.add_observations(patient, [observation(payload, effective=AT, key=key)])
        except (errors.TwinError, httpx.HTTPError, OSError) as exc:
            ledger.unacked[key] = (patient, digest(payload))
            status = getattr(exc, "status", None)  # the HTTP status, where there was one
            ledger.statuses[type(exc).__name__ + (f" {status}" if status else "")] += 1
            if len(ledger.failures) < 20:
                ledger.failures.append(f"{time.monotonic():.1f} {str(exc)[:300]}")
        else:
            (ack,) = out.acknowledged
            done = time.monotonic()
            ledger.acked[key] = Ack(patient, key, digest(payload), ack.seq, client, started, done)
            ledger.statuses["ok"] += 1
            ledger.latencies.append((started, done - started))
        await asyncio.sleep(pause_s)


async def register_patients(sdk: AsyncClient, n: int, team: str) -> list[str]:
    """Register ``n`` patients in ``team`` (retrying through faults as any client would)."""
    return [
        await sdk.create_patient(
            name=f"Chaos {i}",
            birth_date="1980-01-01",
            mrn=f"CH-{i:05d}",
            care_team=team,
            enrolled_at=ENROLLED,
        )
        for i in range(n)
    ]


def sdk(url: str, token: str, *, attempts: int = 12) -> AsyncClient:
    """The SDK as a clinical app uses it: retries with backoff up to 10 s apart."""
    return AsyncClient(
        url, token=token, timeout_s=30.0,
        retry=RetryPolicy(attempts=attempts, initial_s=0.2, max_s=5.0),
    )  # fmt: skip
