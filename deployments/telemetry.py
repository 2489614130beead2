"""Trace export for one process, and the spans of every store call.

Tracing is off unless ``otel_exporter_otlp_endpoint`` is set (:class:`TelemetrySettings`):
then :func:`configure_tracing` installs the OpenTelemetry SDK's tracer provider in the process
that calls it (the API process or Serve replica, and each twin host actor, which opens its
stores through :func:`deployments.host_ports.build_host_ports`) with a batching OTLP/HTTP
exporter. Without it nothing is installed: the spans of ``twin``, ``actors`` and the API are
the OpenTelemetry API's no-ops, and :func:`traced` hands the stores back unwrapped.

:func:`traced` wraps a store at its port: every coroutine method the port's Protocol declares
runs in a CLIENT span ``<store>.<method>`` (``event_store.append``, ``checkpoints.put``, ...)
labelled with the adapter's backend and nothing else (no argument, no result). It is applied
once, where the adapters are chosen (:mod:`deployments.stores`), so no adapter knows about it.

Sampling is parent-based: a process follows its caller's decision (the API a client's sampled
``traceparent``, a twin host the API's), and starts ``otel_sample_ratio`` of new traces.

.. rubric:: Why our own wiring, not Ray's tracing hook

Ray's ``ray.util.tracing`` (the ``_tracing_startup_hook``) must be given when the cluster
starts, wraps every task and actor method of the cluster, and is marked experimental; the W3C
``traceparent`` that :mod:`actors.runtime` passes with each twin host call works on any cluster,
for the calls we choose, with the span names and attributes we allow.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from opentelemetry import trace

from twin.service import tracing
from twin.settings import TwinSettings

__all__ = ["TRACES_PATH", "configure_tracing", "traced", "tracing_enabled"]

#: Where an OTLP/HTTP receiver takes spans, below its base URL.
TRACES_PATH = "/v1/traces"

T = TypeVar("T")
_LOCK = threading.Lock()


def tracing_enabled() -> bool:
    """Whether this process has a real tracer provider (ours, or one a test installed)."""
    return not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )


def configure_tracing(settings: TwinSettings, *, process: str) -> bool:
    """Install the SDK tracer provider when an OTLP endpoint is configured (once per process).

    Args:
        settings: The telemetry settings (endpoint, service name, sample ratio).
        process: What this process is (``api``, ``twinhost``): the ``novamind.process`` resource
            attribute, which tells the processes of one trace apart.

    Returns:
        Whether this process traces (also when a provider was installed before).
    """
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint is None:
        return tracing_enabled()
    with _LOCK:
        if tracing_enabled():
            return True
        # The SDK and the exporter load only in a process that exports.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        resource = Resource.create(
            {
                "service.name": settings.otel_service_name,
                "deployment.environment.name": settings.environment,
                "novamind.process": process,
                "process.pid": os.getpid(),
            }
        )
        # A caller's `traceparent` flag does not decide: the ratio applies to remote parents
        # too (a client marking every request sampled would otherwise export them all). The
        # ratio sampler decides by trace id, so every process of one trace decides alike.
        ratio = TraceIdRatioBased(settings.otel_sample_ratio)
        provider = TracerProvider(
            sampler=ParentBased(ratio, remote_parent_sampled=ratio),
            resource=resource,
        )
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    return True


def _backend(adapter: object) -> str:
    """The adapter's backend, from its package (``storage.postgres...`` → ``postgres``)."""
    parts = type(adapter).__module__.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "storage" else parts[0]


class _TracedPort:
    """A store whose Protocol methods each run in a span (see :func:`traced`)."""

    def __init__(self, inner: object, protocol: type, store: str) -> None:
        self._inner = inner
        attributes = {"novamind.store": store, "novamind.backend": _backend(inner)}
        self._methods: dict[str, Callable[..., Awaitable[Any]]] = {}
        for name, declared in vars(protocol).items():
            method = getattr(inner, name, None)
            if name.startswith("_") or not inspect.iscoroutinefunction(declared):
                continue
            if method is not None and inspect.iscoroutinefunction(method):
                self._methods[name] = _in_span(f"{store}.{name}", attributes, method)

    def __getattr__(self, name: str) -> Any:
        wrapped = self._methods.get(name)
        return wrapped if wrapped is not None else getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"traced({self._inner!r})"


def _in_span(
    name: str, attributes: tracing.Attributes, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        with tracing.span(name, kind=tracing.SpanKind.CLIENT, attributes=attributes):
            return await method(*args, **kwargs)

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def traced(store: T, protocol: type, name: str) -> T:
    """``store`` with a span around each call of ``protocol``'s methods, when tracing is on.

    Args:
        store: An adapter of ``protocol``.
        protocol: The port (``ports.EventStore``, ...): which methods get spans.
        name: The store's name in span names (``event_store``).

    Returns:
        ``store`` itself when this process does not trace; else a wrapper that behaves the same.
    """
    if not tracing_enabled():
        return store
    return cast(T, _TracedPort(store, protocol, name))
