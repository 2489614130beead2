"""Events as JSON-compatible dicts, for the event store and the wire.

``encode(payload)`` gives ``{"type": "phq9", "total": 14, "items": null}``; ``decode`` rebuilds
the payload through its validating constructor, so a stored or received value is checked the
same way as one built in code. Unknown types and fields are refused, never ignored.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
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


def decode(data: dict[str, Any], *, stored: bool = False) -> events.Payload:
    """Rebuild and validate a payload from :func:`encode`'s form.

    Args:
        data: The encoded payload.
        stored: The payload comes from the event log: it was validated by the rules of the day
            it was appended and its integrity is authenticated by its seal, so it is rebuilt
            without being judged again. A rule tightened later (a drug no longer offered, a
            narrower range) must not make a stored log unreadable; the twin decides what it can
            apply (``twin.assimilation.kernel``).

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
    if stored:
        return _rebuilt(cls, kind, kwargs)
    try:
        payload: events.Payload = cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise errors.ObservationRangeError(kind, "incomplete", str(exc)) from None
    return payload


def _rebuilt(cls: type[Any], kind: str, values: dict[str, Any]) -> events.Payload:
    """An instance of ``cls`` with ``values`` (defaults for absent fields), not re-validated."""
    payload = object.__new__(cls)
    for field in fields(cls):
        if field.name in values:
            value = values[field.name]
        elif field.default is not MISSING:
            value = field.default
        else:
            raise errors.ObservationRangeError(kind, "incomplete", f"{field.name} is missing")
        object.__setattr__(payload, field.name, value)  # frozen dataclasses: set once, here
    built: events.Payload = payload
    return built
