"""Key-encryption key rotation while the service ingests, and retirement of the old key.

Embedded (SQLite, the local key folder): the API ingests for many patients while the operator's
``novamind keys new-kek``, a re-wrap (``keys rotate``'s own function, in its own thread, loop
and stores, as the operator's separate process would), then ``keys retire`` and ``keys destroy``
run beside it. Halfway through the re-wrap, the service creates new patients and a freshly
opened process (nothing cached) reads every patient back, under both KEKs. Every acknowledged
observation is then read back, decrypted, by the running service and by a fresh one.

KMS (moto's server over HTTP): the service wraps under an alias; re-pointing the alias to
another key and running ``keys rotate`` moves every data key to it; the old key is then
disabled, and every patient still reads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from deployments.ops.cli import app
from deployments.ops.keys import rotate
from deployments.stores import open_event_writer, open_key_stores
from tests.integration.conftest import api_settings, open_env
from tests.servers import MotoServer
from twin.client import observation
from twin.domain import events as E
from twin.ports import WrappedKey
from twin.service.keys import RewrapProgress, RewrapReport
from twin.settings import TwinSettings

pytestmark = pytest.mark.integration

TEAM = "team-keys"
ENROLLED = datetime.now(UTC).replace(microsecond=0) - timedelta(days=60)


class _Ran:
    """A command's exit code and its output, lines joined (the console wraps them)."""

    def __init__(self, result: Any) -> None:
        self.exit_code: int = result.exit_code
        self.output = " ".join(result.output.split())


async def _cli(args: list[str], env: dict[str, str]) -> _Ran:
    """The command as the operator runs it, beside the service (its own thread and loop)."""
    return _Ran(await asyncio.to_thread(CliRunner().invoke, app, args, env=env))


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


async def _read_fresh(settings: TwinSettings, acked: dict[str, int]) -> None:
    """Every patient's events read (decrypted) by freshly opened stores: no data key cached."""
    async with open_event_writer(settings) as (events, _):
        for pid, count in acked.items():
            assert len(await events.read(pid)) >= count, pid


async def _read_all(settings: TwinSettings, acked: dict[str, int]) -> None:
    """Every patient's twin and events read back (decrypted) by a freshly opened service."""
    async with open_env(settings) as env, env.sdk("clinician", "dr-k", (TEAM,)) as sdk:
        for pid, count in acked.items():
            assert (await sdk.patient(pid)).patient_id == pid
            events = [e async for e in sdk.events(pid)]
            assert len(events) == count, pid
            assert (await sdk.twin(pid)).last_seq == count


def _paused_rotation(settings: TwinSettings) -> tuple[threading.Event, threading.Event, Any]:
    """A re-wrap in its own thread and loop that waits after its first page until released."""
    halfway, release = threading.Event(), threading.Event()

    def pause(step: RewrapProgress) -> None:
        if step.pass_number == 1 and not halfway.is_set():
            halfway.set()
            assert release.wait(30)

    def run() -> RewrapReport:
        return asyncio.run(rotate(settings, batch=8, progress=pause))

    return halfway, release, asyncio.create_task(asyncio.to_thread(run))


async def test_rotation_and_retirement_during_ingest_lose_nothing(tmp_path: Path) -> None:
    settings = api_settings(tmp_path)
    env_vars = {"NOVAMIND_DATA_DIR": str(tmp_path)}
    keys = tmp_path / "keys"
    acked: dict[str, int] = {}
    async with open_env(settings) as env, env.sdk("clinician", "dr-k", (TEAM,)) as sdk:
        pids = await _create(sdk, 24, "a")
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
        release = threading.Event()
        try:
            while rounds < 1:  # the ingest is under way before the operator starts
                await asyncio.sleep(0.05)
            created = await _cli(["keys", "new-kek"], env_vars)
            assert created.exit_code == 0, created.output
            assert "new key-encryption key kek-2.key" in created.output
            assert "Escrow the key folder" in created.output
            before = posts
            halfway, release, rotation = _paused_rotation(settings)
            try:
                assert await asyncio.to_thread(halfway.wait, 30)
                # Halfway: new patients get keys, and a fresh process reads under both KEKs.
                async with open_key_stores(settings) as stores:
                    assert set(await stores.data_keys.count_by_kek()) == {"kek-1.key", "kek-2.key"}
                during = await _create(sdk, 3, "m")
                for pid in during:
                    out = await sdk.add_observations(
                        pid, [observation(E.Gad7(5), effective=ENROLLED)]
                    )
                    acked[pid] = out.last_seq
                await _read_fresh(settings, dict(acked))
            finally:
                release.set()
            report = await rotation
            assert posts > before  # acknowledged while the keys were being re-wrapped
            assert (report.kek_id, report.rewrapped, report.failed) == ("kek-2.key", 24, 0)
            assert report.remaining == {}
            refused = await _cli(["keys", "retire", "kek-2.key"], env_vars)
            assert refused.exit_code == 1 and "current" in refused.output
            retired = await _cli(["keys", "retire", "kek-1.key"], env_vars)
            assert retired.exit_code == 0, retired.output
            assert (keys / "retired" / "kek-1.key").exists()
            assert not (keys / "kek-1.key").exists()
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
            release.set()
            if not writer.done():
                writer.cancel()
    assert min(acked[pid] for pid in pids) >= 2
    async with open_key_stores(settings) as stores:
        assert await stores.data_keys.count_by_kek() == {"kek-2.key": 30}
        assert {(await stores.data_keys.get(pid)).kek_id for pid in during + late} == {"kek-2.key"}
    await _read_all(settings, acked)
    status = await _cli(["keys", "status"], env_vars)
    assert status.exit_code == 0, status.output
    assert "kek-2.key" in status.output and "30 data key(s) (current)" in status.output
    assert "retired: kek-1.key" in status.output


async def test_destroying_a_kek_is_a_separate_confirmed_step(tmp_path: Path) -> None:
    settings = api_settings(tmp_path)
    env_vars = {"NOVAMIND_DATA_DIR": str(tmp_path)}
    keys = tmp_path / "keys"
    for step in (["keys", "status"], ["keys", "rotate"], ["keys", "retire", "kek-1.key"]):
        opened = await _cli(step, env_vars)  # no key folder yet: nothing is created
        assert opened.exit_code == 1 and "holds no key-encryption key" in opened.output, step
        assert not keys.exists()
    assert (await _cli(["keys", "new-kek"], env_vars)).exit_code == 0  # a new installation
    assert (await _cli(["keys", "new-kek"], env_vars)).exit_code == 0
    assert sorted(p.name for p in keys.iterdir()) == ["kek-1.key", "kek-2.key"]
    unsure = await _cli(["keys", "destroy", "kek-1.key"], env_vars)
    assert unsure.exit_code == 2 and "--yes" in unsure.output
    live = await _cli(["keys", "destroy", "kek-1.key", "--yes"], env_vars)
    assert live.exit_code == 1 and "keys retire kek-1.key` first" in live.output
    assert (await _cli(["keys", "retire", "kek-1.key"], env_vars)).exit_code == 0
    stalled = WrappedKey("kek-1.key", b"\0" * 60)  # stored under it after its retirement
    async with open_key_stores(settings) as stores:
        await stores.data_keys.put_if_absent("p-stalled", stalled)
    kept = await _cli(["keys", "destroy", "kek-1.key", "--yes"], env_vars)
    assert kept.exit_code == 1 and "1 data key(s) are wrapped" in kept.output
    assert (keys / "retired" / "kek-1.key").exists()
    async with open_key_stores(settings) as stores:
        await stores.data_keys.delete("p-stalled")
    gone = await _cli(["keys", "destroy", "kek-1.key", "--yes"], env_vars)
    assert gone.exit_code == 0 and "escrow" in gone.output
    assert not (keys / "retired" / "kek-1.key").exists()
    # The key folder lost (not mounted) while data keys are stored: no fresh KEK appears.
    async with open_key_stores(settings) as stores:
        await stores.data_keys.put_if_absent("p", WrappedKey("kek-2.key", b"\0" * 60))
    keys.rename(tmp_path / "unmounted")
    refused = await _cli(["keys", "new-kek"], env_vars)
    assert refused.exit_code == 1 and "not mounted" in refused.output
    assert not keys.exists()


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
    (key_a, arn_a), (key_b, arn_b) = (
        (m["KeyId"], m["Arn"]) for m in (kms.create_key()["KeyMetadata"] for _ in range(2))
    )
    alias = "alias/novamind-data-keys"
    kms.create_alias(AliasName=alias, TargetKeyId=key_a)
    settings = api_settings(tmp_path, kms_key_id=alias, aws_endpoint_url=moto.endpoint)
    acked: dict[str, int] = {}
    async with open_env(settings) as env, env.sdk("clinician", "dr-k", (TEAM,)) as sdk:
        for pid in await _create(sdk, 6, "k"):
            when = ENROLLED + timedelta(hours=1)
            out = await sdk.add_observations(pid, [observation(E.Phq9(11), effective=when)])
            acked[pid] = out.last_seq
    async with open_key_stores(settings) as stores:  # one key, one id: its ARN
        assert await stores.data_keys.count_by_kek() == {arn_a: 6}
    env_vars = {
        "NOVAMIND_DATA_DIR": str(tmp_path),
        "NOVAMIND_KMS_KEY_ID": alias,
        "NOVAMIND_AWS_ENDPOINT_URL": moto.endpoint,
    }
    for local_only in (["keys", "new-kek"], ["keys", "destroy", key_a, "--yes"]):
        refused = await _cli(local_only, env_vars)
        assert refused.exit_code == 1 and "local key folder only" in refused.output
    current = await _cli(["keys", "retire", key_a], env_vars)  # the alias still names key A
    assert current.exit_code == 1 and "current KMS key" in current.output
    kms.update_alias(AliasName=alias, TargetKeyId=key_b)  # the move to key B
    still = await _cli(["keys", "retire", key_a], env_vars)
    assert (
        still.exit_code == 1 and f"6 data key(s) are wrapped under KMS key {arn_a}" in still.output
    )
    rotated = await _cli(["keys", "rotate", "--batch", "4", "--concurrency", "2"], env_vars)
    assert rotated.exit_code == 0, rotated.output
    assert "re-wrapped 6" in rotated.output
    done = await _cli(["keys", "retire", key_a], env_vars)
    assert done.exit_code == 0 and f"No data key is wrapped under KMS key {arn_a}" in done.output
    kms.disable_key(KeyId=key_a)
    async with open_key_stores(settings) as stores:
        assert await stores.data_keys.count_by_kek() == {arn_b: 6}
        for pid, wrapped in await stores.data_keys.scan(after=None, limit=100):
            # Key B's ciphertext indeed (moto refuses another key's when KeyId names B).
            kms.decrypt(
                CiphertextBlob=wrapped.blob,
                EncryptionContext={"novamind:patient": pid},
                KeyId=key_b,
            )
    await _read_all(settings, acked)
