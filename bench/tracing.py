"""What tracing costs an ingest. The last line printed is one JSON object.

N sequential ``POST /v1/patients/{id}/observations`` (one PHQ-9 each) through the plain-ASGI
app in process (``deployments.asgi.build_app``: SQLite, local checkpoints, an in-process twin
host with 200 particles), after a warm-up, in three modes, each in a fresh interpreter (a
process installs its tracer provider once, for good) and alternated ``--rounds`` times:

- ``off``: no endpoint configured, the default. No provider: every span is the API's no-op and
  the stores are not wrapped.
- ``sampled_out``: the SDK's provider with ``otel_sample_ratio`` 0: the stores are wrapped and
  spans are started, but none is recorded (a configured deployment's unsampled request).
- ``on``: every request sampled, its spans batched (``BatchSpanProcessor``, as exported) into
  the SDK's InMemorySpanExporter.

Reported per mode: the median over rounds of each round's mean and p50 milliseconds per
request, and the spans one request makes; ``overhead_on_pct`` compares ``on`` with ``off``.
``python -m bench.tracing --n 300 --rounds 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("off", "sampled_out", "on")


async def _measure(mode: str, n: int, warmup: int) -> dict[str, float]:
    import httpx

    exporter = None
    if mode != "off":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        exporter = InMemorySpanExporter()
        ratio = 1.0 if mode == "on" else 0.0
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

    from deployments.api.auth import mint_token
    from deployments.asgi import build_app
    from twin.settings import TwinSettings

    secret = "b" * 48
    token = mint_token(secret, subject="bench", role="admin", issuer="novamind-local",
                       audience="novamind-api")  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory() as data:
        settings = TwinSettings(
            data_dir=Path(data), particles=200, jwt_secret=secret, research_key="r" * 48,
            rate_limit_per_minute=1_000_000,
        )  # fmt: skip
        app = build_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                patient = {"name": "B", "birth_date": "1980-01-01", "mrn": "B1", "care_team": "t"}
                pid = (await http.post("/v1/patients", json=patient, headers=headers)).json()[
                    "patient_id"
                ]
                timings: list[float] = []
                for i in range(warmup + n):
                    items = [{"idempotency_key": f"k{i}", "day": i * 0.1,
                              "payload": {"type": "phq9", "total": 5 + i % 15}}]  # fmt: skip
                    started = time.perf_counter()
                    answer = await http.post(
                        f"/v1/patients/{pid}/observations", json={"items": items}, headers=headers
                    )
                    elapsed = time.perf_counter() - started
                    assert answer.status_code == 200, answer.text
                    if i >= warmup:
                        timings.append(elapsed * 1000.0)
    spans = 0.0
    if exporter is not None:
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        spans = len(exporter.get_finished_spans()) / (warmup + n + 1)
    return {
        "mean_ms": statistics.fmean(timings),
        "p50_ms": statistics.median(timings),
        "spans_per_request": round(spans, 1),
    }


def _run(mode: str, n: int, warmup: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.tracing", "--mode", mode, "--n", str(n),
         "--warmup", str(warmup)],
        capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=MODES, help="one mode in this process (internal)")
    args = parser.parse_args()
    if args.mode is not None:
        print(json.dumps(asyncio.run(_measure(args.mode, args.n, args.warmup))))
        return
    rounds: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:  # alternated, so drift on a shared machine hits every mode alike
            rounds[mode].append(_run(mode, args.n, args.warmup))
    summary: dict[str, object] = {"requests_per_round": args.n, "rounds": args.rounds}
    for mode, results in rounds.items():
        summary[mode] = {
            key: round(statistics.median(r[key] for r in results), 3)
            for key in ("mean_ms", "p50_ms", "spans_per_request")
        }
    off = statistics.median(r["mean_ms"] for r in rounds["off"])
    for mode in ("sampled_out", "on"):
        cost = statistics.median(r["mean_ms"] for r in rounds[mode]) / off - 1.0
        summary[f"overhead_{mode}_pct"] = round(100.0 * cost, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
