"""A disk that fills: the embedded stores on a small tmpfs, written until no space is left.

The product's promise under a full disk: every write refused is refused with a retryable
answer (503 problem+json with ``Retry-After``; ``StorageFullError`` from the stores), never an
unexpected error; nothing acknowledged is lost or stored twice, and no store is left damaged
(SQLite's integrity check, the audit chain, checkpoints that verify). Freeing space is all it
takes to go on: the refused writes, retried with their idempotency keys, are stored once each.

The data folder (SQLite file, key folder, checkpoint folder) is a tmpfs mounted for the test
(root only; skipped otherwise) and unmounted by the fixture's finalizer. A filler file fills it
to a chosen margin, so how much the setup wrote does not matter; deleting it frees the space.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.host_ports import build_host_ports
from deployments.ops import audit as audit_ops
from storage.local import LocalCheckpointStore, LocalKeyProvider
from storage.sealed import EnvelopeSealer
from storage.sqlite import (
    SqliteAuditLog,
    SqliteDatabase,
    SqliteDataKeyStore,
    SqliteDocumentStore,
    SqliteEventStore,
    SqlitePatientRegistry,
    SqliteTwinIndex,
)
from tests.integration.conftest import ApiEnv, api_settings, bearer, open_env
from twin import errors, ports
from twin.domain import codec
from twin.domain import events as E
from twin.domain.audit import AuditRecord, verify_chain
from twin.domain.audit import now as audit_now
from twin.domain.patients import Identifiers
from twin.service.host import CHECKPOINT_RETRY_S, TwinHost
from twin.settings import TwinSettings

ADMIN = bearer("admin", "root")
PROBLEM = "application/problem+json"
#: Events per ingest request; keys are long (100 characters) so the log grows quickly.
BATCH = 25


@dataclass
class SmallDisk:
    """A mounted tmpfs and the filler file that takes its space."""

    path: Path

    @property
    def filler(self) -> Path:
        return self.path / "filler"

    def available(self) -> int:
        """Bytes still free for writing."""
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave: int) -> None:
        """Take all but ``leave`` bytes (a tmpfs counts whole 4 KiB pages)."""
        size = max(0, self.available() - leave)
        with self.filler.open("ab") as f:
            chunk = b"\0" * (1 << 20)
            while size > 0:
                size -= f.write(chunk[: min(size, len(chunk))])

    def release(self, size: int) -> None:
        """Give ``size`` bytes of the filler's space back."""
        os.truncate(self.filler, max(0, self.filler.stat().st_size - size))

    def free(self) -> None:
        """Give the filler's space back."""
        self.filler.unlink()


@pytest.fixture
def mount_disk() -> Iterator[Callable[[Path, int], SmallDisk]]:
    """Mount tmpfs file systems (KiB) for the test; every one is unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(path: Path, size_kib: int) -> SmallDisk:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(path)
        return SmallDisk(path)

    yield mount
    for path in reversed(mounted):  # inner mounts first
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            # Still in use (a test that failed with files open): detach it all the same.
            subprocess.run(["umount", "-l", str(path)], check=True)


def _items(first: int, count: int, start_day: float) -> list[dict[str, Any]]:
    """``count`` observations with 100-character idempotency keys, 0.01 days apart."""
    return [
        {
            "idempotency_key": f"{n:06d}-" + "k" * 93,
            "day": round(start_day + 0.01 * i, 2),
            "payload": {"type": "phq9", "total": n % 28}
            if n % 2
            else {"type": "gad7", "total": n % 22},
        }
        for i, n in enumerate(range(first, first + count))
    ]


@dataclass
class Writer:
    """Ingests batches for one patient and keeps what was acknowledged: key -> (seq, item)."""

    http: httpx.AsyncClient
    patient_id: str
    size: int = BATCH
    acked: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    #: The batch the disk refused (kept to send again once space is freed).
    refused: list[dict[str, Any]] = field(default_factory=list)
    next_key: int = 0
    day: float = 0.0

    def batch(self) -> list[dict[str, Any]]:
        items = _items(self.next_key, self.size, self.day)
        self.next_key += self.size
        self.day = round(self.day + 0.01 * self.size, 2)
        return items

    async def write(self) -> bool:
        """Send a new batch, or the refused one again (as a client retries, same keys).

        Returns:
            Whether it was acknowledged.
        """
        items = self.refused = self.refused or self.batch()
        if (await self.send(items)).status_code == 200:
            self.refused = []
        return not self.refused

    async def send(self, items: list[dict[str, Any]]) -> httpx.Response:
        response = await self.http.post(
            f"/v1/patients/{self.patient_id}/observations", json={"items": items}, headers=ADMIN
        )
        assert response.status_code != 500, response.text
        if response.status_code == 200:
            acks = response.json()["acknowledged"]
            for item, ack in zip(items, acks, strict=True):
                stored = self.acked.setdefault(item["idempotency_key"], (ack["seq"], item))
                assert stored[0] == ack["seq"], "a key acknowledged under two sequence numbers"
        else:
            _assert_retryable(response)
        return response


def _assert_retryable(response: httpx.Response) -> None:
    """A refusal the full disk may cause: 503 problem+json with a Retry-After, nothing else."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["status"] == 503


@asynccontextmanager
async def _raw_client(env: ApiEnv) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sees the app's 500 as an answer (the assertion names it), not a raise."""
    transport = httpx.ASGITransport(app=env.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://novamind") as http:
        yield http


async def _register(http: httpx.AsyncClient, mrn: str) -> str:
    patient = {"name": "Disk Full", "birth_date": "1980-01-01", "mrn": mrn, "care_team": "t"}
    created = await http.post("/v1/patients", json=patient, headers=ADMIN)
    assert created.status_code == 201, created.text
    return str(created.json()["patient_id"])


async def _check_log(
    env: ApiEnv, patient_id: str, acked: dict[str, tuple[int, dict[str, Any]]]
) -> None:
    """Every acknowledged event is in the log once, with its day and payload; nothing else."""
    stored = {e.seq: e for e in await env.services.events.read(patient_id)}
    assert sorted(stored) == list(range(1, len(acked) + 1))
    assert sorted(seq for seq, _ in acked.values()) == sorted(stored)
    for seq, item in acked.values():
        assert stored[seq].day == item["day"]
        assert stored[seq].payload == codec.decode(item["payload"])


def _check_file(path: Path, keys: dict[str, dict[str, int]]) -> None:
    """SQLite's integrity check, and each idempotency key stored once (read after closing)."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        for patient_id, expected in keys.items():
            rows = conn.execute(
                "SELECT idempotency_key, seq FROM events WHERE patient_id = ?", (patient_id,)
            ).fetchall()
            assert len(rows) == len(expected)
            assert dict(rows) == expected
    conn.close()


async def _rebuilt(settings: TwinSettings, patient_id: str) -> tuple[bytes, int]:
    """A fresh host's state of the twin (newest checkpoint, then the log) and its rejections."""
    stores = await build_host_ports(settings)
    try:
        host = TwinHost(stores, settings=settings.host)
        return await host.state_bytes(patient_id), host.stats.checkpoints_rejected
    finally:
        await stores.aclose()


def _checkpoint_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_writes_until_the_disk_is_full_are_refused_retryably_and_nothing_is_lost(
    tmp_path: Path, mount_disk: Callable[[Path, int], SmallDisk]
) -> None:
    disk = mount_disk(tmp_path / "data", 4096)
    settings = api_settings(disk.path, checkpoint_every_events=2 * BATCH)
    async with open_env(settings) as env, _raw_client(env) as http:
        host: TwinHost = env.services.twins  # type: ignore[assignment]
        # Large batches fill the disk; smaller ones then take the crumbs, so that the disk
        # also runs out after an append was committed (index, checkpoint), not only before.
        writers = [
            Writer(http, await _register(http, f"MRN-DISK-{size}"), size) for size in (BATCH, 5, 1)
        ]
        for writer in writers:
            for _ in range(2):
                assert (await writer.send(writer.batch())).status_code == 200
        # A twin passivated before the disk fills: reading it then activates it from storage.
        other = Writer(http, await _register(http, "MRN-DISK-B"))
        assert (await other.send(other.batch())).status_code == 200
        assert await host.passivate(other.patient_id)

        disk.fill(leave=768 * 1024)
        # Until every writer's batch is refused three times running: the disk is full.
        refusals = dict.fromkeys(range(len(writers)), 0)
        for _ in range(300):
            for i, writer in enumerate(writers):
                refusals[i] = 0 if await writer.write() else refusals[i] + 1
            if min(refusals.values()) >= 3:
                break
        else:
            raise AssertionError("the disk never filled up")

        # Space coming back a little at a time (a log rotated, a file deleted): a request
        # that fits is acknowledged; one that does not runs out at whichever of its writes
        # (audit record, append, twin index, checkpoint) the space ends, and is a 503.
        small = writers[-1]
        outcomes = []
        for pages in (*range(1, 13), *range(1, 13)):
            disk.release(pages * 4096)
            outcomes.append(await small.write())
        assert True in outcomes and False in outcomes, outcomes

        # Full: reads answer or ask for a retry; nothing is a 500.
        for path in (
            f"/v1/patients/{writers[0].patient_id}",
            *(f"/v1/patients/{w.patient_id}/twin" for w in (*writers, other)),
        ):
            read = await http.get(path, headers=ADMIN)
            if read.status_code != 200:
                _assert_retryable(read)
        assert (await http.get("/health/readiness")).status_code in (200, 503)
        patient = {"name": "N", "birth_date": "1990-01-01", "mrn": "MRN-N", "care_team": "t"}
        created = await http.post("/v1/patients", json=patient, headers=ADMIN)
        if created.status_code != 201:
            _assert_retryable(created)

        disk.free()
        assert writers[0].refused and writers[1].refused  # the small one may have fitted last
        for writer in writers:
            refused = writer.refused
            if refused:
                assert await writer.write()  # the refused keys, acknowledged now
            for _ in range(2):
                assert await writer.write()
            if refused:  # and once more: duplicates, nothing new
                again = (await writer.send(refused)).json()["acknowledged"]
                assert [a["duplicate"] for a in again] == [True] * len(refused)

        for writer in (*writers, other):
            await _check_log(env, writer.patient_id, writer.acked)
            # The twin as served equals a rebuild from storage (its newest checkpoint and the
            # log), and a rebuild from the log alone.
            live = await host.state_bytes(writer.patient_id)
            assert await host.passivate(writer.patient_id)
            assert await _rebuilt(settings, writer.patient_id) == (live, 0)
            await LocalCheckpointStore(disk.path / "checkpoints").delete_all(writer.patient_id)
            assert await _rebuilt(settings, writer.patient_id) == (live, 0)
        assert not [p for p in _checkpoint_files(disk.path) if p.suffix == ".tmp"]
        keys = {
            w.patient_id: {k: seq for k, (seq, _) in w.acked.items()} for w in (*writers, other)
        }
    report = await asyncio.to_thread(audit_ops.verify, settings)
    assert report.ok and report.entries > 0, report
    _check_file(disk.path / "novamind.db", keys)


async def test_a_checkpoint_the_full_disk_cannot_hold_fails_no_ingest_and_is_never_read(
    tmp_path: Path, mount_disk: Callable[[Path, int], SmallDisk]
) -> None:
    data = mount_disk(tmp_path / "data", 4096)
    # The checkpoint folder on a disk of its own: only checkpoints run out of space.
    folder = mount_disk(data.path / "checkpoints", 256)
    settings = api_settings(data.path, checkpoint_every_events=BATCH)
    now = [0.0]  # the host's monotonic clock, moved by the test
    async with open_env(settings, clock=lambda: now[0]) as env, _raw_client(env) as http:
        host: TwinHost = env.services.twins  # type: ignore[assignment]
        writer = Writer(http, await _register(http, "MRN-CKPT"))
        assert (await writer.send(writer.batch())).status_code == 200
        assert host.stats.checkpoints_written == 1
        written = _checkpoint_files(folder.path)
        assert len(written) == 1

        # Less room than one checkpoint (about 20 KiB here): its write starts and runs out.
        folder.fill(leave=8 * 1024)
        for _ in range(3):
            assert (await writer.send(writer.batch())).status_code == 200  # acknowledged
        # Tried once, then not again by every flush until CHECKPOINT_RETRY_S has passed.
        assert (host.stats.checkpoints_written, host.stats.checkpoint_failures) == (1, 1)
        now[0] += CHECKPOINT_RETRY_S
        assert (await writer.send(writer.batch())).status_code == 200
        assert (host.stats.checkpoints_written, host.stats.checkpoint_failures) == (1, 2)
        assert set(_checkpoint_files(folder.path)) == {*written, folder.filler}  # no partial

        live = await host.state_bytes(writer.patient_id)
        # Passivated within the retry window: no try (it would cost another failed write).
        assert await host.passivate(writer.patient_id)
        assert host.stats.checkpoint_failures == 2
        twin = await http.get(f"/v1/patients/{writer.patient_id}/twin", headers=ADMIN)
        assert twin.status_code == 200 and twin.json()["last_seq"] == 5 * BATCH
        assert await host.state_bytes(writer.patient_id) == live
        assert host.stats.checkpoints_rejected == 0  # from the older checkpoint and the log

        folder.free()
        now[0] += CHECKPOINT_RETRY_S
        assert (await writer.send(writer.batch())).status_code == 200
        assert host.stats.checkpoints_written == 2
        newest = await LocalCheckpointStore(folder.path).latest(writer.patient_id)
        assert newest is not None and newest.seq == 6 * BATCH
        assert await _rebuilt(settings, writer.patient_id) == (
            await host.state_bytes(writer.patient_id),
            0,
        )
        await _check_log(env, writer.patient_id, writer.acked)


@asynccontextmanager
async def _adapters(root: Path) -> AsyncIterator[dict[str, Any]]:
    """The embedded adapters over ``root``, wired as ``deployments.stores`` wires them."""
    async with AsyncExitStack() as stack:
        db = await SqliteDatabase.open(root / "novamind.db")
        stack.push_async_callback(db.close)
        sealer = EnvelopeSealer(LocalKeyProvider(root / "keys"), SqliteDataKeyStore(db))
        yield {
            "db": db,
            "sealer": sealer,
            "events": SqliteEventStore(db, sealer),
            "registry": SqlitePatientRegistry(db, sealer),
            "audit": SqliteAuditLog(db),
            "documents": SqliteDocumentStore(db),
            "index": SqliteTwinIndex(db),
            "checkpoints": LocalCheckpointStore(root / "checkpoints"),
        }


def _record(n: int) -> AuditRecord:
    return AuditRecord(
        actor="etl", role="service", action="observations.ingest", patient_id="p",
        outcome="allowed", purpose="treatment", at=audit_now(), request_id=f"r{n}",
    )  # fmt: skip


async def test_every_embedded_write_on_a_full_disk_is_a_storage_full_error(
    tmp_path: Path, mount_disk: Callable[[Path, int], SmallDisk]
) -> None:
    disk = mount_disk(tmp_path / "data", 2048)
    ada = Identifiers(name="Ada", birth_date="1980-12-10", mrn="MRN-1")
    async with _adapters(disk.path) as s:
        db: SqliteDatabase = s["db"]

        async def full() -> None:
            # An empty WAL: every write needs new space (a grown WAL would take a few more).
            async with db.locked() as conn:
                await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            disk.fill(leave=0)

        await full()
        # The first patient needs the key-encryption key file: not a short one, none at all.
        with pytest.raises(errors.StorageFullError):
            await s["registry"].create(ada, care_team="t")
        assert not list((disk.path / "keys").iterdir())
        disk.free()
        pid = await s["registry"].create(ada, care_team="t")
        await s["events"].append(pid, [ports.NewEvent("e1", 0.5, E.Phq9(10))])
        small = ports.Checkpoint(pid, 1, "m", b"a" * 1000)
        assert await s["checkpoints"].put(small)

        await full()
        big = ports.Checkpoint(pid, 2, "m", os.urandom(64 * 1024))
        entry = ports.IndexEntry(pid, 1, 0, 10.0, 1.0, 0.1, 0.1, (), 0.0, None)
        document = ports.Document("reports", "d1", pid, b"{}", 0.0)
        writes: dict[str, Callable[[], Any]] = {
            "event append": lambda: s["events"].append(pid, [ports.NewEvent("e2", 1, E.Gad7(3))]),
            "audit append": lambda: s["audit"].append(_record(1)),
            "registration": lambda: s["registry"].create(ada, care_team="t"),
            "data key": lambda: s["sealer"].seal("p-new", kind="event", version=1, plaintext=b"x"),
            "document": lambda: s["documents"].put(document),
            "index": lambda: s["index"].upsert(entry),
            "checkpoint": lambda: s["checkpoints"].put(big),
        }
        for name, write in writes.items():
            with pytest.raises(errors.StorageFullError):
                await write()
            assert not disk.available(), name
        # Reads go on; the newest checkpoint is still the one stored before the disk filled.
        assert [e.seq for e in await s["events"].read(pid)] == [1]
        assert await s["checkpoints"].latest(pid) == small

        # A checkpoint that starts to fit runs out part-way: still nothing of it stays.
        disk.release(8 * 1024)
        with pytest.raises(errors.StorageFullError):
            await s["checkpoints"].put(big)
        assert await s["checkpoints"].latest(pid) == small
        assert not [p for p in _checkpoint_files(disk.path / "checkpoints") if p.suffix != ".ckpt"]

        disk.free()
        for write in writes.values():
            await write()
        assert [e.seq for e in await s["events"].read(pid)] == [1, 2]
        assert (await s["checkpoints"].latest(pid)) == big
        assert verify_chain(await s["audit"].entries()).ok
    _check_file(disk.path / "novamind.db", {pid: {"e1": 1, "e2": 2}})
