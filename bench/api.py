"""HTTP API benchmark: Ray Serve against plain uvicorn, closed-model load from ``wrk``.

Run: ``python -m bench.api`` (``make bench``, which installs Debian's ``wrk`` when missing).
``--quick`` shortens every step; ``--connections 8,32`` picks the steps. The last line printed
is one JSON object.

Load comes from ``wrk``, a C load generator (epoll, one thread per core it is given), not from
Python: a Python client on the same two cores as the server spends more CPU per request than
the server does, and so measures itself. The model is *closed*: ``wrk`` keeps a fixed number of
connections, each sending its next request when the previous answer arrives, for a fixed
duration per step (after a warm-up step, reported but not compared). Latencies are wrk's, from the
send of a request to the end of its answer. Two operations, each a Lua script in
``bench/wrk/``:

- read (``read.lua``): ``GET /v1/patients/{id}/twin``, rotating over the seeded patients; each
  read is authenticated, rate-limited and audited (a durable audit entry) like any other;
- ingest (``ingest.lua``): ``POST /v1/patients/{id}/observations`` with one new EMA rating, a
  unique idempotency key and a later day than the patient's previous event, so every request
  appends one real durable event. Only 2xx answers count as acknowledged; anything else is
  reported by status. One connection per ``wrk`` thread, each owning its patients, so the
  events of one patient never race each other.

Servers, each on embedded stores (SQLite, local checkpoints) in a temporary folder of its own,
measured one after the other in one process run, so machine noise affects both alike:

- ``serve``: the platform as ``novamind up`` starts it (``deployments.ops.platform``): local
  Ray on 2 CPUs, the Serve application (``deployments.serve_app``, one API replica) behind the
  platform's default ingress (HAProxy, ``TwinSettings.serve_haproxy``) in Serve's
  throughput-optimised mode (``serve_throughput_optimized``), twins in TwinHost actors;
- ``uvicorn``: the same FastAPI app in one uvicorn process (``deployments.asgi``), twins in an
  in-process TwinHost, no Ray;
- ``serve-python-proxy`` (only when asked for with ``--servers``): Serve behind its Python proxy.

Both get a rate limit that the bench cannot reach (one subject sends every request). Reported
per server, operation and connection count: ``rps`` (2xx answers per second), ``p50_ms``,
``p99_ms``, ``non_2xx`` (by status) and ``socket_errors``; a step that did not complete says so
under ``error``. The summary's ``serve_to_uvicorn`` holds the Serve/uvicorn rps ratio of each
operation at each connection count.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from deployments.ops.platform import local_token
from deployments.ray_env import settings_env
from tests.servers import free_port
from twin.client import Client, observation
from twin.domain import events as E
from twin.settings import TwinSettings

WRK_DIR = Path(__file__).parent / "wrk"
OPS = ("read", "ingest")
CONNECTIONS = (1, 8, 32)
#: Seconds per step (wrk takes whole seconds).
STEP_S = 10
QUICK_STEP_S = 4
WARMUP_S = 3
PATIENTS = 64
#: Days between two events of one patient sent by ``ingest.lua`` (about 15 minutes).
DAY_STEP = 0.01
#: The seeded patients' enrolment: far enough back for every run's events (a day step per
#: request and patient) to stay in the past.
ENROLLED = (datetime.now(UTC) - timedelta(days=60)).replace(microsecond=0)
#: Most wrk threads for reads (the machine has 2 cores; each thread drives many connections).
READ_THREADS = 2
SERVERS = ("uvicorn", "serve", "serve-python-proxy")
DEFAULT_SERVERS = ("uvicorn", "serve")
CARE_TEAM = "bench"


def _wrk(
    url: str, script: str, args: list[str], *, connections: int, threads: int, seconds: int
) -> dict[str, Any]:
    """One ``wrk`` run; returns the JSON object its ``done()`` printed (see report.lua)."""
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(WRK_DIR / script), url, "--", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _step(raw: dict[str, Any], connections: int, threads: int) -> dict[str, Any]:
    """A wrk result as reported: 2xx per second, latency percentiles in ms, what failed."""
    seconds = raw["duration_us"] / 1e6
    statuses = {int(k): v for k, v in raw["statuses"].items()}
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    step: dict[str, Any] = {
        "connections": connections,
        "threads": threads,
        "rps": round(ok / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000.0, 2),
        "p99_ms": round(raw["p99_us"] / 1000.0, 2),
        "requests": raw["requests"],
        "ok": ok,
    }
    failed = {str(s): n for s, n in sorted(statuses.items()) if not 200 <= s < 300}
    if failed:
        step["non_2xx"] = failed
    if raw["duplicates"]:  # acknowledged, but not as a new event: not a durable write
        step["duplicates"] = raw["duplicates"]
    sockets = {k: v for k, v in raw["socket_errors"].items() if v}
    if sockets:
        step["socket_errors"] = sockets
    return step


def _seed(url: str, settings: TwinSettings) -> list[str]:
    """Create ``PATIENTS`` patients in the bench's care team, each with one PHQ-9 at day 0."""
    token = local_token(settings, "clinician", subject="bench", care_team=(CARE_TEAM,))
    with Client(url, token=token, timeout_s=60.0) as api:
        pids = []
        for i in range(PATIENTS):
            pid = api.create_patient(
                name=f"Bench {i}", birth_date="1980-01-01", mrn=f"B{i}", care_team=CARE_TEAM,
                enrolled_at=ENROLLED.isoformat(),
            )  # fmt: skip
            api.add_observations(pid, [observation(E.Phq9(10 + i % 10), effective=ENROLLED)])
            pids.append(pid)
    return pids


def _measure(
    url: str,
    settings: TwinSettings,
    *,
    ops: tuple[str, ...],
    connections: tuple[int, ...],
    step_s: int,
    warmup_s: int = WARMUP_S,
    pids: list[str] | None = None,
) -> dict[str, Any]:
    """Seed (unless given ``pids``), then read and ingest steps at each connection count.

    Returns:
        Per operation, its steps in the order of ``connections``; and under
        ``<operation>_warmup`` the warm-up step (8 connections), which is not compared.
    """
    pids = pids if pids is not None else _seed(url, settings)
    token = local_token(settings, "clinician", subject="bench", care_team=(CARE_TEAM,))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "run.txt"
        with os.fdopen(os.open(file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out_file:
            out_file.write("\n".join([token, *pids]) + "\n")  # the token: owner-only
        run_ids = (f"{uuid.uuid4().hex[:12]}-{i}" for i in itertools.count())
        last_day = 0.0

        def read(c: int, seconds: int) -> dict[str, Any]:
            threads = min(c, READ_THREADS)
            raw = _wrk(url, "read.lua", [str(file)], connections=c, threads=threads,
                       seconds=seconds)  # fmt: skip
            return _step(raw, c, threads)

        def ingest(c: int, seconds: int) -> dict[str, Any]:
            nonlocal last_day
            # One connection per thread: see ingest.lua. Each run starts after the latest day
            # any earlier run sent, so every patient's days keep increasing.
            args = [
                str(file),
                str(c),
                next(run_ids),  # idempotency keys: run id, thread, request counter
                f"{last_day:.6f}",
                str(DAY_STEP),
                str(int(ENROLLED.timestamp())),  # events are sent at instants from here
            ]
            raw = _wrk(url, "ingest.lua", args, connections=c, threads=c, seconds=seconds)
            last_day = max(last_day, float(raw["max_day"]))
            return _step(raw, c, c)

        for name, run in (("read", read), ("ingest", ingest)):
            if name not in ops:
                continue
            warm = run(8, warmup_s)  # activations, caches, JIT warm-up; not compared
            print(f"  {name} warm-up: {warm}", flush=True)
            out[f"{name}_warmup"] = warm
            steps = []
            for c in connections:
                try:
                    step = run(c, step_s)
                except Exception as exc:  # say so, keep the other steps
                    step = {"connections": c, "error": f"{type(exc).__name__}: {exc}"[:300]}
                print(f"  {name} c={c:<3d} {step}", flush=True)
                steps.append(step)
            out[name] = steps
    return out


def _settings(root: Path, port: int, overrides: dict[str, str]) -> TwinSettings:
    fields: dict[str, Any] = {
        "data_dir": root,
        "http_port": port,
        "rate_limit_per_minute": 1_000_000,
        "api_min_replicas": 1,
        "api_max_replicas": 1,
        "ray_namespace": f"bench-{port}",
        **overrides,
    }
    return TwinSettings(**fields)


@contextlib.contextmanager
def _serve(settings: TwinSettings, *, haproxy: bool, env: dict[str, str]) -> Iterator[str]:
    """The platform as ``novamind up`` starts it (no dashboard, 2 CPUs); yields its URL."""
    from deployments.ops.platform import Platform

    saved = dict(os.environ)
    os.environ.update(env)  # read by the Serve controller and replicas, which inherit it
    platform = Platform(settings.model_copy(update={"serve_haproxy": haproxy}))
    try:
        # The platform sets the RAY_SERVE_* variables of its settings (serve_haproxy, ...).
        platform.start(dashboard=False, num_cpus=2)
        yield platform.api_url
    finally:
        platform.stop()
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _uvicorn(settings: TwinSettings, *, env: dict[str, str]) -> Iterator[str]:
    """One uvicorn process serving ``deployments.asgi:build_app``; yields its URL."""
    # The settings as a Serve replica receives them (its runtime_env), so both serve alike.
    environ = {**os.environ, **env, **settings_env(settings)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "deployments.asgi:build_app",
         "--port", str(settings.http_port), "--log-level", "warning", "--no-access-log"],
        env=environ, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{settings.http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health/readiness").status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_server(
    name: str,
    *,
    ops: tuple[str, ...],
    connections: tuple[int, ...],
    step_s: int,
    env: dict[str, str],
    overrides: dict[str, str],
) -> dict[str, Any]:
    """Start one server on fresh embedded stores, measure it, stop it."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), free_port(), overrides)
        server: Callable[[], contextlib.AbstractContextManager[str]]
        if name == "uvicorn":
            server = lambda: _uvicorn(settings, env=env)  # noqa: E731
        else:
            haproxy = name == "serve"
            server = lambda: _serve(settings, haproxy=haproxy, env=env)  # noqa: E731
        with server() as url:
            measured = _measure(url, settings, ops=ops, connections=connections, step_s=step_s)
            if name != "uvicorn":  # how Serve ran: the flags the platform and --env set
                flags = {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")}
                measured["ray_serve_env"] = dict(sorted(flags.items()))
            return measured


def _ratios(results: dict[str, Any], server: str) -> dict[str, Any]:
    """``server``/uvicorn rps per operation and connection count (``None`` if a side failed)."""
    ratios: dict[str, Any] = {}
    for op in ("read", "ingest"):
        mine = {s["connections"]: s for s in results.get(server, {}).get(op, [])}
        base = {s["connections"]: s for s in results.get("uvicorn", {}).get(op, [])}
        for c, step in mine.items():
            other = base.get(c, {})
            ok = "rps" in step and other.get("rps")
            ratios[f"{op}_c{c}"] = round(step["rps"] / other["rps"], 3) if ok else None
    return ratios


def _pairs(values: list[str]) -> dict[str, str]:
    pairs = dict(v.split("=", 1) for v in values)
    return {k.strip(): v.strip() for k, v in pairs.items()}


def main(argv: list[str] | None = None) -> None:
    """Measure the servers and print the JSON summary last."""
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEP_S} s steps")
    parser.add_argument("--step-s", type=int, default=None, help=f"seconds per step ({STEP_S})")
    parser.add_argument("--connections", default=",".join(map(str, CONNECTIONS)))
    parser.add_argument("--ops", default=",".join(OPS), help="read, ingest or both")
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help=", ".join(SERVERS))
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help="environment of the servers (e.g. a RAY_SERVE_* flag to try); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="a TwinSettings field for the servers (e.g. api_max_replicas=2); repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
    servers = [s for s in args.servers.split(",") if s]
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    connections = tuple(int(c) for c in args.connections.split(","))
    ops = tuple(o for o in args.ops.split(",") if o)
    if unknown := set(ops) - set(OPS):
        parser.error(f"unknown operations: {', '.join(sorted(unknown))}")
    step_s = args.step_s or (QUICK_STEP_S if args.quick else STEP_S)
    env, overrides = _pairs(args.env), _pairs(args.set)

    results: dict[str, Any] = {}
    for name in servers:
        print(f"{name}:", flush=True)
        started = time.monotonic()
        try:
            results[name] = bench_server(
                name, ops=ops, connections=connections, step_s=step_s, env=env, overrides=overrides
            )
        except Exception as exc:  # report a server that cannot run here, keep the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    summary: dict[str, Any] = {
        "load": "wrk, closed model",
        "connections": list(connections),
        "step_s": step_s,
        "warmup_s": WARMUP_S,
        "patients": PATIENTS,
        "cpus": os.cpu_count(),
        **({"env": env} if env else {}),
        **({"settings": overrides} if overrides else {}),
        **results,
    }
    for name in servers:
        if name != "uvicorn" and "uvicorn" in results:
            key = "serve_to_uvicorn" if name == "serve" else "python_proxy_to_uvicorn"
            summary[key] = _ratios(results, name)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
