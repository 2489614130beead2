"""Twin-host metrics through ``ray.util.metrics`` (Ray exports them to Prometheus).

Per host process: active twins (gauge), activations, passivations, applied and replayed events,
checkpoints written and failed (counters, from the host's own counters), and the ingest
acknowledgement latency (append + apply, the assimilation lag a caller sees). Tags carry the
host's name only (:func:`host_label`), never a patient.
"""

from __future__ import annotations

from dataclasses import asdict

from ray.util import metrics

from twin.service.host import HostStats

__all__ = ["HostMetrics", "host_label"]

_COUNTERS = {
    "activations": "Twins activated (checkpoint + replay)",
    "passivations": "Twins checkpointed and dropped from memory",
    "applied_events": "Events applied to twins",
    "rejected_events": "Stored events a twin could not apply (e.g. a dose without a prescription)",
    "replayed_events": "Events replayed on activation",
    "checkpoints_written": "Checkpoints written",
    "checkpoint_failures": "Checkpoints that could not be written (a full disk, a store down)",
}
_LATENCY_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def host_label(name: str) -> str:
    """A host's actor name as metrics and spans show it: ``dedicated`` for a patient's own host.

    A dedicated host is named after a digest of its patient's id (``twin-<digest>``), which
    would follow the patient across series and traces; the shared hosts' names
    (``twinhost-3``) are no one's.
    """
    return name if name.startswith("twinhost-") else "dedicated"


class HostMetrics:
    """Records one host's metrics (create inside the actor process)."""

    def __init__(self, host: str) -> None:
        self._tags = {"host": host}
        self._active = metrics.Gauge("novamind_twins_active", "Active twins", ("host",))
        self._counters = {
            name: metrics.Counter(f"novamind_twin_{name}", text, ("host",))
            for name, text in _COUNTERS.items()
        }
        self._latency = metrics.Histogram(
            "novamind_ingest_ack_latency_ms",
            "Ingest append + apply latency, ms",
            boundaries=_LATENCY_MS,
            tag_keys=("host",),
        )
        self._last = HostStats()

    def observe(self, stats: HostStats, active: int, ingest_s: float | None = None) -> None:
        """Publish the counters' increase since the last call, the gauge, and a latency."""
        now, before = asdict(stats), asdict(self._last)
        for name, counter in self._counters.items():
            delta = now[name] - before[name]
            if delta > 0:
                counter.inc(float(delta), self._tags)
        self._last = HostStats(**now)
        self._active.set(float(active), self._tags)
        if ingest_s is not None:
            self._latency.observe(ingest_s * 1000.0, self._tags)
