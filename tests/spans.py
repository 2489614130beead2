"""Spans of this test process in the SDK's InMemorySpanExporter.

A process has one tracer provider, for good (the OpenTelemetry API sets it once), so
:func:`install` (or the first :func:`capturing`) installs an SDK provider whose sampler keeps
spans only while a test captures: elsewhere the process behaves as one that traces but samples
nothing (the stores are wrapped at their ports, every span is a non-recording no-op).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

_EXPORTER = InMemorySpanExporter()
_LOCK = threading.Lock()
_installed = False
_capturing = False


class _WhileCapturing(Sampler):
    """Records every span while a test captures, none otherwise."""

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        # A sampler hands the span its attributes (the SDK's own samplers pass them on).
        if not _capturing:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "WhileCapturing"


def install() -> None:
    """Install the capturing provider (before the app opens its stores: they are wrapped then)."""
    global _installed
    with _LOCK:
        if _installed:
            return
        current = trace.get_tracer_provider()
        if not isinstance(current, trace.ProxyTracerProvider):
            raise RuntimeError(f"a tracer provider is already installed: {current!r}")
        provider = TracerProvider(
            sampler=_WhileCapturing(),
            resource=Resource.create({"service.name": "novamind-test", "novamind.process": "api"}),
        )
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
        _installed = True


@contextmanager
def capturing() -> Iterator[InMemorySpanExporter]:
    """Keep every span ended inside the block (the exporter is emptied first)."""
    global _capturing
    install()
    _EXPORTER.clear()
    _capturing = True
    try:
        yield _EXPORTER
    finally:
        _capturing = False


def tree(spans: Sequence[ReadableSpan]) -> dict[int | None, list[ReadableSpan]]:
    """Children by parent span id (``None``: spans without a parent), in start order."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)
    return children


def texts(span: ReadableSpan) -> list[str]:
    """Every text a span exports: name, attributes, events, links, status, resource."""
    out = [span.name, str(span.status.description or ""), str(span.context.trace_state)]
    for attributes in (
        span.attributes,
        span.resource.attributes,
        *(e.attributes for e in span.events),
        *(link.attributes for link in span.links),
    ):
        for key, value in (attributes or {}).items():
            out += [key, str(value)]
    out += [e.name for e in span.events]
    return out
