"""The change feed: a patient's events as Server-Sent Events, replayable from ``Last-Event-ID``.

The event log is the feed's source, so replay is exact: the SSE ``id`` is the event's sequence
number, a reconnecting client sends the last one it saw (``Last-Event-ID`` header, or the
``after`` query parameter) and receives every later event, none twice and none missing. With
``follow=true`` the stream stays open and polls the log for new events (comment lines keep
idle connections alive); with ``follow=false`` it ends after the backlog. Each event carries its
twin day and, for a patient with an enrolment, the instant it happened (``effective``, UTC).

Bounds: a caller holds at most ``streams_per_caller`` open streams in one replica (429 beyond),
so one client cannot fill every replica's ``max_ongoing_requests``; the backlog is read in
pages. A following stream re-checks its caller's access (audited) at least every
``stream_recheck_s`` and at the moment an emergency-access grant or the token expires, and
ends when it is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import WithJsonSchema

from deployments.api.access import INT64, Caller, PatientId, Services, grant_ends_at, patient_access
from deployments.api.auth import Principal
from deployments.api.errors import problems
from deployments.api.headers import V1Route
from deployments.api.services import ApiServices
from twin import errors
from twin.domain import codec
from twin.event_log import MAX_SEQ

_LOG = logging.getLogger("novamind.feed")

router = APIRouter(tags=["feed"], responses=problems(), route_class=V1Route)

KEEPALIVE_S = 15.0
#: ``Last-Event-ID`` in the document: a string, as SSE defines it (a cursor in this patient's
#: stream, not an object's id), and optional rather than nullable.
_EVENT_ID = WithJsonSchema({"type": "string", "maxLength": 20, "pattern": r"^[0-9]{1,20}$"})
#: Events read from the log per query (a long backlog is sent page by page).
FEED_PAGE = 500


#: Twin day -> instant on the patient's axis (``None``: a patient without an enrolment).
Instants = Callable[[float], datetime] | None


def _frame(seq: int, day: float, payload: dict[str, object], instants: Instants) -> bytes:
    event: dict[str, object] = {"seq": seq, "day": day, "payload": payload}
    if instants is not None:
        # As FeedEventOut writes an instant: ISO 8601 in UTC with "Z".
        event["effective"] = instants(day).isoformat().replace("+00:00", "Z")
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {seq}\nevent: event\ndata: {data}\n\n".encode()


class _Slot:
    """One of a caller's open streams in this replica; released once, however the stream ends."""

    def __init__(self, open_streams: dict[str, int], subject: str, limit: int) -> None:
        if open_streams.get(subject, 0) >= limit:
            raise errors.ConcurrencyLimitError(
                5, f"at most {limit} open event streams per caller: close one"
            )
        open_streams[subject] = open_streams.get(subject, 0) + 1
        self._open, self._subject, self._held = open_streams, subject, True

    def release(self) -> None:
        if self._held:
            self._held = False
            left = self._open.get(self._subject, 1) - 1
            if left > 0:
                self._open[self._subject] = left
            else:
                self._open.pop(self._subject, None)


async def _recheck_at(svc: ApiServices, who: Principal, patient_id: str) -> float:
    """Wall-clock time of the next access check: a minute on, or when a grant or token ends."""
    ends = await grant_ends_at(svc, who, patient_id)
    return min(time.time() + svc.stream_recheck_s, ends or math.inf, who.expires_at)


async def _stream(
    svc: ApiServices, request: Request, who: Principal, patient_id: str, after: int,
    follow: bool, max_s: float, slot: _Slot, instants: Instants,
) -> AsyncIterator[bytes]:  # fmt: skip
    try:
        started = last_sent = time.monotonic()
        recheck = await _recheck_at(svc, who, patient_id)
        yield b"retry: 2000\n\n"
        while True:
            batch = await svc.events.read(patient_id, after_seq=after, limit=FEED_PAGE)
            for event in batch:
                yield _frame(event.seq, event.day, codec.encode(event.payload), instants)
                after = event.seq
                last_sent = time.monotonic()
            if time.monotonic() - started >= max_s or await request.is_disconnected():
                return
            if time.time() >= recheck:  # also between pages of a long backlog
                if time.time() >= who.expires_at:
                    return  # the token is no longer valid: nothing more, nothing audited
                try:
                    await patient_access(
                        svc, request, who, "events.follow", patient_id, ("clinician", "admin")
                    )
                except (errors.AuthorizationError, errors.NotFoundError):
                    return  # access is gone: the stream ends (the client sees it close)
                recheck = await _recheck_at(svc, who, patient_id)
            if len(batch) == FEED_PAGE:
                continue  # more backlog: the next page at once
            if not follow:
                return
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(svc.feed_poll_s)
    except errors.TwinError as exc:
        # The answer has started: an error can only end the stream (the client reconnects
        # with Last-Event-ID), never become a problem response.
        _LOG.warning("event stream ended early: %s", type(exc).__name__)
    finally:
        slot.release()


@router.get(
    "/v1/patients/{patient_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE stream"},
        **problems(404, 410),
    },
)
async def event_feed(
    patient_id: PatientId,
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, json_schema_extra=INT64)] = 0,
    follow: bool = False,
    max_s: Annotated[float, Query(gt=0, le=3600)] = 300.0,
    last_event_id: Annotated[
        str | None, _EVENT_ID, Header(max_length=20, pattern=r"^[0-9]{1,20}$")
    ] = None,
) -> StreamingResponse:
    """A patient's events after ``Last-Event-ID`` (or ``after``) as ``text/event-stream``."""
    await patient_access(svc, request, who, "events.read", patient_id, ("clinician", "admin"))
    start = after
    if last_event_id is not None:
        if int(last_event_id) > MAX_SEQ:
            raise errors.ObservationRangeError("Last-Event-ID", "<invalid>", "an event sequence")
        start = max(start, int(last_event_id))
    instants = await svc.app.event_instants(patient_id)
    slot = _Slot(svc.open_streams, who.subject, svc.streams_per_caller)
    body = _stream(svc, request, who, patient_id, start, follow, max_s, slot, instants)
    # A stream never iterated (the client left before the headers went out) is never run:
    # its slot is released when the generator is collected.
    weakref.finalize(body, slot.release)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
