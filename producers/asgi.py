"""ASGI middleware (FastAPI, Starlette, any ASGI app): a server span and one inference record per request.

    app.add_middleware(AitraceMiddleware, model="churn", version="3")  # or AitraceMiddleware(app, ...)

Per HTTP request it continues the caller's W3C trace (``traceparent``; none or malformed: a new
trace), opens a server span named ``<METHOD> <route>``, returns ``traceparent`` on the response,
and sends one ``client.inference(...)`` with the route (the matched route template from
``scope["route"]``, which Starlette and FastAPI set; else the path), method, status, latency and
body sizes; the handler adds prediction, confidence, model, version and features with
:func:`annotate`. Validation failures, content checks, payload logging and the record's fields:
see :mod:`aitrace.producers.http_exchange`; the settings: :class:`aitrace.producers.http_exchange.Middleware`.

A pure ASGI middleware: it needs no framework, passes lifespan and websocket scopes through, and
never buffers a body (it counts bytes and keeps at most ``max_body_bytes`` for the checks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aitrace.producers.http_exchange import Exchange, Middleware
from aitrace.producers.inference import annotate, guard

__all__ = ["ASGIApp", "AitraceMiddleware", "annotate"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AitraceMiddleware(Middleware):
    """Trace every HTTP request of an ASGI app (settings: :class:`aitrace.producers.http_exchange.Middleware`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # request metadata the spec does not allow (str headers) passes through untraced, as it came
        http = scope.get("type") == "http"
        exchange = guard("reading the request", lambda: self._exchange(scope)) if http else None
        if exchange is None:
            await self.app(scope, receive, send)
            return

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                guard("counting the request", lambda: _received(exchange, message))
            return message

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                start = message  # the app's own message goes out if adding to it fails
                message = guard("adding traceparent to the response", lambda: _with_headers(start, exchange), start)
            elif message["type"] == "http.response.body":  # (a body of None or str is the server's to refuse)
                guard("counting the response", lambda: exchange.response.add(message.get("body", b"")))
            await send(message)

        with exchange.serving():
            await self.app(scope, receive_counted, send_traced)

    def _exchange(self, scope: Scope) -> Exchange | None:
        headers: dict[str, str] = {}
        for key, value in scope.get("headers") or ():
            # a repeated header folds into one as a WSGI server folds it (RFC 9110): two traceparents are then
            # no trace to continue, as W3C Trace Context asks, where the last one was taken
            name, text = key.decode("latin-1").lower(), value.decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
        root_path = scope.get("root_path", "")
        return self.start(scope.get("method", "GET"), scope.get("path", "/"), headers, lambda: _route(scope, root_path))


def _received(exchange: Exchange, message: Message) -> None:
    exchange.request.add(message.get("body", b""))
    exchange.request.more = bool(message.get("more_body", False))  # the app may stop reading here


def _with_headers(message: Message, exchange: Exchange) -> Message:
    """The response start with the traceparent added (the status noted on the way)."""
    headers = list(message.get("headers") or ())
    decoded = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
    extra = exchange.response_started(int(message["status"]), decoded)
    if not extra:
        return message
    return {**message, "headers": headers + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]}


def _route(scope: Scope, root_path: str) -> str | None:
    """The matched route's template; a Mount's prefix (the root path it added) goes in front.

    Starlette's router writes ``route``, ``path_params`` and a Mount's ``root_path`` into the
    scope it was handed, which is this middleware's scope unless something in between copied it.
    """
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str):
        return None
    mounted = str(scope.get("root_path", ""))[len(root_path) :]
    return mounted + template
