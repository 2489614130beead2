"""Tracing's pieces: the twin's spans, the request middleware, store wrapping, the settings.

What a whole request gives is in ``tests/integration/test_tracing.py`` (in process) and
``tests/ray/test_telemetry.py`` (across Ray processes, exported over OTLP/HTTP).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from actors.host_metrics import host_label
from deployments import ray_env, telemetry
from deployments.api.tracing import TraceRequests
from tests.spans import capturing, texts
from twin import ports
from twin.service import tracing
from twin.settings import TwinSettings
from twin.testing.fakes import MemoryEventStore

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
#: What twin may import of OpenTelemetry: the API (never the SDK, exporters or wire format).
API_MODULES = {
    "opentelemetry",
    "opentelemetry.context",
    "opentelemetry.trace",
    "opentelemetry.trace.propagation.tracecontext",
}


def test_twin_traces_through_the_opentelemetry_api_only():
    # import-linter sees external packages whole, so the API/SDK split is checked here.
    seen: dict[str, set[str]] = {}
    for path in (ROOT / "twin").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "opentelemetry":
                    seen.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert set(seen) <= API_MODULES, seen
    # Only the application layer traces (the SDK and the model never load it).
    assert {p for paths in seen.values() for p in paths} == {"twin/service/tracing.py"}


async def test_a_failed_span_says_which_exception_and_nothing_of_its_message():
    with capturing() as exporter:
        with pytest.raises(KeyError), tracing.span("twin.summary"):
            raise KeyError("Zelda Canarynova, MRN-ZZ-CANARY")
        (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and not span.status.description
    assert span.attributes == {"error.type": "KeyError"}
    assert not span.events
    assert not any("Canary" in text for text in texts(span))


def test_a_carrier_holds_the_traceparent_and_nothing_else():
    with capturing():
        with tracing.span("TwinHost/ingest", kind=SpanKind.CLIENT) as span:
            carried = tracing.carrier()
        context = span.get_span_context()
    flags = f"{int(context.trace_flags):02x}"  # sampled (and, SDK permitting, a random id)
    assert carried == {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"}
    assert context.trace_flags.sampled
    assert tracing.carrier() == {}  # outside any span: nothing to continue
    with capturing() as exporter:
        with tracing.span("TwinHost/ingest", parent=tracing.context_from(carried)):
            pass
        (received,) = exporter.get_finished_spans()
    assert received.context.trace_id == context.trace_id
    assert received.parent is not None and received.parent.span_id == context.span_id


@pytest.mark.parametrize("value", ["", "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", None])
def test_a_missing_or_malformed_traceparent_starts_a_trace_of_its_own(value):
    with capturing() as exporter:
        received = {} if value is None else {"traceparent": value}
        with tracing.span("TwinHost/summary", parent=tracing.context_from(received)):
            pass
        (span,) = exporter.get_finished_spans()
    assert span.parent is None


def _app() -> TraceRequests:
    async def fine(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok", headers={"X-Request-ID": "r-1"})

    async def unavailable(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("down", status_code=503)

    async def broken(request):  # type: ignore[no-untyped-def]
        raise RuntimeError("MRN-ZZ-CANARY could not be read")

    routes = [
        Route("/v1/patients/{patient_id}/twin", fine),
        Route("/v1/down", unavailable),
        Route("/v1/broken", broken),
    ]
    return TraceRequests(Starlette(routes=routes))


async def test_the_request_span_continues_the_callers_trace_under_the_route_template():
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        with capturing() as exporter:
            await http.get(
                "/v1/patients/pt_canary/twin?mrn=MRN-ZZ-CANARY",
                headers={
                    "traceparent": f"00-{TRACE_ID}-{PARENT}-01",
                    "tracestate": "canary=pt_canary",
                    "baggage": "patient=pt_canary",
                    "User-Agent": "canary-agent",
                },
            )
            (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /v1/patients/{patient_id}/twin"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/v1/patients/{patient_id}/twin",
        "http.response.status_code": 200,
        "novamind.request_id": "r-1",
    }
    # Neither the path, the query, the caller's trace state nor its agent is exported.
    assert not any("canary" in text.lower() for text in texts(span))


async def test_a_5xx_or_an_exception_fails_the_request_span_by_status_or_class_only():
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        with capturing() as exporter:
            assert (await http.get("/v1/down")).status_code == 503
            await http.get("/v1/broken")
            await http.request("BREW", "/v1/pot")
            down, broken, brew = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    assert down.status.status_code is StatusCode.ERROR and down.attributes is not None
    assert down.attributes["error.type"] == "503"
    assert broken.status.status_code is StatusCode.ERROR and broken.attributes is not None
    assert broken.attributes["error.type"] == "RuntimeError"
    assert not broken.status.description and not broken.events
    assert "MRN" not in "".join(texts(broken))
    # An unknown method is one label, and an unmatched path leaves the method alone.
    assert brew.name == "_OTHER" and "BREW" not in "".join(texts(brew))


async def test_a_store_is_wrapped_at_its_port_methods_only():
    with capturing() as exporter:
        inner = MemoryEventStore()
        store = telemetry.traced(inner, ports.EventStore, "event_store")
        assert isinstance(store, ports.EventStore)  # still the port
        await store.append("pt_canary", [ports.NewEvent("k", 0.0, _phq9())])
        assert await store.last_seq("pt_canary") == 1
        assert store.logs is inner.logs  # not a method of the port: passed through
        spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["event_store.append", "event_store.last_seq"]
    assert all(s.kind is SpanKind.CLIENT for s in spans)
    assert dict(spans[0].attributes or {}) == {
        "novamind.store": "event_store",
        "novamind.backend": "twin",
    }
    assert not any("pt_canary" in text for s in spans for text in texts(s))


async def test_a_flush_is_in_the_openers_trace_and_links_every_call_it_serves():
    import asyncio

    from twin.service.host import HostPorts, TwinHost
    from twin.settings import HostSettings
    from twin.testing import fakes

    host = TwinHost(
        HostPorts(fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), fakes.PlainSealer()),
        settings=HostSettings(particles=100),
    )

    async def ingest(patient: str) -> None:
        with tracing.span(f"request {patient}"):
            await host.ingest(patient, [ports.NewEvent("k", 0.5, _phq9())])

    with capturing() as exporter:
        # Both calls join one flush: the first opens it, the second arrives before it runs.
        await asyncio.gather(ingest("a"), ingest("b"))
        spans = exporter.get_finished_spans()
    (flush,) = [s for s in spans if s.name == "twin.flush"]
    assert flush.attributes == {"novamind.twins": 2}
    opener, other = (next(s for s in spans if s.name == f"request {p}") for p in "ab")
    assert flush.context.trace_id == opener.context.trace_id
    assert [link.context.span_id for link in flush.links] == [
        next(
            s for s in spans if s.name == "twin.ingest" and s.parent == other.context
        ).context.span_id
    ]
    (kernel,) = [s for s in spans if s.name == "twin.kernel"]
    assert kernel.parent is not None and kernel.parent.span_id == flush.context.span_id
    assert kernel.attributes == {"novamind.twins": 2, "novamind.events": 2}


def _phq9():  # type: ignore[no-untyped-def]
    from twin.domain import events

    return events.Phq9(12)


def _fresh_python(code: str, **env: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter (a process's tracer provider is set once for good)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_tracing_is_off_by_default_no_provider_and_no_wrapped_store(tmp_path):
    found = _fresh_python(
        "import asyncio, json, contextlib\n"
        "from opentelemetry import trace\n"
        "from deployments import stores, telemetry\n"
        "from twin.settings import TwinSettings\n"
        f"s = TwinSettings(data_dir={str(tmp_path)!r}, research_key='r' * 48)\n"
        "async def main():\n"
        "    async with contextlib.AsyncExitStack() as stack:\n"
        "        opened = await stores.open_stores(s, stack)\n"
        "        return type(opened.events).__name__\n"
        "on = telemetry.configure_tracing(s, process='api')\n"
        "print(json.dumps({'on': on, 'events': asyncio.run(main()),\n"
        "    'provider': type(trace.get_tracer_provider()).__name__}))\n"
    )
    assert found == {"on": False, "events": "SqliteEventStore", "provider": "ProxyTracerProvider"}


def test_an_endpoint_installs_the_batching_otlp_exporter_with_the_settings(tmp_path):
    found = _fresh_python(
        "import json\n"
        "from opentelemetry import trace\n"
        "from deployments import telemetry\n"
        "from twin.settings import TwinSettings\n"
        f"s = TwinSettings(data_dir={str(tmp_path)!r}, environment='local',\n"
        "    otel_exporter_otlp_endpoint='http://collector.example:4318/',\n"
        "    otel_service_name='novamind-staging', otel_sample_ratio=0.25)\n"
        "assert telemetry.configure_tracing(s, process='twinhost')\n"
        "assert telemetry.configure_tracing(s, process='api')  # once per process\n"
        "p = trace.get_tracer_provider()\n"
        "(processor,) = p._active_span_processor._span_processors\n"
        "exporter = processor._batch_processor._exporter\n"
        "print(json.dumps({'sampler': p.sampler.get_description(),\n"
        "    'resource': {k: v for k, v in p.resource.attributes.items()\n"
        "                 if k.split('.')[0] not in ('telemetry', 'process')\n"
        "                 and k != 'service.instance.id'},\n"
        "    'endpoint': exporter._endpoint, 'processor': type(processor).__name__}))\n",
    )
    assert found == {
        "sampler": "ParentBased{root:TraceIdRatioBased{0.25},"
        "remoteParentSampled:TraceIdRatioBased{0.25},"
        "remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,"
        "localParentNotSampled:AlwaysOffSampler}",
        "resource": {
            "service.name": "novamind-staging",
            "deployment.environment.name": "local",
            "novamind.process": "twinhost",
        },
        "endpoint": "http://collector.example:4318/v1/traces",
        "processor": "BatchSpanProcessor",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("otel_exporter_otlp_endpoint", "http://user:secret@collector:4318"),
        ("otel_exporter_otlp_endpoint", "http://collector:4318/?token=abc"),
        ("otel_exporter_otlp_endpoint", "grpc://collector:4317"),
        ("otel_exporter_otlp_endpoint", "http://" + "c" * 600),
        ("otel_service_name", ""),
        ("otel_service_name", "novamind prod"),
        ("otel_sample_ratio", -0.1),
        ("otel_sample_ratio", 1.5),
    ],
)
def test_trace_settings_are_bounded_and_carry_no_credential(field, value):
    with pytest.raises(ValidationError, match=field):
        TwinSettings(**{field: value})


def test_ray_workers_receive_the_trace_settings(tmp_path):
    settings = TwinSettings(
        data_dir=tmp_path,
        otel_exporter_otlp_endpoint="http://otel-collector.monitoring:4318",
        otel_sample_ratio=0.1,
    )
    env = ray_env.settings_env(settings)
    assert env["NOVAMIND_OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    assert env["NOVAMIND_OTEL_SAMPLE_RATIO"] == "0.1"
    assert env["NOVAMIND_OTEL_SERVICE_NAME"] == "novamind"
    # A host actor builds its settings from the same values (TwinSettings.for_workers).
    host = TwinSettings(**settings.for_workers())
    assert host.otel_exporter_otlp_endpoint == settings.otel_exporter_otlp_endpoint


def test_a_dedicated_hosts_name_never_reaches_a_label():
    assert host_label("twinhost-3") == "twinhost-3"
    # Named after a digest of its patient's id: one label for all of them.
    assert host_label("twin-0123456789abcdef01234567") == "dedicated"
