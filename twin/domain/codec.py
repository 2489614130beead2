"""Events as JSON-compatible dicts, for the event store and the wire.

``encode(payload)`` gives ``{"type": "phq9", "total": 14, "items": null}``; ``decode`` rebuilds
the payload through its validating constructor, so a stored or received value is checked the
same way as one built in code. Unknown types and fields are refused, never ignored.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from twin import errors
from twin.domain import events

__all__ = ["PAYLOAD_TYPES", "decode", "encode"]

#: Wire name -> payload class.
PAYLOAD_TYPES: dict[str, type[Any]] = {
    "phq9": events.Phq9,
    "phq9_item9": events.Phq9Item9,
    "gad7": events.Gad7,
    "ema_affect": events.EmaAffect,
    "sleep_duration": events.SleepDuration,
    "steps": events.Steps,
    "resting_hr": events.RestingHeartRate,
    "ln_rmssd": events.LnRmssd,
    "prescription": events.Prescription,
    "dose_taken": events.DoseTaken,
    "therapy_session": events.TherapySession,
    "care_status": events.CareStatus,
    "covariates": events.Covariates,
}
_NAMES = {cls: name for name, cls in PAYLOAD_TYPES.items()}
# Field names per payload class, read once: ``dataclasses.fields`` rebuilds its tuple on every
# call, which was a third of encoding and decoding (bulk ingest does both per event).
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in PAYLOAD_TYPES.values()
}


def encode(payload: events.Payload) -> dict[str, Any]:
    """A payload as a JSON-compatible dict with a ``type`` field."""
    out: dict[str, Any] = {"type": _NAMES[type(payload)]}
    for name in _FIELDS[type(payload)]:
        value = getattr(payload, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def decode(data: dict[str, Any]) -> events.Payload:
    """Rebuild and validate a payload from :func:`encode`'s form.

    Raises:
        ObservationRangeError: Unknown type, unknown or missing fields, or invalid values.
    """
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in PAYLOAD_TYPES:
        raise errors.ObservationRangeError("type", kind, f"one of {', '.join(PAYLOAD_TYPES)}")
    cls = PAYLOAD_TYPES[kind]
    extra = set(data).difference(_FIELDS[cls], ("type",))
    if extra:
        raise errors.ObservationRangeError(f"{kind}.{sorted(extra)[0]}", "present", "no such field")
    kwargs = {k: v for k, v in data.items() if k != "type"}
    if isinstance(kwargs.get("items"), list):
        kwargs["items"] = tuple(kwargs["items"])
    try:
        payload: events.Payload = cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise errors.ObservationRangeError(kind, "incomplete", str(exc)) from None
    return payload
