"""Key-encryption key rotation while the service ingests, and retirement of the old key.

Embedded (SQLite, the local key folder): the API ingests for many patients while
``novamind keys rotate --new-kek`` and then ``novamind keys retire kek-1.key`` run beside it,
as the operator's separate process would (the CLI opens its own stores and key provider). Every
acknowledged observation is then read back, decrypted, by the running service and by a fresh
one, and patients created after the rotation have their keys under the new KEK.

KMS (moto's server over HTTP): data keys under key A move to key B; key A is then disabled, and
every patient still reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from deployments.ops.cli import app
from deployments.stores import open_key_stores
from tests.integration.conftest import api_settings, open_env
from tests.servers import MotoServer
from twin.client import observation
from twin.domain import events as E
from twin.settings import TwinSettings

pytestmark = pytest.mark.integration

TEAM = "team-keys"
ENROLLED = datetime.now(UTC).replace(microsecond=0) - timedelta(days=60)


async def _cli(args: list[str], env: dict[str, str]) -> Any:
    """The command as the operator runs it, beside the service (its own thread and loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, args, env=env)


async def _create(sdk: Any, n: int, tag: str) -> list[str]:
    return [
        await sdk.create_patient(
            name=f"Key {tag}{i}",
            birth_date="1970-01-02",
            mrn=f"K-{tag}{i}",
            care_team=TEAM,
            enrolled_at=ENROLLED,
        )
        for i in range(n)
    ]


async def _read_all(settings: TwinSettings, acked: dict[str, int]) -> None:
    """Every patient's twin and events read back (decrypted) by a freshly opened service."""
    async with open_env(settings) as env, env.sdk("clinician", "dr-k", (TEAM,)) as sdk:
        for pid, count in acked.items():
            assert (await sdk.patient(pid)).patient_id == pid
            events = [e async for e in sdk.events(pid)]
            assert len(events) == count, pid
            assert (await sdk.twin(pid)).last_seq == count


async def test_rotation_and_retirement_during_ingest_lose_nothing(tmp_path: Path) -> None:
    settings = api_settings(tmp_path)
    env_vars = {"NOVAMIND_DATA_DIR": str(tmp_path)}
    acked: dict[str, int] = {}
    async with open_env(settings) as env, env.sdk("clinician", "dr-k", (TEAM,)) as sdk:
        pids = await _create(sdk, 32, "a")
        acked.update(dict.fromkeys(pids, 0))
        stop = asyncio.Event()
        rounds = posts = 0

        async def ingest() -> None:
            nonlocal rounds, posts
            while not stop.is_set() or rounds < 2:
                for pid in pids:
                    when = ENROLLED + timedelta(hours=1 + rounds)
                    out = await sdk.add_observations(pid, [observation(E.Phq9(9), effective=when)])
                    acked[pid] = out.last_seq
                    posts += 1
                rounds += 1

        writer = asyncio.create_task(ingest())
        try:
            while rounds < 1:  # the ingest is under way before the operator starts
                await asyncio.sleep(0.05)
            before = posts
            rotated = await _cli(["keys", "rotate", "--new-kek", "--batch", "8"], env_vars)
            assert rotated.exit_code == 0, rotated.output
            assert posts > before  # acknowledged while the keys were being re-wrapped
            assert "new key-encryption key kek-2.key" in rotated.output
            assert "re-wrapped   32" in rotated.output and "failed       0" in rotated.output
            refused = await _cli(["keys", "retire", "kek-2.key"], env_vars)
            assert refused.exit_code == 1 and "current" in refused.output
            retired = await _cli(["keys", "retire", "kek-1.key"], env_vars)
            assert retired.exit_code == 0, retired.output
            assert (tmp_path / "keys" / "retired" / "kek-1.key").exists()
            assert not (tmp_path / "keys" / "kek-1.key").exists()
            late = await _create(sdk, 3, "b")  # the running service wraps under the new KEK
            for pid in late:
                out = await sdk.add_observations(pid, [observation(E.Gad7(6), effective=ENROLLED)])
                acked[pid] = out.last_seq
            stop.set()
            await writer
            # The running service reads everything back (its cached data keys are still valid).
            for pid, count in acked.items():
                assert len([e async for e in sdk.events(pid)]) == count
        finally:
            stop.set()
            if not writer.done():
                writer.cancel()
    assert min(acked[pid] for pid in pids) >= 2
    async with open_key_stores(settings) as stores:
        assert await stores.data_keys.count_by_kek() == {"kek-2.key": 35}
        assert {(await stores.data_keys.get(pid)).kek_id for pid in late} == {"kek-2.key"}
    await _read_all(settings, acked)
    status = await _cli(["keys", "status"], env_vars)
    assert status.exit_code == 0 and "kek-2.key" in status.output and "35" in status.output


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_what_moto_checks_on_decrypt(moto: MotoServer, aws_credentials) -> None:
    """What the KMS test can rely on, so that it cannot pass vacuously.

    moto (5.2) still decrypts under a disabled key, so disabling key A alone would prove
    nothing; it does refuse a ciphertext of one key when Decrypt names another, which is how
    the test proves every stored data key is now key B's.
    """
    kms: Any = moto.client("kms")
    key, other = (kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))
    blob = kms.encrypt(KeyId=key, Plaintext=b"k" * 32)["CiphertextBlob"]
    with pytest.raises(ClientError, match="AccessDenied"):
        kms.decrypt(CiphertextBlob=blob, KeyId=other)
    assert kms.decrypt(CiphertextBlob=blob, KeyId=key)["Plaintext"] == b"k" * 32
    kms.disable_key(KeyId=key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    # If moto starts refusing this, the KMS test below may rely on disable_key alone.
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"k" * 32


async def test_moving_to_a_new_kms_key(
    tmp_path: Path, moto: MotoServer, aws_credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms: Any = moto.client("kms")
    key_a, key_b = (kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))

    def on(key: str) -> TwinSettings:
        return api_settings(tmp_path, kms_key_id=key, aws_endpoint_url=moto.endpoint)

    acked: dict[str, int] = {}
    async with open_env(on(key_a)) as env, env.sdk("clinician", "dr-k", (TEAM,)) as sdk:
        for pid in await _create(sdk, 6, "k"):
            when = ENROLLED + timedelta(hours=1)
            out = await sdk.add_observations(pid, [observation(E.Phq9(11), effective=when)])
            acked[pid] = out.last_seq
    env_vars = {
        "NOVAMIND_DATA_DIR": str(tmp_path),
        "NOVAMIND_KMS_KEY_ID": key_b,
        "NOVAMIND_AWS_ENDPOINT_URL": moto.endpoint,
    }
    refused = await _cli(["keys", "rotate", "--new-kek"], env_vars)
    assert refused.exit_code == 2 and "NOVAMIND_KMS_KEY_ID" in refused.output
    still = await _cli(["keys", "retire", key_a], env_vars)
    assert still.exit_code == 1 and "6 data key(s) still use KMS key" in still.output
    rotated = await _cli(["keys", "rotate", "--batch", "4", "--concurrency", "2"], env_vars)
    assert rotated.exit_code == 0, rotated.output
    assert "re-wrapped   6" in rotated.output
    done = await _cli(["keys", "retire", key_a], env_vars)
    assert done.exit_code == 0 and "0 data key(s) still use" in done.output
    kms.disable_key(KeyId=key_a)
    settings = on(key_b)
    async with open_key_stores(settings) as stores:
        assert await stores.data_keys.count_by_kek() == {key_b: 6}
        for pid, wrapped in await stores.data_keys.scan(after=None, limit=100):
            # Key B's ciphertext indeed (moto refuses another key's when KeyId names B).
            kms.decrypt(
                CiphertextBlob=wrapped.blob,
                EncryptionContext={"novamind:patient": pid},
                KeyId=key_b,
            )
    await _read_all(settings, acked)
