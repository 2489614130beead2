"""The erasure ledger's contract: the in-memory fake, a local folder, S3 (moto's server, HTTP)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from storage.local import LocalErasureLedger
from storage.s3 import S3ErasureLedger
from tests.servers import MotoServer
from twin import errors, ports
from twin.testing import fakes


@pytest.fixture(params=["memory", "local", "s3"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> ports.ErasureLedger:
    if request.param == "memory":
        return fakes.MemoryErasureLedger()
    if request.param == "local":
        return LocalErasureLedger(tmp_path / "keys" / "erased")
    server: MotoServer = request.getfixturevalue("moto_server")
    s3 = server.client("s3")
    bucket = f"ledger-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    return S3ErasureLedger(s3, bucket, kms_key_id=None)


async def test_an_erasure_is_incomplete_until_marked_complete(ledger):
    assert isinstance(ledger, ports.ErasureLedger)
    assert await ledger.erased() == [] and await ledger.incomplete() == []
    await ledger.record("pt_b")
    await ledger.record("pt_a")
    await ledger.record("pt_a")  # idempotent
    assert await ledger.erased() == ["pt_a", "pt_b"]
    assert await ledger.incomplete() == ["pt_a", "pt_b"]
    await ledger.complete("pt_a")
    await ledger.complete("pt_a")
    assert await ledger.incomplete() == ["pt_b"]
    assert await ledger.erased() == ["pt_a", "pt_b"]  # a completed erasure stays recorded


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "x" * 65, "pt_a.done"])
async def test_ids_that_are_not_patient_ids_are_refused(ledger, bad):
    with pytest.raises(errors.InvalidInputError):
        await ledger.record(bad)
    with pytest.raises(errors.InvalidInputError):
        await ledger.complete(bad)
