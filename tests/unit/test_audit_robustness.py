"""Nothing one client sends can fail another client's audit write."""

from __future__ import annotations

import asyncio

import pytest

from deployments.api.audit_batch import GroupCommitAuditLog
from deployments.api.limiter import RateLimiter
from twin import errors
from twin.domain.audit import AuditRecord, check_writable, verify_chain
from twin.testing.fakes import MemoryAuditLog


def record(actor: str = "dr-a", patient_id: str | None = "pt_1", purpose: str = "TREAT"):
    return AuditRecord(actor, "clinician", "twin.read", patient_id, "allowed", purpose,
                       "2026-12-04T00:00:00.000+00:00", "r1")  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        record(patient_id="x\x00y"),
        record(purpose="ETREAT: a\nb"),
        record(purpose="\ud800"),
        record(actor=""),
        record(purpose="p" * 601),
        record(patient_id="p" * 65),
    ],
)
def test_records_that_a_database_may_refuse_are_refused_before_storage(bad):
    with pytest.raises(errors.InvalidInputError, match="audit"):
        check_writable(bad)
    assert check_writable(record(purpose="ETREAT: patient unresponsive, naïve dosing")) is not None


class _Fragile(MemoryAuditLog):
    """A log whose transaction fails whenever a record says ``poison`` (as a database might)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.down = False

    async def append_many(self, records):
        self.calls += 1
        if self.down:
            raise errors.StorageUnavailableError("the database is down")
        if any(r.purpose == "poison" for r in records):
            raise ValueError("refused by the database")
        return await super().append_many(records)


async def test_a_batch_that_fails_fails_only_the_records_that_fail_alone():
    inner = _Fragile()
    log = GroupCommitAuditLog(inner)
    outcomes = await asyncio.gather(
        *(log.append(record(actor=f"c{i}", purpose="poison" if i == 3 else "TREAT"))
          for i in range(8)),
        return_exceptions=True,
    )  # fmt: skip
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, Exception)]
    assert failed == [3]
    entries = await inner.entries()
    assert [e.record.actor for e in entries] == [f"c{i}" for i in range(8) if i != 3]
    assert verify_chain(entries).ok
    # A record that may not be stored never joins a transaction.
    with pytest.raises(errors.InvalidInputError):
        await log.append(record(patient_id="\x00"))


async def test_an_unreachable_store_fails_the_transaction_once_not_record_by_record():
    inner = _Fragile()
    inner.down = True
    log = GroupCommitAuditLog(inner)
    first = asyncio.ensure_future(log.append(record(actor="first")))
    await asyncio.sleep(0)  # the first transaction is in flight; the rest queue behind it
    outcomes = await asyncio.gather(
        first, *(log.append(record(actor=f"c{i}")) for i in range(50)), return_exceptions=True
    )
    assert all(isinstance(o, errors.StorageUnavailableError) for o in outcomes)
    assert inner.calls <= 3


async def test_failed_authentications_are_limited_per_source():
    limiter = RateLimiter(1000, failures_per_minute=3)
    for _ in range(3):
        await limiter.count_failure("10.0.0.9")
    with pytest.raises(errors.RateLimitedError):
        await limiter.count_failure("10.0.0.9")
    await limiter.count_failure("10.0.0.10")  # another source is not affected
    await limiter.check("clinician:dr-a")  # nor is anyone's request budget
