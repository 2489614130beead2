"""Request metrics and JSON access logs, with no PHI in either.

Labels are the route *template* (``/v1/patients/{patient_id}/twin``), the method, the status
and the caller's role, never a path with an id in it, a subject or a body value. Log lines are
JSON objects (python-json-logger) with the same fields plus the request id and latency.

Two metric back ends with one interface: :class:`RayMetrics` (``ray.util.metrics``; Ray exports
them to Prometheus from every node) inside the Serve application, and
:class:`PrometheusMetrics` (prometheus-client) for the plain-ASGI mode and tests.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol

from pythonjsonlogger.json import JsonFormatter

__all__ = ["ACCESS_LOG", "Metrics", "PrometheusMetrics", "RayMetrics", "configure_json_logging"]

ACCESS_LOG = logging.getLogger("novamind.access")
_LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
_FALLBACKS = "Requests limited on the replica's own budget: the shared one (Redis) was unreachable"
_ANCHOR_FAILURES = "Audit-chain anchors the service failed to write (retried at the next N entries)"
_ANCHOR_AGE = (
    "Age of the latest audit-chain anchor at this replica's latest audit write, seconds "
    "(entries newer than it are protected by the database's access control alone)"
)


class Metrics(Protocol):
    """What the API records."""

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One finished request."""
        ...

    def ingested(self, events: int, alerts: list[str]) -> None:
        """Events acknowledged by an ingest and the alert rules it fired."""
        ...

    def rate_limit_fallback(self) -> None:
        """One request counted on the process's own budget: the shared one was unreachable."""
        ...

    def audit_anchor_failed(self) -> None:
        """One anchor of the audit chain that could not be written in the background."""
        ...

    def audit_anchor_age(self, seconds: float) -> None:
        """The latest anchor's age, seconds, as this process knows it."""
        ...


class RayMetrics:
    """``ray.util.metrics`` (created in the replica process; needs a connected Ray worker)."""

    def __init__(self) -> None:
        from ray.util import metrics  # the platform layer, only inside Serve

        tags = ("route", "method", "status")
        self._requests = metrics.Counter(
            "novamind_http_requests", "HTTP requests by route template and status", tags
        )
        self._latency = metrics.Histogram(
            "novamind_http_request_latency_ms",
            "HTTP request latency, ms",
            boundaries=_LATENCY_BOUNDARIES_MS,
            tag_keys=tags,
        )
        self._events = metrics.Counter("novamind_events_ingested", "Acknowledged events")
        self._alerts = metrics.Counter("novamind_alerts_raised", "Alerts fired", ("rule",))
        self._fallbacks = metrics.Counter("novamind_rate_limit_fallbacks", _FALLBACKS)
        self._anchor_failures = metrics.Counter("novamind_audit_anchor_failures", _ANCHOR_FAILURES)
        self._anchor_age = metrics.Gauge("novamind_audit_anchor_age_s", _ANCHOR_AGE)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time a request."""
        tags = {"route": route, "method": method, "status": str(status)}
        self._requests.inc(1.0, tags)
        self._latency.observe(seconds * 1000.0, tags)

    def ingested(self, events: int, alerts: list[str]) -> None:
        """Count acknowledged events and fired alerts."""
        if events:
            self._events.inc(float(events))
        for rule in alerts:
            self._alerts.inc(1.0, {"rule": rule})

    def rate_limit_fallback(self) -> None:
        """Count a request limited locally because Redis was unreachable."""
        self._fallbacks.inc(1.0)

    def audit_anchor_failed(self) -> None:
        """Count an audit anchor not written."""
        self._anchor_failures.inc(1.0)

    def audit_anchor_age(self, seconds: float) -> None:
        """Set the latest anchor's age."""
        self._anchor_age.set(seconds)


class PrometheusMetrics:
    """prometheus-client metrics in their own registry (plain ASGI mode and tests)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        tags = ("route", "method", "status")
        self._requests = Counter(
            "novamind_http_requests", "HTTP requests", tags, registry=self.registry
        )
        self._latency = Histogram(
            "novamind_http_request_latency_ms",
            "HTTP request latency, ms",
            tags,
            buckets=_LATENCY_BOUNDARIES_MS,
            registry=self.registry,
        )
        self._events = Counter(
            "novamind_events_ingested", "Acknowledged events", registry=self.registry
        )
        self._alerts = Counter(
            "novamind_alerts_raised", "Alerts fired", ("rule",), registry=self.registry
        )
        self._fallbacks = Counter(
            "novamind_rate_limit_fallbacks", _FALLBACKS, registry=self.registry
        )
        self._anchor_failures = Counter(
            "novamind_audit_anchor_failures", _ANCHOR_FAILURES, registry=self.registry
        )
        self._anchor_age = Gauge("novamind_audit_anchor_age_s", _ANCHOR_AGE, registry=self.registry)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time a request."""
        self._requests.labels(route, method, str(status)).inc()
        self._latency.labels(route, method, str(status)).observe(seconds * 1000.0)

    def ingested(self, events: int, alerts: list[str]) -> None:
        """Count acknowledged events and fired alerts."""
        self._events.inc(events)
        for rule in alerts:
            self._alerts.labels(rule).inc()

    def rate_limit_fallback(self) -> None:
        """Count a request limited locally because Redis was unreachable."""
        self._fallbacks.inc()

    def audit_anchor_failed(self) -> None:
        """Count an audit anchor not written."""
        self._anchor_failures.inc()

    def audit_anchor_age(self, seconds: float) -> None:
        """Set the latest anchor's age."""
        self._anchor_age.set(seconds)

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send ``novamind.*`` loggers to stderr as one JSON object per line (idempotent)."""
    root = logging.getLogger("novamind")
    if any(getattr(h, "_novamind", False) for h in root.handlers):
        return
    # The process's own stderr: in a Serve replica in throughput-optimised mode, sys.stderr is
    # Serve's stand-in that makes each write a record of Serve's logger, with a stack walk per
    # line (about 4% of a replica's Python time under load); these lines are JSON already.
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(
        JsonFormatter("{asctime}{levelname}{name}{message}", style="{", timestamp=True)
    )
    handler._novamind = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
