"""The processes of a platform are found by descent and process group, and only they are ended.

A small process tree stands in for a platform: a "driver" started by a "make" in the same
process group (as in a terminal), a child of the driver in that group, and a "worker" that
leads a group of its own with children in it (as a Ray worker and its HAProxy). The worker
is killed, orphaning its children, one of which it started after the platform was first looked
at. Beside them runs a process that is no part of the platform.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from deployments.ops.processes import PlatformProcesses

# Starts the "driver" in its own process group, as a shell runs `make up`.
_MAKE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
time.sleep(300)
"""
# A child in the driver's group, and a "worker".
_DRIVER = """
import subprocess, sys, time
subprocess.Popen(["sleep", "300"])
subprocess.Popen([sys.executable, "-c", sys.argv[1]])
time.sleep(300)
"""
# Leads a group of its own with a child in it; starts a second child on SIGUSR1.
_WORKER = """
import os, signal, subprocess, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.setpgrp()
subprocess.Popen(["sleep", "300"])
signal.sigwait({signal.SIGUSR1})
subprocess.Popen(["sleep", "301"])
time.sleep(300)
"""


def _wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def tree() -> Iterator[dict[str, psutil.Process]]:
    make = subprocess.Popen([sys.executable, "-c", _MAKE, _DRIVER, _WORKER], start_new_session=True)
    outsider = subprocess.Popen(["sleep", "300"], start_new_session=True)
    started: list[psutil.Process] = [psutil.Process(make.pid), psutil.Process(outsider.pid)]
    try:
        make_process = psutil.Process(make.pid)
        _wait_for(lambda: len(make_process.children(recursive=True)) >= 4)
        (driver,) = make_process.children()
        worker = next(p for p in driver.children() if p.name() != "sleep")
        _wait_for(lambda: len(worker.children()) == 1)
        started += make_process.children(recursive=True)
        yield {
            "make": make_process, "driver": driver, "worker": worker,
            "outsider": psutil.Process(outsider.pid),
        }  # fmt: skip
    finally:
        started += [p for p in psutil.process_iter() if _in_group(p, started)]
        for process in started:
            with contextlib.suppress(psutil.Error):
                process.kill()
        for popen in (make, outsider):
            popen.wait(timeout=10)


def _in_group(process: psutil.Process, leaders: list[psutil.Process]) -> bool:
    try:
        return os.getpgid(process.pid) in {p.pid for p in leaders} - {os.getpgrp()}
    except OSError:
        return False


def test_orphans_are_found_by_their_group_and_nothing_outside_the_platform_is_signalled(tree):
    driver, worker = tree["driver"], tree["worker"]
    processes = PlatformProcesses(driver.pid)
    assert processes.look() == 3  # the driver's child, the worker and the worker's child
    (first,) = worker.children()
    worker.send_signal(signal.SIGUSR1)  # a child started after the look
    _wait_for(lambda: len(worker.children()) == 2)
    second = next(p for p in worker.children() if p.pid != first.pid)
    time.sleep(0.05)  # process start times are counted in clock ticks
    assert processes.look() == 4  # as while serving: the worker's group now has two
    worker.kill()  # its children are orphaned: no longer below the driver
    _wait_for(lambda: not _running(worker))
    _wait_for(lambda: second.pid not in {p.pid for p in driver.children(recursive=True)})

    assert processes.look() == 3  # the driver's child and both orphans
    assert {p.pid for p in processes.alive()} >= {first.pid, second.pid}
    assert processes.stop(grace_s=2.0) == 0  # each ended on SIGTERM
    assert not processes.alive()
    assert not any(_running(p) for p in (first, second))
    # The driver itself, its parent in the same process group, and an unrelated process run on.
    assert all(_running(tree[name]) for name in ("driver", "make", "outsider"))


def test_a_forced_stop_kills_every_process_of_the_platform_at_once(tree):
    driver = tree["driver"]
    processes = PlatformProcesses(driver.pid)
    processes.look()
    # Stopped processes act on no signal but SIGKILL: a forced stop does not rely on them.
    for process in processes.alive():
        process.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    assert processes.kill() == 3
    assert time.monotonic() - started < 2.0
    assert not processes.alive()
    assert all(_running(tree[name]) for name in ("driver", "make", "outsider"))
