"""The change feed: a patient's events as Server-Sent Events, replayable from ``Last-Event-ID``.

The event log is the feed's source, so replay is exact: the SSE ``id`` is the event's sequence
number, a reconnecting client sends the last one it saw (``Last-Event-ID`` header, or the
``after`` query parameter) and receives every later event, none twice and none missing. With
``follow=true`` the stream stays open and polls the log for new events (comment lines keep
idle connections alive); with ``follow=false`` it ends after the backlog.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from deployments.api.access import Caller, PatientId, Services, patient_access
from deployments.api.errors import PROBLEMS
from deployments.api.services import ApiServices
from twin import errors
from twin.domain import codec
from twin.ports import MAX_SEQ

router = APIRouter(tags=["feed"], responses=PROBLEMS)

KEEPALIVE_S = 15.0


def _frame(seq: int, day: float, payload: dict[str, object]) -> bytes:
    data = json.dumps({"seq": seq, "day": day, "payload": payload}, separators=(",", ":"))
    return f"id: {seq}\nevent: event\ndata: {data}\n\n".encode()


async def _stream(
    svc: ApiServices, request: Request, patient_id: str, after: int, follow: bool, max_s: float
) -> AsyncIterator[bytes]:
    started = last_sent = time.monotonic()
    yield b"retry: 2000\n\n"
    while True:
        batch = await svc.events.read(patient_id, after_seq=after)
        for event in batch:
            yield _frame(event.seq, event.day, codec.encode(event.payload))
            after = event.seq
            last_sent = time.monotonic()
        if not follow or time.monotonic() - started >= max_s or await request.is_disconnected():
            return
        if time.monotonic() - last_sent >= KEEPALIVE_S:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(svc.feed_poll_s)


@router.get(
    "/v1/patients/{patient_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}},
)
async def event_feed(
    patient_id: PatientId,
    who: Caller,
    svc: Services,
    request: Request,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    follow: bool = False,
    max_s: Annotated[float, Query(gt=0, le=3600)] = 300.0,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """A patient's events after ``Last-Event-ID`` (or ``after``) as ``text/event-stream``."""
    await patient_access(svc, request, who, "events.read", patient_id, ("clinician", "admin"))
    start = after or 0
    if last_event_id is not None:
        if not last_event_id.isdigit() or int(last_event_id) > MAX_SEQ:
            raise errors.ObservationRangeError("Last-Event-ID", "<invalid>", "an event sequence")
        start = max(start, int(last_event_id))
    return StreamingResponse(
        _stream(svc, request, patient_id, start, follow, max_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
