"""``novamind up`` stops within 10 s and leaves none of its processes, whatever stopped it.

Each test runs the real command (the ``novamind`` script beside this interpreter) on a
temporary data folder with free ports, in a process group of its own as a shell runs a job.
Once it serves, the test records the platform's processes by its own means: the driver's
descendants, every process naming the Ray session's folder, and the members of the process
groups those lead (Serve's HAProxy is in its manager actor's group). Then it stops it as a
user would: Ctrl-C is SIGINT to the whole foreground group, ``kill`` is SIGTERM to the driver
alone, ``novamind down`` from another terminal, ``kill -9`` of the driver followed by another
``novamind up``. Whatever the outcome, every recorded process is killed by its id afterwards.
Each start costs about 18 s on two cores: a test checks as much as one start allows.
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

from deployments.ops.lifecycle import read_record
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
    """A running ``novamind up``: its process, its output so far and its settings.

    ``settings`` carries the ports the platform chose (from its record) once it serves.
    """

    process: subprocess.Popen[str]
    settings: TwinSettings
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    recorded: dict[int, psutil.Process] = field(default_factory=dict)
    session: str = ""

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


def _record(driver: int) -> tuple[str, dict[int, psutil.Process]]:
    """The Ray session; the driver's descendants, the session's processes and their groups."""
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
    return session, {pid: p for pid, p in found.items() if _running(p)}


def _referencing(*texts: str) -> list[psutil.Process]:
    """This user's processes whose command line, environment or folder names one of ``texts``.

    Found by the test's own means, independent of the platform record: a process that names
    the data folder (HAProxy's configuration is in it) or the Ray session.
    """
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid == os.getpid() or process.uids().real != os.getuid():
                continue
            seen = " ".join([*process.cmdline(), process.cwd(), *process.environ().values()])
            if any(text in seen for text in texts) and _running(process):
                found.append(process)
    return found


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


def _env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a ``novamind`` command on ``data_dir`` (nothing of this one's)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NOVAMIND_", "RAY_ADDRESS", "RAY_SERVE_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        NOVAMIND_DATA_DIR=str(data_dir),
        NOVAMIND_PARTICLES="200",
    )
    env.update({f"NOVAMIND_{name.upper()}": value for name, value in settings.items()})
    return env


def novamind(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``novamind COMMAND`` (status, down) to its end."""
    return subprocess.run(
        [str(NOVAMIND), command], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@contextlib.contextmanager
def novamind_up(tmp_path: Path, data: str = "data", **settings: str) -> Iterator[Up]:
    """Start ``novamind up`` and wait until it serves; kill whatever it left on the way out.

    ``settings`` are ``NOVAMIND_*`` values (by field name); the API port is a free one unless
    given (``http_port="0"``: the platform chooses it).
    """
    if not NOVAMIND.exists():
        pytest.skip(f"{NOVAMIND} is not installed (pip install -e .)")
    settings.setdefault("http_port", str(free_port()))
    data_dir = tmp_path / data
    env = _env(data_dir, **settings)
    process = subprocess.Popen(
        [str(NOVAMIND), "up", "--no-seed"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell's job
    )
    up = Up(process, TwinSettings(data_dir=data_dir, particles=200), env)

    def read() -> None:
        for line in process.stdout or ():
            up.lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        up.wait_for_line("serving; Ctrl-C stops", timeout_s=240)
        record = read_record(up.settings)
        assert record is not None and record.state == "serving", record
        up.settings = up.settings.model_copy(update={"http_port": record.ports["api"]})
        ready = httpx.get(f"http://127.0.0.1:{record.ports['api']}/health/readiness", timeout=10)
        assert ready.status_code == 200, ready.text
        # Serving does not wait for the job runner (a cohort run queues until it is up); its
        # process is part of what every stop must end, so the tests start once it is there.
        deadline = time.monotonic() + 60
        up.session, up.recorded = _record(process.pid)
        while _missing(up.recorded) and time.monotonic() < deadline:
            time.sleep(0.2)
            up.session, up.recorded = _record(process.pid)
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


_PARTS = ("raylet", "gcs_server", "dashboard.py", "ServeController", "ServeReplica",
          "HAProxyManager", "haproxy -db", "JobRunner")  # fmt: skip


def _missing(recorded: dict[int, psutil.Process]) -> list[str]:
    """The parts of the platform that no recorded process is (yet): names, or the hosts."""
    names = [" ".join(_cmdline(p)) or p.name() for p in recorded.values()]
    missing = [part for part in _PARTS if not any(part in name for name in names)]
    if sum("TwinHostActor" in name for name in names) != 2:
        missing.append("2 TwinHostActor")
    return missing


def _assert_recorded_the_whole_platform(up: Up) -> None:
    missing = _missing(up.recorded)
    assert not missing, (missing, [" ".join(_cmdline(p)) for p in up.recorded.values()])


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
    """None of the recorded processes, and no process naming the data folder or session."""
    left = [f"{pid} {' '.join(_cmdline(p))[:80]}" for pid, p in up.recorded.items() if _running(p)]
    assert not left, f"{len(left)} of {len(up.recorded)} processes left:\n" + "\n".join(left)
    data_dir = str(up.settings.data_dir.resolve())
    named = [f"{p.pid} {' '.join(_cmdline(p))[:80]}" for p in _referencing(data_dir, up.session)]
    assert not named, "processes naming the platform left:\n" + "\n".join(named)


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


#: Listeners of a platform that cannot be bound to the configured host (by the process's
#: name), and why: Ray takes no address for them, and turns a loopback node address into
#: the machine's (``ray._private.services.resolve_ip_for_localhost``).
WILDCARD_ALLOWED: dict[str, str] = {
    "gcs_server": "Ray's GCS gRPC server binds every interface",
    "raylet": "the raylet's and object manager's gRPC servers bind every interface",
    "ray::": "each Ray worker's core-worker gRPC server binds every interface; the dashboard "
    "agent binds the node's address and exports Ray's metrics on every interface",
    "python novamind": "the driver is a Ray core worker too (its gRPC server)",
    "dashboard.py": "the dashboard's own Prometheus server binds every interface unless the "
    "node's address is loopback",
    "monitor.py": "the autoscaler's Prometheus server: likewise",
}
#: The ports of a record whose listener binds every interface (Ray's metrics export).
_WILDCARD_PORTS = {"ray_metrics", "dashboard_metrics", "autoscaler_metrics"}


def _listeners(up: Up) -> list[tuple[str, str, int]]:
    """(process, address, port) of every TCP socket the platform's processes listen on."""
    found = []
    processes = [psutil.Process(up.process.pid), *up.recorded.values()]
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((_name(process), conn.laddr.ip, conn.laddr.port))
    return found


def _name(process: psutil.Process) -> str:
    """A Ray worker by its title (``ray::ServeController``), another process by its program."""
    words = _cmdline(process)
    if words and words[0].startswith("ray::"):
        return words[0]
    programs = [Path(w).name for w in words if not w.startswith("-")][:2]
    return " ".join(programs) or process.name()


def _assert_listens_on_the_host_alone(up: Up) -> None:
    listeners = _listeners(up)
    record = read_record(up.settings)
    assert record is not None
    for name, port in record.ports.items():
        addresses = {ip for _, ip, bound in listeners if bound == port}
        assert addresses, (name, port, listeners)
        if name not in _WILDCARD_PORTS:  # the API, the dashboard, HAProxy's stats and metrics
            assert addresses == {"127.0.0.1"}, (name, port, addresses)
    elsewhere = [
        (who, ip, port)
        for who, ip, port in listeners
        if ip != "127.0.0.1" and not any(part in who for part in WILDCARD_ALLOWED)
    ]
    assert not elsewhere, "\n".join(map(str, sorted(set(elsewhere))))


def test_two_platforms_run_side_by_side_on_free_ports_and_down_stops_each(tmp_path):
    """Two data folders, every port chosen at start; status and down from other terminals."""
    with (
        novamind_up(tmp_path, "a", http_port="0") as a,
        novamind_up(tmp_path, "b", http_port="0") as b,
    ):
        records = [read_record(up.settings) for up in (a, b)]
        assert all(records)
        assert not set(records[0].ports.values()) & set(records[1].ports.values()), records
        for up in (a, b):
            port = up.settings.http_port
            assert httpx.get(f"http://127.0.0.1:{port}/health/readiness").status_code == 200
            shown = novamind("status", up.env, tmp_path)
            assert shown.returncode == 0, shown.stdout + shown.stderr
            assert f"driver pid {up.process.pid}" in shown.stdout
            _assert_listens_on_the_host_alone(up)
        _assert_recorded_the_whole_platform(a)
        for up in (a, b):
            started = time.monotonic()
            stopped = novamind("down", up.env, tmp_path)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
            up.process.wait(timeout=5)
            assert time.monotonic() - started < STOP_LIMIT_S, stopped.stdout
            assert up.process.returncode == 0, up.output()
            _assert_nothing_left(up)
            assert novamind("status", up.env, tmp_path).returncode == 3
        assert read_record(a.settings) is None and read_record(b.settings) is None


def test_up_after_the_driver_was_killed_clears_what_it_left_and_serves(tmp_path):
    """``kill -9`` of the driver orphans Ray and HAProxy on their ports; the next up starts.

    The second run is stopped with SIGTERM to its driver (``kill PID``): within 10 s, and
    nothing of either run is left.
    """
    ports = {"haproxy_stats_port": str(free_port()), "haproxy_metrics_port": str(free_port())}
    with novamind_up(tmp_path, **ports) as first:
        orphans = {p.pid: p for p in first.recorded.values()}
        assert any("haproxy -db" in " ".join(_cmdline(p)) for p in orphans.values())
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        time.sleep(1.0)
        left = [p for p in orphans.values() if _running(p)]
        assert any("haproxy -db" in " ".join(_cmdline(p)) for p in left), "HAProxy not orphaned"
        stale = novamind("status", first.env, tmp_path)
        assert stale.returncode == 1, stale.stdout + stale.stderr
        with novamind_up(tmp_path, **ports) as second:
            assert "ended without stopping" in second.output(), second.output()
            assert not [p for p in orphans.values() if _running(p)]
            _assert_listens_on_the_host_alone(second)
            seconds = _stop(second, signal.SIGTERM, to_group=False)  # `kill PID`
            assert second.process.returncode == 0, second.output()
            assert seconds < STOP_LIMIT_S, second.output()
            _assert_nothing_left(second)
        _assert_nothing_left(first)
