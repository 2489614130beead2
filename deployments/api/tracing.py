"""The HTTP server span of each request, continuing a caller's W3C ``traceparent``.

One SERVER span per request, named ``<METHOD> <route template>``
(``POST /v1/patients/{patient_id}/observations``), with the method, the route template, the
status and our request id (the ``X-Request-ID`` answered) as attributes: never the path, the
query string, a header, the client's address or anything of the body. That is why this is our
own middleware rather than opentelemetry-instrumentation-asgi, which records the raw path
(``url.path``: patient ids) and the query string as attributes, names spans after the path
when no route template is known, and adds the client's address and user agent.

A request that ends in an exception or a 5xx answer is marked failed (by exception class or
status only). ``tracestate`` and ``baggage`` headers are not read (see
:mod:`twin.service.tracing`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin.service import tracing

__all__ = ["TraceRequests"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
_TRACEPARENT = tracing.TRACEPARENT.encode()


class TraceRequests:
    """ASGI middleware: a SERVER span around each HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call (HTTP requests in a span; other scopes untouched)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name.lower() == _TRACEPARENT:  # the first one (a repeated header is malformed)
                received.setdefault(tracing.TRACEPARENT, value.decode("latin-1"))
        # An unknown method is one label, not the caller's text (HTTP semantic conventions).
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        with tracing.span(
            method,
            kind=tracing.SpanKind.SERVER,
            parent=tracing.context_from(received),
            attributes={"http.request.method": method},
        ) as span:

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        tracing.mark_failed(span, str(status))
                    for name, value in message.get("headers", ()):
                        if name.lower() == b"x-request-id":
                            span.set_attribute("novamind.request_id", value.decode("latin-1"))
                await send(message)

            try:
                await self.app(scope, receive, traced_send)
            finally:
                # The router put the matched route into the (shared) scope: its template, never
                # the path, names the span. Unmatched requests keep the method alone.
                template = getattr(scope.get("route"), "path", None)
                if isinstance(template, str):
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
