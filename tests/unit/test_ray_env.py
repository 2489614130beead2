"""Every command starts or joins exactly the Ray cluster the settings name."""

from __future__ import annotations

import pytest
import ray
from pydantic import ValidationError

from deployments import ray_env
from twin.settings import TwinSettings


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    monkeypatch.setattr(ray, "init", lambda **options: seen.append(options))
    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")  # a cluster the environment names
    return seen


def test_the_default_starts_a_new_local_cluster_whatever_is_running(calls, tmp_path):
    ray_env.connect(TwinSettings(data_dir=tmp_path), num_cpus=2, include_dashboard=False)
    # "local" is Ray's own word for "start one here": RAY_ADDRESS and a cluster left by
    # `ray start` are both ignored (only None and "auto" read them). Ray's settings are the
    # platform's (a call to a dead twin host fails and is retried sooner).
    assert calls == [
        {
            "address": "local",
            "num_cpus": 2,
            "include_dashboard": False,
            "_system_config": {
                "timeout_ms_task_wait_for_death_info": 100,
                "core_worker_internal_heartbeat_ms": 100,
            },
        }
    ]


def test_rays_settings_for_ray_start_are_the_same_as_variables():
    assert ray_env.system_env() == {
        "RAY_timeout_ms_task_wait_for_death_info": "100",
        "RAY_core_worker_internal_heartbeat_ms": "100",
    }


def test_a_configured_or_given_address_joins_that_cluster_with_its_own_resources(calls, tmp_path):
    settings = TwinSettings(data_dir=tmp_path, ray_address="auto")
    ray_env.connect(settings, num_cpus=2, include_dashboard=True, log_to_driver=False)
    ray_env.connect(settings, "10.0.0.5:6379", num_cpus=2)
    assert calls == [
        {"address": "auto", "log_to_driver": False},
        {"address": "10.0.0.5:6379"},
    ]


@pytest.mark.parametrize("address", ["", "local; rm -rf /", "http://x:1", "host"])
def test_an_address_that_is_no_cluster_is_refused(address, tmp_path):
    with pytest.raises(ValidationError, match="ray_address"):
        TwinSettings(data_dir=tmp_path, ray_address=address)


@pytest.mark.parametrize(
    ("haproxy", "optimized", "flags"),
    [
        (True, True, {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
        (True, False, {"RAY_SERVE_ENABLE_HA_PROXY": "1"}),
        # Throughput-optimised alone would also turn on direct ingress (no proxy at all).
        (
            False,
            True,
            {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"},
        ),
        (False, False, {}),
    ],
)
def test_serve_flags_follow_the_settings(haproxy, optimized, flags, tmp_path):
    settings = TwinSettings(
        data_dir=tmp_path, serve_haproxy=haproxy, serve_throughput_optimized=optimized
    )
    assert ray_env.serve_flags(settings) == flags


def test_the_platform_default_is_haproxy_in_throughput_optimised_mode(tmp_path):
    flags = ray_env.serve_flags(TwinSettings(data_dir=tmp_path))
    assert flags == {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
