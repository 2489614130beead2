"""Spans of the twin operations, through the OpenTelemetry *API* only.

The API is vendor-neutral and does nothing until a process installs an SDK tracer provider:
the composition root does that when tracing is configured (``deployments.telemetry``), never
this package. Without it every span here is a non-recording no-op.

No span may carry protected health information. Names are fixed strings (an operation, a store
method, a route template), and attributes are counts, flags and fixed labels: never a patient
id, a name, a date, a value, an idempotency key or free text. Exceptions are not recorded
either: their messages may quote the input, so a failed span carries only the exception's
class (``error.type``) and an error status without a description.

Context crosses processes as a W3C ``traceparent`` only (:func:`carrier`, :func:`context_from`):
no ``tracestate`` and no baggage, which are opaque text a caller chooses and which the SDK would
export with every span.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "TRACEPARENT",
    "Attributes",
    "SpanContext",
    "SpanKind",
    "annotate",
    "carrier",
    "context_from",
    "current_span_context",
    "mark_failed",
    "span",
    "traced",
]

#: The W3C Trace Context header (and carrier key) that crosses processes.
TRACEPARENT = "traceparent"

#: Span attributes: counts, flags and fixed labels only (see the module docstring).
Attributes = Mapping[str, str | bool | int | float]
SpanKind = trace.SpanKind
SpanContext = trace.SpanContext

P = ParamSpec("P")
R = TypeVar("R")

_TRACER = trace.get_tracer("novamind")
_PROPAGATOR = TraceContextTextMapPropagator()


@contextmanager
def span(
    name: str,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Attributes | None = None,
    parent: otel_context.Context | None = None,
    links: Sequence[SpanContext] = (),
) -> Iterator[trace.Span]:
    """A span around the block, current inside it; an exception marks it failed by class only.

    Args:
        name: A fixed name (never built from a request's values).
        kind: SERVER where a call is received, CLIENT where one is sent, else INTERNAL.
        attributes: Counts, flags and fixed labels (see the module docstring).
        parent: The context to continue (a received ``traceparent``); default the current one.
        links: Other spans this one works for (a flush that serves many callers).
    """
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # No SDK in this process (tracing off): skip the API's no-op span and its context
        # switch, a few microseconds each.
        yield trace.INVALID_SPAN
        return
    with _TRACER.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=dict(attributes) if attributes else None,
        links=[trace.Link(c) for c in links if c.is_valid],
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_failed(current, type(exc).__qualname__)
            raise


def mark_failed(failed: trace.Span, error_type: str) -> None:
    """Mark a span failed, saying only what failed (an exception class, a status code).

    The status has no description: an exception's message may quote the input.
    """
    failed.set_attribute("error.type", error_type)
    failed.set_status(trace.Status(trace.StatusCode.ERROR))


def current_span_context() -> SpanContext:
    """The current span's context (invalid outside any span)."""
    return trace.get_current_span().get_span_context()


def carrier() -> dict[str, str]:
    """The current context as ``{"traceparent": ...}`` (empty when there is no valid span)."""
    out: dict[str, str] = {}
    _PROPAGATOR.inject(out)
    return {TRACEPARENT: out[TRACEPARENT]} if TRACEPARENT in out else {}


def context_from(received: Mapping[str, str] | None) -> otel_context.Context:
    """The context a received carrier continues; an empty or malformed one starts a new trace.

    Only ``traceparent`` is read (a malformed value is ignored, as W3C Trace Context asks).
    """
    value = (received or {}).get(TRACEPARENT)
    if not isinstance(value, str):
        return otel_context.Context()
    return _PROPAGATOR.extract({TRACEPARENT: value}, context=otel_context.Context())


def traced(
    name: str, *, kind: trace.SpanKind = trace.SpanKind.INTERNAL
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorate a coroutine function so that each call runs in a span called ``name``."""

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(function)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            with span(name, kind=kind):
                return await function(*args, **kwargs)

        return call

    return decorate


def annotate(attributes: Attributes) -> None:
    """Add counts, flags or fixed labels to the current span (nothing outside a span)."""
    trace.get_current_span().set_attributes(dict(attributes))
