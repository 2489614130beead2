"""A small local Ray cluster for the actor tests (2 CPUs, no dashboard)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from actors.directory import RayTwinDirectory  # noqa: E402 - after the importorskip
from actors.runtime import TwinRuntime  # noqa: E402
from deployments import ray_env  # noqa: E402
from deployments.host_ports import build_host_ports  # noqa: E402
from tests.servers import free_port  # noqa: E402
from twin.settings import HostSettings, TwinSettings  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    # Serve's HAProxy ingress, the platform's default (TwinSettings.serve_haproxy), with its
    # stats and metrics listeners on free ports: on the fixed defaults it cannot start beside
    # another platform on this machine.
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(free_port())
    os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] = str(free_port())
    # A replica removed under the HAProxy ingress keeps serving its connections for 30 s by
    # default; the suite's applications have none left when they are deleted.
    os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = "1"
    # Serve's throughput-optimised mode, also the platform's default
    # (TwinSettings.serve_throughput_optimized).
    os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _system_config=dict(ray_env.SYSTEM_CONFIG),  # Ray's settings as the platform runs it
    )
    yield
    ray.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> TwinSettings:
    return TwinSettings(
        data_dir=tmp_path, hosts=2, particles=200, ray_namespace=f"test-{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture
def runtime(ray_cluster: None, settings: TwinSettings) -> Iterator[TwinRuntime]:
    directory = RayTwinDirectory(
        settings, build_host_ports, HostSettings(particles=200, checkpoint_every_events=20)
    )
    directory.start()
    yield TwinRuntime(directory, retry_for_s=60.0)
    for handle in directory.hosts().values():
        ray.kill(handle, no_restart=True)


@pytest.fixture
def settle() -> Callable[[Callable[[], Any], float], Any]:
    """Polls a job's status (``read()``) until it leaves queued/running; fails after a timeout."""

    def wait(read: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while (status := read()).status in ("queued", "running"):
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        return status

    return wait
