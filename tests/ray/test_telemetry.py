"""Traces and metrics as the Serve application on Ray exports them.

- Traces: the application runs with an OTLP/HTTP endpoint that is a receiver in this test
  process (a small HTTP server decoding ``ExportTraceServiceRequest`` with opentelemetry-proto).
  A request sent with a ``traceparent`` gives the replica's spans and the twin host actor's
  spans in that trace, chained parent to child across the two processes, none carrying PHI.
- Metrics: after real traffic (HTTP through Serve, twins activated, passivated and brought
  back), every ``ray_novamind_*`` series the Grafana dashboard charts is in the Prometheus text
  of the node's metrics export port.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.ops.platform import local_token
from tests.servers import free_port
from twin.settings import TwinSettings

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

from actors.directory import RayTwinDirectory  # noqa: E402 - after the importorskip
from actors.runtime import TwinRuntime  # noqa: E402
from deployments.host_ports import build_host_ports  # noqa: E402
from deployments.pipelines.job_runner import RUNNER_NAME  # noqa: E402
from deployments.serve_app import application  # noqa: E402

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "kuberay" / "base" / "grafana" / "novamind-twins.json"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
CLIENT_SPAN_ID = "eee19b7ec3c1b174"
PHQ9_ITEM9 = {"type": "phq9", "total": 18, "items": [3, 3, 3, 2, 2, 2, 1, 1, 1]}
PATIENT = {"name": "Ottoline Canaryray", "birth_date": "1971-07-17", "mrn": "MRN-RAY-CANARY",
           "contact": "ottoline.canary@example.org", "care_team": "team-1"}  # fmt: skip


@dataclass
class Received:
    """One exported span, flattened from OTLP's protobuf."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    texts: list[str] = field(default_factory=list)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


class OtlpReceiver:
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, binary protobuf) on 127.0.0.1."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver._take(trace_service.ExportTraceServiceRequest.FromString(body))
                answer = trace_service.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _take(self, request: Any) -> None:
        from opentelemetry.proto.trace.v1 import trace_pb2

        taken: list[Received] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    texts = [span.name, span.status.message, span.trace_state]
                    texts += [f"{k}={v}" for k, v in {**attributes, **resource}.items()]
                    for event in span.events:
                        texts.append(event.name)
                        texts += [f"{a.key}={_value(a.value)}" for a in event.attributes]
                    for link in span.links:
                        texts += [f"{a.key}={_value(a.value)}" for a in link.attributes]
                    taken.append(
                        Received(
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            trace_pb2.Span.SpanKind.Name(span.kind),
                            attributes,
                            resource,
                            texts,
                        )
                    )
        with self._lock:
            self.spans += taken

    def wait_for(self, done: Callable[[list[Received]], bool], timeout_s: float) -> list[Received]:
        """Every span received once ``done`` holds for them; fails after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                spans = list(self.spans)
            if done(spans):
                return spans
            assert time.monotonic() < deadline, sorted({s.name for s in spans})
            time.sleep(0.5)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    opened = OtlpReceiver()
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def traced_api(
    ray_cluster: None, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TwinSettings]]:
    settings = TwinSettings(
        data_dir=tmp_path_factory.mktemp("traced"),
        particles=200,
        hosts=1,
        ray_namespace=f"traced-{uuid.uuid4().hex[:8]}",
        http_port=free_port(),
        api_min_replicas=1,
        api_max_replicas=1,
        otel_exporter_otlp_endpoint=receiver.url,
        otel_service_name="novamind-test",
        otel_sample_ratio=1.0,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": settings.http_port})
    serve.run(application(settings), name="novamind-traced", route_prefix="/")
    yield f"http://127.0.0.1:{settings.http_port}", settings
    serve.shutdown()
    ray.kill(ray.get_actor(RUNNER_NAME, namespace=settings.ray_namespace), no_restart=True)
    for i in range(settings.hosts):
        ray.kill(ray.get_actor(f"twinhost-{i}", namespace=settings.ray_namespace), no_restart=True)


def _headers(settings: TwinSettings, role: str, **extra: str) -> dict[str, str]:
    token = local_token(settings, role, subject=f"{role}-telemetry", care_team=("team-1",))
    return {"Authorization": f"Bearer {token}", **extra}


def test_the_host_actors_spans_continue_the_clients_trace(traced_api, receiver):
    url, settings = traced_api
    items = [{"idempotency_key": "IDEM-RAY-CANARY", "day": 0.5, "payload": PHQ9_ITEM9}]
    with httpx.Client(base_url=url, timeout=120) as http:
        created = http.post("/v1/patients", json=PATIENT, headers=_headers(settings, "admin"))
        assert created.status_code == 201, created.text
        pid = created.json()["patient_id"]
        answer = http.post(
            f"/v1/patients/{pid}/observations",
            json={"items": items},
            headers=_headers(
                settings, "clinician", traceparent=f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"
            ),
        )
        assert answer.status_code == 200, answer.text

    def host_side_done(spans: list[Received]) -> bool:
        names = {
            (s.name, s.resource.get("novamind.process")) for s in spans if s.trace_id == TRACE_ID
        }
        return {
            ("POST /v1/patients/{patient_id}/observations", "api"),
            ("TwinHost/ingest", "api"),
            ("TwinHost/ingest", "twinhost"),
            ("twin.kernel", "twinhost"),
            ("event_store.append", "twinhost"),
        } <= names

    spans = receiver.wait_for(host_side_done, timeout_s=90)
    ours = {s.span_id: s for s in spans if s.trace_id == TRACE_ID}

    def one(name: str, process: str, kind: str | None = None) -> Received:
        (found,) = [
            s for s in ours.values()
            if s.name == name and s.resource["novamind.process"] == process
            and (kind is None or s.kind == kind)
        ]  # fmt: skip
        return found

    ingress = one("POST /v1/patients/{patient_id}/observations", "api")
    assert ingress.parent_id == CLIENT_SPAN_ID and ingress.kind == "SPAN_KIND_SERVER"
    sent = one("TwinHost/ingest", "api", "SPAN_KIND_CLIENT")
    received = one("TwinHost/ingest", "twinhost", "SPAN_KIND_SERVER")
    # The actor's span is the replica's call's child: one trace across the two processes.
    assert received.parent_id == sent.span_id
    assert received.resource["process.pid"] != sent.resource["process.pid"]
    assert received.attributes["novamind.host"] == "twinhost-0"
    assert received.resource["service.name"] == "novamind-test"

    def chain(span: Received) -> list[str]:
        names = [span.name]
        while span.parent_id in ours:
            span = ours[span.parent_id]
            names.append(span.name)
        assert span is ingress, names  # every span reaches the request's server span
        return names

    assert chain(sent)[-1] == ingress.name
    kernel = one("twin.kernel", "twinhost")
    assert chain(kernel)[:4] == ["twin.kernel", "twin.flush", "twin.ingest", "TwinHost/ingest"]
    append = one("event_store.append", "twinhost")
    assert chain(append)[:3] == ["event_store.append", "twin.ingest", "TwinHost/ingest"]
    for span in ours.values():
        chain(span)
    # Nothing any process exported names the patient.
    exported = "\n".join(text for s in spans for text in s.texts)
    canaries = [*PATIENT.values(), pid, "IDEM-RAY-CANARY"]
    for canary in canaries:
        if canary != "team-1":
            assert canary not in exported, canary


def _dashboard_series() -> set[str]:
    """Every ``ray_novamind_*`` series name in the dashboard's panel expressions."""
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    return {name for expr in expressions for name in re.findall(r"\bray_novamind_\w+", expr)}


def _scrape() -> dict[str, float]:
    """The node's metrics export port: each ``ray_novamind_*`` sample name with its total."""
    from prometheus_client.parser import text_string_to_metric_families

    (node,) = [n for n in ray.nodes() if n["Alive"]]
    address = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    with urllib.request.urlopen(address, timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ray_novamind_"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def test_every_series_the_dashboard_charts_is_exported_after_real_traffic(traced_api):
    url, settings = traced_api
    charted = _dashboard_series()
    assert len(charted) >= 10, charted  # the dashboard's own panels, read, not listed here
    before = _scrape()
    items = [{"idempotency_key": "m1", "day": 1.0, "payload": PHQ9_ITEM9}]
    again = [{"idempotency_key": "m2", "day": 2.0, "payload": {"type": "phq9", "total": 9}}]
    runtime = TwinRuntime(RayTwinDirectory(settings, build_host_ports, settings.host))
    with httpx.Client(base_url=url, timeout=120) as http:
        pid = http.post(
            "/v1/patients", json={**PATIENT, "mrn": "MRN-M"}, headers=_headers(settings, "admin")
        ).json()["patient_id"]
        clinician = _headers(settings, "clinician")
        ingested = http.post(f"/v1/patients/{pid}/observations", json={"items": items},
                             headers=clinician)  # fmt: skip
        assert [a["rule"] for a in ingested.json()["alerts"]] == ["safety_item9"]
        assert http.get(f"/v1/patients/{pid}/twin", headers=clinician).status_code == 200
        # Passivated (a checkpoint written), then brought back by the next ingest (replayed).
        assert asyncio.run(runtime.passivate(pid)) is True
        back = http.post(f"/v1/patients/{pid}/observations", json={"items": again},
                         headers=clinician)  # fmt: skip
        assert back.status_code == 200, back.text

    def grown(now: dict[str, float]) -> set[str]:
        """The charted series not yet exported, or not grown by this traffic (counters)."""
        missing = {name for name in charted if name not in now}
        for name in charted - missing:
            if name.endswith(("_total", "_bucket")) and now[name] <= before.get(name, 0.0):
                missing.add(name)
        return missing

    deadline = time.monotonic() + 120  # Ray exports metrics every few seconds, not at once
    while missing := grown(_scrape()):
        assert time.monotonic() < deadline, f"not exported: {sorted(missing)}"
        time.sleep(2.0)
