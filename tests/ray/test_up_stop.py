"""``novamind up`` stops within 10 s of Ctrl-C or SIGTERM and leaves none of its processes.

Each test runs the real command (the ``novamind`` script beside this interpreter) on a
temporary data folder with free ports, in a process group of its own as a shell runs a job.
Once it serves, the test records the platform's processes by its own means: the driver's
descendants, every process naming the Ray session's folder, and the members of the process
groups those lead (Serve's HAProxy is in its manager actor's group). Then it sends the signal
as a user would: Ctrl-C is SIGINT to the whole foreground group, ``kill`` is SIGTERM to the
driver alone. Whatever the outcome, every recorded process is killed by its id afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest

from deployments.ops.platform import local_token
from tests.servers import free_port
from twin.client import Client, observation
from twin.domain import events as E
from twin.settings import TwinSettings

pytest.importorskip("ray")

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
NOVAMIND = Path(sys.executable).with_name("novamind")
STOP_LIMIT_S = 10.0
_SESSION = re.compile(r"(/\S*?/session_\d{4}-\d\d-\d\d_[\d_-]+)")


@dataclass
class Up:
    """A running ``novamind up``: its process, its output so far and its settings."""

    process: subprocess.Popen[str]
    settings: TwinSettings
    lines: list[str] = field(default_factory=list)
    recorded: dict[int, psutil.Process] = field(default_factory=dict)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"novamind up exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output()}"
            time.sleep(0.05)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _record(driver: int) -> dict[int, psutil.Process]:
    """The driver's descendants, the Ray session's processes and their process groups."""
    tree = psutil.Process(driver).children(recursive=True)
    sessions = {m for p in tree for m in _SESSION.findall(" ".join(_cmdline(p)))}
    assert len(sessions) == 1, sessions  # the one Ray cluster this driver started
    (session,) = sessions
    leaders = {p.pid for p in tree if _pgid(p) == p.pid}
    found = {p.pid: p for p in tree}
    for process in psutil.process_iter():
        if process.pid != driver and (
            session in " ".join(_cmdline(process)) or _pgid(process) in leaders
        ):
            found.setdefault(process.pid, process)
    return {pid: p for pid, p in found.items() if _running(p)}


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _pgid(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


@contextlib.contextmanager
def novamind_up(tmp_path: Path) -> Iterator[Up]:
    """Start ``novamind up`` and wait until it serves; kill whatever it left on the way out."""
    if not NOVAMIND.exists():
        pytest.skip(f"{NOVAMIND} is not installed (pip install -e .)")
    settings = TwinSettings(data_dir=tmp_path / "data", http_port=free_port(), particles=200)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NOVAMIND_", "RAY_ADDRESS"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        NOVAMIND_DATA_DIR=str(settings.data_dir),
        NOVAMIND_HTTP_PORT=str(settings.http_port),
        NOVAMIND_PARTICLES="200",
        # HAProxy's stats and metrics listeners on free ports: on their defaults they could
        # not start beside another platform on this machine.
        RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port()),
        RAY_SERVE_HAPROXY_STATS_PORT=str(free_port()),
    )
    process = subprocess.Popen(
        [str(NOVAMIND), "up", "--no-seed"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell's job
    )
    up = Up(process, settings)

    def read() -> None:
        for line in process.stdout or ():
            up.lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        up.wait_for_line("serving; Ctrl-C stops", timeout_s=240)
        ready = httpx.get(f"http://127.0.0.1:{settings.http_port}/health/readiness", timeout=10)
        assert ready.status_code == 200, ready.text
        up.recorded = _record(process.pid)
        yield up
    finally:
        # By recorded id only, plus anything still below the driver: never by name.
        left = list(up.recorded.values())
        with contextlib.suppress(psutil.Error):
            left += psutil.Process(process.pid).children(recursive=True)
        for leftover in left:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=30)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _assert_recorded_the_whole_platform(up: Up) -> None:
    names = [" ".join(_cmdline(p)) or p.name() for p in up.recorded.values()]
    for part in ("raylet", "gcs_server", "dashboard.py", "ServeController", "ServeReplica",
                 "HAProxyManager", "haproxy -db", "JobRunner"):  # fmt: skip
        assert any(part in name for name in names), (part, names)
    assert sum("TwinHostActor" in name for name in names) == 2, names


def _stop(up: Up, send: signal.Signals, *, to_group: bool) -> float:
    started = time.monotonic()
    if to_group:
        os.killpg(up.process.pid, send)
    else:
        up.process.send_signal(send)
    try:
        up.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 60 s after {send.name}:\n{up.output()}")
    return time.monotonic() - started


def _assert_nothing_left(up: Up) -> None:
    left = [f"{pid} {' '.join(_cmdline(p))[:80]}" for pid, p in up.recorded.items() if _running(p)]
    assert not left, f"{len(left)} of {len(up.recorded)} processes left:\n" + "\n".join(left)


def _ingest_one(settings: TwinSettings) -> tuple[str, int]:
    """A new patient with one PHQ-9: a twin whose state is ahead of any checkpoint."""
    token = local_token(settings, "clinician", care_team=("t",))
    with Client(f"http://127.0.0.1:{settings.http_port}", token=token) as client:
        enrolled = datetime.now(UTC) - timedelta(days=1)
        patient = client.create_patient(
            name="Stop Test", birth_date="1980-01-01", mrn="STOP-1", care_team="t",
            enrolled_at=enrolled.isoformat(),
        )  # fmt: skip
        half_a_day_in = enrolled + timedelta(days=0.5)
        client.add_observations(
            patient, [observation(E.Phq9(13), effective=half_a_day_in, key="stop-1")]
        )
        return patient, client.twin(patient).last_seq


async def _checkpointed_seq(settings: TwinSettings, patient: str) -> int | None:
    from deployments.stores import checkpoint_store

    latest = await checkpoint_store(settings).latest(patient)
    return None if latest is None else latest.seq


def test_ctrl_c_stops_everything_within_10_s_after_checkpointing_the_twins(tmp_path):
    with novamind_up(tmp_path) as up:
        _assert_recorded_the_whole_platform(up)
        patient, last_seq = _ingest_one(up.settings)
        assert asyncio.run(_checkpointed_seq(up.settings, patient)) is None
        seconds = _stop(up, signal.SIGINT, to_group=True)  # Ctrl-C in a terminal
        assert up.process.returncode == 0, up.output()
        assert seconds < STOP_LIMIT_S, up.output()
        _assert_nothing_left(up)
        assert "stopped in" in up.output()
        # The twin's state was checkpointed on the way out: no replay at the next start.
        assert asyncio.run(_checkpointed_seq(up.settings, patient)) == last_seq


def test_sigterm_stops_everything_within_10_s(tmp_path):
    with novamind_up(tmp_path) as up:
        seconds = _stop(up, signal.SIGTERM, to_group=False)  # `kill PID`
        assert up.process.returncode == 0, up.output()
        assert seconds < STOP_LIMIT_S, up.output()
        _assert_nothing_left(up)


def test_a_second_ctrl_c_forces_the_stop_and_kills_every_process(tmp_path):
    with novamind_up(tmp_path) as up:
        _assert_recorded_the_whole_platform(up)
        started = time.monotonic()
        os.killpg(up.process.pid, signal.SIGINT)
        up.wait_for_line("stopping", timeout_s=STOP_LIMIT_S)
        os.killpg(up.process.pid, signal.SIGINT)  # while the orderly stop runs
        up.process.wait(timeout=60)
        assert time.monotonic() - started < STOP_LIMIT_S, up.output()
        assert up.process.returncode == 128 + signal.SIGINT, up.output()
        assert "stopped by force (SIGINT again)" in up.output()
        _assert_nothing_left(up)
