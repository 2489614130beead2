"""The HTTP benchmark's load (wrk and its Lua scripts) against a real server: what it counts.

Each acknowledged ingest must be one new durable event, and reads must reach the twins of the
seeded patients; a step's numbers must come from 2xx answers only. The server is the plain
uvicorn one (``deployments.asgi``) the benchmark compares Serve with, on its own stores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from bench import api as bench
from deployments.ops.platform import local_token
from tests.servers import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make wrk)"),
]


def test_wrk_steps_count_only_acknowledged_new_events(tmp_path: Path) -> None:
    settings = bench._settings(tmp_path, free_port(), {})
    with bench._uvicorn(settings, env={}) as url:
        pids = bench._seed(url, settings)
        measured = bench._measure(
            url, settings, ops=("read", "ingest"), connections=(1, 4), step_s=1,
            warmup_s=1, pids=pids,
        )  # fmt: skip
        token = local_token(settings, "clinician", subject="bench", care_team=(bench.CARE_TEAM,))
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            events = sum(http.get(f"/v1/patients/{p}/twin").json()["last_seq"] for p in pids)
    assert len(set(pids)) == bench.PATIENTS
    steps = [*measured["read"], *measured["ingest"]]
    assert [s["connections"] for s in steps] == [1, 4, 1, 4]
    for step in [*steps, measured["read_warmup"], measured["ingest_warmup"]]:
        assert step["ok"] > 0 and step["ok"] == step["requests"], step
        assert step["rps"] > 0 and 0 < step["p50_ms"] <= step["p99_ms"], step
        assert "non_2xx" not in step and "duplicates" not in step, step
        assert "socket_errors" not in step, step
    # The log holds the seeded PHQ-9s plus every acknowledged ingest, each once: a request
    # still in flight when wrk stopped (at most one per connection) may have landed too.
    acknowledged = sum(s["ok"] for s in [*measured["ingest"], measured["ingest_warmup"]])
    in_flight = 1 + 4 + 8
    assert bench.PATIENTS + acknowledged <= events <= bench.PATIENTS + acknowledged + in_flight


def test_a_step_reports_non_2xx_answers_and_counts_only_2xx() -> None:
    raw = {
        "requests": 100,
        "duration_us": 2_000_000,
        "p50_us": 1500.0,
        "p99_us": 9000.0,
        "statuses": {"200": 80, "409": 15, "503": 5},
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 2},
        "max_day": 1.0,
        "duplicates": 0,
    }
    step = bench._step(raw, 8, 2)
    assert step["rps"] == 40.0  # 80 answers of 2xx in 2 s
    assert step["non_2xx"] == {"409": 15, "503": 5}
    assert step["socket_errors"] == {"timeout": 2}
    assert (step["p50_ms"], step["p99_ms"]) == (1.5, 9.0)


def test_ratios_are_none_where_either_side_failed() -> None:
    results = {
        "uvicorn": {"read": [{"connections": 8, "rps": 500.0}, {"connections": 32, "rps": 0}]},
        "serve": {"read": [{"connections": 8, "rps": 400.0}, {"connections": 32, "error": "x"}]},
    }
    assert bench._ratios(results, "serve") == {"read_c8": 0.8, "read_c32": None}
