"""HTTP API benchmark: Ray Serve against plain uvicorn, open-model load.

Run: ``python -m bench.api`` (``make bench``). The last line printed is one JSON object.

Load is *open-model*: requests are sent on a fixed schedule (constant rate), whatever the
server's answers, and each latency is timed from the request's *scheduled* send time, so a
stalled server shows up as latency instead of silently lowering the offered load (no
coordinated omission). Two operations:

- read: ``GET /v1/patients/{id}/twin`` over a pool of seeded patients;
- ingest: ``POST /v1/patients/{id}/observations`` with one new event (acknowledged once durable).

Three servers, each on embedded stores in its own temporary folder (SQLite, local checkpoints):

- ``haproxy``: the Serve application on local Ray (``deployments.serve_app``) behind Serve's
  HAProxy ingress (``RAY_SERVE_ENABLE_HA_PROXY=1``), the platform's default;
- ``serve``: the same behind Serve's Python proxy (a fresh Ray cluster);
- ``uvicorn``: the same FastAPI app under one uvicorn process (``deployments.asgi``), twins in
  an in-process TwinHost, no Ray.

For each server and operation, after a 4-second warm-up at 25 rps: a ladder of constant rates,
each held for ``STEP_S`` seconds, up to the first that is not *sustained* (achieved ≥ 95% of
offered, errors < 0.1%, p99 ≤ 1 s); reported are the highest sustained rate and p50/p99 and the
error share of the 100-rps step. Ratios (``serve_to_uvicorn_read_ratio`` = max sustained read
rps through Serve with HAProxy / through uvicorn) come from one process run, so machine noise
affects both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deployments.ops.platform import local_token
from tests.servers import free_port
from twin.client import Client, observation
from twin.domain import events as E
from twin.settings import TwinSettings

LADDER = (25, 50, 75, 100, 150, 200, 300, 400)
STEP_S = 8.0
PATIENTS = 50


@dataclass
class Step:
    """One constant-rate run."""

    rate: float
    sent: int
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    achieved_rps: float

    @property
    def sustained(self) -> bool:
        """Achieved >= 95% of the offered rate, errors < 0.1%, p99 <= 1 s."""
        return (
            self.achieved_rps >= 0.95 * self.rate
            and self.errors <= 0.001 * max(self.sent, 1)
            and self.p99_ms <= 1000.0
        )


async def _open_load(url: str, token: str, rate: float, seconds: float, make_request: Any) -> Step:
    """Send ``rate`` requests per second for ``seconds``; latency from the scheduled time."""
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=500)
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(
        base_url=url, headers={"authorization": f"Bearer {token}"}, limits=limits, timeout=30
    ) as http:
        start = time.perf_counter() + 0.2
        n = int(rate * seconds)

        async def one(i: int) -> None:
            nonlocal errors
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            method, path, body = make_request(i)
            try:
                response = await http.request(method, path, json=body)
                if response.status_code >= 400:
                    errors += 1
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    return
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append((time.perf_counter() - scheduled) * 1000.0)

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    if statuses:
        print(f"    error statuses: {statuses}", flush=True)
    ok = len(latencies)
    return Step(
        rate=rate,
        sent=n,
        ok=ok,
        errors=errors,
        p50_ms=float(np.percentile(latencies, 50)) if latencies else float("inf"),
        p99_ms=float(np.percentile(latencies, 99)) if latencies else float("inf"),
        achieved_rps=ok / elapsed,
    )


def _seed(url: str, settings: TwinSettings) -> list[str]:
    token = local_token(settings, "clinician", subject="bench", care_team=("bench",))
    with Client(url, token=token) as api:
        pids = []
        for i in range(PATIENTS):
            pid = api.create_patient(
                name=f"Bench {i}", birth_date="1980-01-01", mrn=f"B{i}", care_team="bench"
            )
            api.add_observations(pid, [observation(E.Phq9(10 + i % 10), day=0.0)])
            pids.append(pid)
    return pids


def _measure(url: str, settings: TwinSettings) -> dict[str, Any]:
    pids = _seed(url, settings)
    token = local_token(settings, "admin", subject="bench-admin")

    def read(i: int) -> tuple[str, str, None]:
        return "GET", f"/v1/patients/{pids[i % len(pids)]}/twin", None

    def ingest(i: int) -> tuple[str, str, dict[str, Any]]:
        # One day for every bench event: concurrent requests for a patient may arrive in any
        # order, and an event may not be older than its twin's clock.
        item = {"idempotency_key": f"b{time.time_ns()}-{i}", "day": 1.0,
                "payload": {"type": "ema_affect", "rating": 1 + i % 7}}  # fmt: skip
        return "POST", f"/v1/patients/{pids[i % len(pids)]}/observations", {"items": [item]}

    out: dict[str, Any] = {}
    for name, make in (("read", read), ("ingest", ingest)):
        asyncio.run(_open_load(url, token, 25, 4.0, make))  # warm-up: activations, caches
        best, at_100 = 0.0, None
        for rate in LADDER:
            step = asyncio.run(_open_load(url, token, rate, STEP_S, make))
            print(f"  {name} {rate:4d} rps: {step}", flush=True)
            if rate == 100:
                at_100 = step
            if not step.sustained:
                break
            best = rate
        if at_100 is None:  # the ladder stopped below 100 rps: measure it anyway
            at_100 = asyncio.run(_open_load(url, token, 100, STEP_S, make))
        out[name] = {
            "p50_ms_at_100": round(at_100.p50_ms, 2),
            "p99_ms_at_100": round(at_100.p99_ms, 2),
            "error_share_at_100": at_100.errors / max(at_100.sent, 1),
            "max_sustained_rps": best,
        }
    return out


def _settings(root: Path, port: int) -> TwinSettings:
    return TwinSettings(
        data_dir=root,
        http_port=port,
        rate_limit_per_minute=1_000_000,
        api_min_replicas=1,
        api_max_replicas=1,
        ray_namespace=f"bench-{port}",
    )


def bench_serve(haproxy: bool) -> dict[str, Any]:
    """Start Ray + Serve (optionally in HAProxy mode) and measure."""
    import ray
    from ray import serve

    from deployments.serve_app import application

    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if haproxy else "0"
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), free_port())
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": settings.http_port})
            serve.run(application(settings), name="bench", route_prefix="/")
            return _measure(f"http://127.0.0.1:{settings.http_port}", settings)
        finally:
            serve.shutdown()
            ray.shutdown()


def bench_uvicorn() -> dict[str, Any]:
    """One uvicorn process serving ``deployments.asgi:build_app``."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), free_port())
        env = {
            **os.environ,
            "NOVAMIND_DATA_DIR": tmp,
            "NOVAMIND_RATE_LIMIT_PER_MINUTE": "1000000",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "deployments.asgi:build_app",
             "--port", str(settings.http_port), "--log-level", "warning", "--no-access-log"],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{settings.http_port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health/readiness").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("uvicorn did not start")
                time.sleep(0.2)
            return _measure(url, settings)
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    """Run all three servers and print the JSON summary last."""
    results = {}
    for name, run in (
        ("uvicorn", bench_uvicorn),
        ("serve", lambda: bench_serve(False)),
        ("haproxy", lambda: bench_serve(True)),
    ):
        print(f"{name}:", flush=True)
        try:
            results[name] = run()
        except Exception as exc:  # report a mode that cannot run here, keep the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    summary: dict[str, Any] = {"ladder_rps": list(LADDER), "step_s": STEP_S, **results}
    uvi = results.get("uvicorn", {})
    # The platform's default ingress is HAProxy (TwinSettings.serve_haproxy).
    for key, mode in (
        ("serve_to_uvicorn_read_ratio", "haproxy"),
        ("python_proxy_to_uvicorn_read_ratio", "serve"),
    ):
        srv = results.get(mode, {})
        if "read" in uvi and "read" in srv and uvi["read"]["max_sustained_rps"]:
            summary[key] = round(
                srv["read"]["max_sustained_rps"] / uvi["read"]["max_sustained_rps"], 3
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
