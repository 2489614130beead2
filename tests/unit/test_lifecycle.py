"""A platform's record, lock, status and stop from another terminal, on stand-in processes.

A "driver" here is a small Python process that starts "workers" (``sleep``) carrying its run's
marker in their environment, as ``novamind up`` starts Ray; beside them runs a bystander of
the same user without the marker, which nothing may touch. The HAProxy launcher is run for
real, with a stand-in HAProxy that prints what it was given.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from deployments.ops import lifecycle
from deployments.ops.cli import app
from deployments.ops.haproxy_bind import launcher, rewrite
from deployments.ops.lifecycle import (
    RUN_ENV,
    Identity,
    PlatformRecord,
    UpLock,
    clear_stale,
    down,
    read_record,
    record_path,
    status,
    write_record,
)
from twin.errors import ConfigurationError, PlatformRunningError
from twin.settings import TwinSettings

# Starts two marked workers (one in a session of its own, as a Ray worker leads its group),
# prints their ids, and serves until SIGTERM (the default action ends it).
_DRIVER = """
import os, subprocess, sys, time
a = subprocess.Popen(["sleep", "300"])
b = subprocess.Popen(["sleep", "300"], start_new_session=True)
print(a.pid, b.pid, flush=True)
time.sleep(300)
"""


@pytest.fixture
def settings(tmp_path: Path) -> TwinSettings:
    return TwinSettings(data_dir=tmp_path / "data")


@contextlib.contextmanager
def _spawned(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@contextlib.contextmanager
def _platform(settings: TwinSettings) -> Iterator[tuple[PlatformRecord, list[psutil.Process]]]:
    """A stand-in driver with two marked workers, recorded as a run; all killed afterwards."""
    run = "0123456789abcdef0123456789abcdef"
    env = {**os.environ, RUN_ENV: run}
    with _spawned(sys.executable, "-c", _DRIVER, env=env) as driver:
        assert driver.stdout is not None
        workers = [psutil.Process(int(pid)) for pid in driver.stdout.readline().split()]
        me = psutil.Process(driver.pid)
        record = PlatformRecord(
            run=run,
            driver=Identity.of(me),
            pgid=os.getpgid(driver.pid),
            uid=os.getuid(),
            data_dir=str(settings.data_dir.resolve()),
            host="127.0.0.1",
            ports={"api": 1},
            started_at="2026-01-01T00:00:00+00:00",
            processes=(Identity.of(workers[0]),),  # the other is found by its marker alone
        )
        write_record(settings, record)
        try:
            yield record, workers
        finally:
            for worker in workers:
                with contextlib.suppress(psutil.Error):
                    worker.kill()


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_the_record_is_written_atomically_for_its_user_alone(settings):
    with _platform(settings) as (record, _):
        path = record_path(settings)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert read_record(settings) == record
        assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_damaged_record_is_named_not_guessed_at(settings):
    path = record_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text('{"run": "x"}')
    with pytest.raises(ConfigurationError, match="is not a platform record"):
        read_record(settings)
    with pytest.raises(ConfigurationError):
        status(settings)


def test_one_up_per_data_folder_and_the_lock_ends_with_its_holder(settings, tmp_path):
    first, second = UpLock(settings), UpLock(settings)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()
    # A holder killed with SIGKILL: the kernel releases its lock.
    take = (
        "import sys, time\nfrom deployments.ops.lifecycle import UpLock\n"
        "from twin.settings import TwinSettings\n"
        f"lock = UpLock(TwinSettings(data_dir={str(settings.data_dir)!r}))\n"
        "assert lock.acquire()\n"
        "print('held', flush=True)\ntime.sleep(300)\n"
    )
    with _spawned(sys.executable, "-c", take) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert not UpLock(settings).acquire()
        holder.kill()
        holder.wait(timeout=10)
    lock = UpLock(settings)
    assert lock.acquire()
    lock.release()


def test_status_says_running_stale_or_stopped_with_lsb_codes(settings):
    assert status(settings).exit_code == 3
    with _platform(settings) as (record, _):
        running = status(settings)
        assert (running.state, running.exit_code) == ("running", 0)
        assert len(running.processes) == 2
        assert running.uptime_s is not None and running.uptime_s >= 0
        os.kill(record.driver.pid, signal.SIGKILL)
        psutil.Process(record.driver.pid).wait(timeout=10)
        stale = status(settings)
        assert (stale.state, stale.exit_code) == ("stale", 1)
        assert len(stale.processes) == 2  # orphaned, still running


def test_up_refuses_a_running_platform_and_clears_a_dead_ones_leftovers(settings):
    with (
        _spawned("sleep", "300") as bystander,
        _platform(settings) as (record, workers),
    ):
        lock = UpLock(settings)
        with pytest.raises(PlatformRunningError, match=f"driver pid {record.driver.pid}"):
            clear_stale(settings, lock)
        assert all(_running(w) for w in workers)
        os.kill(record.driver.pid, signal.SIGKILL)  # the driver dies; its workers live on
        psutil.Process(record.driver.pid).wait(timeout=10)
        found = clear_stale(settings, lock)
        lock.release()
        assert found is not None
        previous, removed = found
        assert previous.run == record.run
        assert sorted(int(line.split()[0]) for line in removed) == sorted(w.pid for w in workers)
        assert not any(_running(w) for w in workers)
        assert _running(psutil.Process(bystander.pid))
        starting = read_record(settings)  # this process, recorded as a platform starting
        assert starting is not None and starting.run == lock.run
        assert (starting.state, starting.driver.pid) == ("starting", os.getpid())


def test_a_recorded_id_that_now_names_another_process_is_left_alone(settings):
    with _spawned("sleep", "300") as other, _platform(settings) as (record, workers):
        mine = Identity.of(psutil.Process(other.pid))
        impostor = replace(mine, start_ticks=mine.start_ticks - 100)
        write_record(settings, replace(record, processes=(impostor,)))
        os.kill(record.driver.pid, signal.SIGKILL)
        psutil.Process(record.driver.pid).wait(timeout=10)
        lock = UpLock(settings)
        found = clear_stale(settings, lock)
        lock.release()
        assert found is not None
        assert _running(psutil.Process(other.pid))
        assert not any(_running(w) for w in workers)  # found by their marker


def test_down_stops_the_driver_then_ends_what_it_left(settings):
    with _spawned("sleep", "300") as bystander, _platform(settings) as (record, workers):
        report = down(settings, wait_s=5.0)
        assert report.state == "running"
        assert report.driver_stopped
        assert report.ended == 2  # SIGTERM was enough for the workers
        assert report.survivors == ()
        assert not any(_running(w) for w in workers)
        assert not _running(psutil.Process(record.driver.pid))
        assert _running(psutil.Process(bystander.pid))
        assert read_record(settings) is None
        assert report.seconds < 5.0
    assert down(settings).state == "stopped"


def test_haproxy_wildcard_listeners_are_bound_to_the_host():
    config = (
        "frontend prometheus\n    bind :9101\n    mode http\n"
        "frontend http_frontend\n    bind 127.0.0.1:8000\n"
        "frontend grpc_frontend\n    bind 127.0.0.1:9000 proto h2\n"
        "listen stats\n  bind *:8404\n  stats enable\n"
    )
    bound = rewrite(config, "127.0.0.1")
    assert re.findall(r"bind (\S+)", bound) == [
        "127.0.0.1:9101", "127.0.0.1:8000", "127.0.0.1:9000", "127.0.0.1:8404",
    ]  # fmt: skip
    assert "proto h2" in bound
    assert rewrite("  bind 0.0.0.0:1\n  bind :::2\n", "::1") == "  bind ::1:1\n  bind ::1:2\n"
    with pytest.raises(ValueError, match="not understood"):
        rewrite("  bind unix@/tmp/x.sock\n", "127.0.0.1")


def test_every_bind_of_serves_haproxy_template_is_understood():
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    binds = [line for line in HAPROXY_CONFIG_TEMPLATE.splitlines() if re.match(r"\s*bind\s", line)]
    assert len(binds) == 4  # prometheus, http, grpc, stats: a new one is looked at here
    rendered = "\n".join(
        re.sub(r"\{\{[^}]*port[^}]*\}\}", "1234", re.sub(r"\{\{[^}]*host[^}]*\}\}", "*", line))
        for line in binds
    )
    bound = rewrite(rendered + "\n", "127.0.0.1")
    assert all("bind 127.0.0.1:1234" in line for line in bound.splitlines()), bound


def test_the_launcher_rewrites_in_place_and_becomes_haproxy(tmp_path):
    fake = tmp_path / "haproxy"
    fake.write_text('#!/bin/sh\necho "$$ $*"\ncat "$3"\n')
    fake.chmod(0o700)
    config = tmp_path / "node" / "haproxy.cfg"
    config.parent.mkdir()
    config.write_text("listen stats\n  bind *:8404\n")
    script = launcher(tmp_path / "run" / "haproxy", "127.0.0.1", str(fake))
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    run = subprocess.run(
        [str(script), "-db", "-f", str(config), "-dR"], capture_output=True, text=True, check=True
    )
    first, *rest = run.stdout.splitlines()
    assert first.split(" ", 1)[1] == f"-db -f {config} -dR"  # Serve's arguments, unchanged
    assert rest == ["listen stats", "  bind 127.0.0.1:8404"]
    assert config.read_text() == "listen stats\n  bind 127.0.0.1:8404\n"


def test_the_launcher_keeps_the_process_id(tmp_path):
    fake = tmp_path / "haproxy"
    fake.write_text('#!/bin/sh\necho "$$"\n')
    fake.chmod(0o700)
    config = tmp_path / "haproxy.cfg"
    config.write_text("listen stats\n  bind *:1\n")
    script = launcher(tmp_path / "launch", "127.0.0.1", str(fake))
    with _spawned(str(script), "-db", "-f", str(config)) as process:
        assert process.stdout is not None
        assert int(process.stdout.readline()) == process.pid


def test_the_module_lists_what_it_exports():
    assert set(lifecycle.__all__) <= set(dir(lifecycle))


_HOLD_LOCK = (
    "import time\nfrom deployments.ops.lifecycle import UpLock\n"
    "from twin.settings import TwinSettings\n"
    "lock = UpLock(TwinSettings(data_dir={data!r}))\n"
    "assert lock.acquire()\nprint('held', flush=True)\ntime.sleep(300)\n"
)


def test_a_clock_step_changes_no_identity(settings, monkeypatch):
    with _platform(settings) as (record, _):
        # The wall clock is set (NTP, a resume) after the record was written: every start
        # time in seconds since the epoch that psutil reports moves with it.
        real = psutil.Process.create_time
        monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + 3600.0)
        found = status(settings)
        assert (found.state, found.exit_code) == ("running", 0)
        assert found.uptime_s is not None and 0 <= found.uptime_s < 60
        report = down(settings, wait_s=5.0)
        assert (report.state, report.driver_stopped) == ("running", True)  # orderly SIGTERM
        # Another boot: the same ticks name another process.
        other_boot = replace(record.driver, boot_id="00000000-0000-4000-8000-000000000000")
        assert other_boot.find() is None


def test_an_up_started_inside_another_run_sheds_its_marker(tmp_path):
    code = (
        "import os\nfrom deployments.ops.lifecycle import leave_inherited_run\n"
        "print(os.getpid(), flush=True)\nleave_inherited_run()\n"
        "environ = open(f'/proc/{os.getpid()}/environ', 'rb').read()\n"
        f"print(os.getpid(), b'{RUN_ENV}=' in environ, flush=True)\n"
    )
    env = {**os.environ, RUN_ENV: "0123456789abcdef0123456789abcdef"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    pid = run.stdout.split()[0]
    # Started again (its first line twice), the same process, without the marker.
    assert run.stdout.splitlines() == [pid, pid, f"{pid} False"]


def test_down_touches_nothing_when_the_lock_is_held_by_an_unrecorded_driver(settings):
    data = str(settings.data_dir)
    with (
        _spawned(sys.executable, "-c", _HOLD_LOCK.format(data=data)) as holder,
        _platform(settings) as (record, workers),
    ):
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        ghost = replace(record.driver, start_ticks=record.driver.start_ticks + 1)
        write_record(settings, replace(record, driver=ghost))
        with pytest.raises(PlatformRunningError, match="nothing was signalled"):
            down(settings, wait_s=1.0)
        assert all(_running(w) for w in workers)
        assert _running(psutil.Process(record.driver.pid))
        assert read_record(settings) is not None


def test_a_platform_is_seen_from_the_moment_its_lock_is_taken(settings):
    lock = UpLock(settings)
    assert clear_stale(settings, lock) is None
    try:
        found = status(settings)
        assert (found.state, found.exit_code) == ("running", 0)
        assert found.record is not None and found.record.state == "starting"
        with pytest.raises(PlatformRunningError):
            clear_stale(settings, UpLock(settings))
    finally:
        lock.release()


def _hostile(settings: TwinSettings, change: dict[str, object]) -> None:
    path = record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = Identity.of(psutil.Process())
    record = PlatformRecord(
        run="0123456789abcdef0123456789abcdef", driver=me, pgid=0, uid=os.getuid(),
        data_dir="/x", host="127.0.0.1", ports={}, started_at="",
    )  # fmt: skip
    data = json.loads(record.to_json())
    for key, value in change.items():
        if key.startswith("driver."):
            data["driver"][key[7:]] = value
        else:
            data[key] = value
    path.unlink(missing_ok=True)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change",
    [
        {"driver.pid": "1"},
        {"driver.pid": -1},
        {"driver.pid": True},
        {"driver.start_ticks": float("nan")},
        {"driver.start_ticks": 1.5},
        {"driver.boot_id": "x"},
        {"uid": os.getuid() + 1},
        {"run": ""},
        {"ports": {"api": 70000}},
        {"processes": [{"pid": 2}]},
        {"extra": 1},
    ],
)
def test_a_hostile_record_is_refused_never_acted_on(settings, change):
    _hostile(settings, change)
    with pytest.raises(ConfigurationError, match="is not a platform record"):
        status(settings)
    with pytest.raises(ConfigurationError):
        down(settings)


def test_a_record_that_is_a_link_a_fifo_or_anothers_is_refused(settings, tmp_path):
    _hostile(settings, {})
    path = record_path(settings)
    assert status(settings).state == "running"
    os.chown(path, os.getuid() + 1, -1) if os.getuid() == 0 else None
    if os.getuid() == 0:
        with pytest.raises(ConfigurationError, match="owned by uid"):
            status(settings)
    target = tmp_path / "elsewhere.json"
    path.rename(target)
    path.symlink_to(target)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        status(settings)
    path.unlink()
    os.mkfifo(path)  # opened without O_NONBLOCK, reading it would hang
    with pytest.raises(ConfigurationError, match="not a regular file"):
        status(settings)


def test_status_exits_4_on_a_damaged_record_and_locks_that_fail_are_named(settings, monkeypatch):
    monkeypatch.setenv("NOVAMIND_DATA_DIR", str(settings.data_dir))
    _hostile(settings, {"run": "x"})
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 4, result.output
    assert "not a platform record" in result.output

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(ConfigurationError, match="local file system"):
        UpLock(settings).acquire()


@pytest.mark.parametrize(
    "line",
    ["bind ipv4@:80", "bind ipv6@:::80", "bind 0.0.0.0:80,0.0.0.0:81", "bind 0:80",
     "bind :80-90", "bind unix@/tmp/x.sock", "bind foo"],
)  # fmt: skip
def test_haproxy_binds_that_could_hide_a_wildcard_are_refused(line):
    with pytest.raises(ValueError, match="not understood"):
        rewrite(f"listen x\n  {line}\n", "127.0.0.1")


def test_haproxy_wildcards_in_every_spelling_are_bound_to_the_host():
    config = "bind\t*:80\n\tbind  [::]:81 ssl\nbind ::0:82\nbind-process 1\nbind localhost:83\n"
    assert rewrite(config, "10.0.0.1") == (
        "bind\t10.0.0.1:80\n\tbind  10.0.0.1:81 ssl\nbind 10.0.0.1:82\nbind-process 1\n"
        "bind localhost:83\n"
    )


def test_a_launcher_that_cannot_run_is_refused_at_start(tmp_path, monkeypatch):
    from deployments.ops import haproxy_bind

    monkeypatch.setattr(haproxy_bind.os, "access", lambda path, mode: False)  # a noexec mount
    with pytest.raises(PermissionError, match="noexec"):
        launcher(tmp_path / "haproxy", "127.0.0.1", "/usr/sbin/haproxy")


@pytest.mark.parametrize("host", ["1.2.3.4:80", ":", "0", "a..b", "-a"])
def test_http_host_is_an_address_or_a_host_name(host):
    with pytest.raises(ValueError, match="http_host"):
        TwinSettings(http_host=host)
    assert TwinSettings(http_host="::1").http_host == "::1"
