"""WSGI middleware (Flask, Django, any WSGI app): a server span and one inference record per request.

    app.wsgi_app = AitraceWSGIMiddleware(app.wsgi_app, model="churn", version="3")  # Flask

The same behaviour as :class:`aitrace.producers.asgi.AitraceMiddleware` (settings:
:class:`aitrace.producers.http_exchange.Middleware`; record fields, checks and payloads:
:mod:`aitrace.producers.http_exchange`), with what WSGI allows:

- The route is the matched rule when the app routes with werkzeug (a Flask app, or its
  ``wsgi_app``: its ``url_map`` is matched again, which costs microseconds), else the path.
- The server span covers the app call; the record goes when the server closes the response
  (PEP 3333 servers must), so its latency and response size include a streamed body.
- :func:`annotate` works while the app call runs (a Flask view does); a streamed body's
  generator runs later, outside the request's context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from aitrace.producers.http_exchange import Body, Exchange, Middleware
from aitrace.producers.inference import annotate, guard

__all__ = ["AitraceWSGIMiddleware", "WSGIApp", "annotate"]

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class AitraceWSGIMiddleware(Middleware):
    """Trace every request of a WSGI app (settings: :class:`aitrace.producers.http_exchange.Middleware`)."""

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # request metadata the spec does not allow (a bytes PATH_INFO) passes through untraced, as it came
        exchange = guard("reading the request", lambda: self._exchange(environ))
        if exchange is None:
            return self.app(environ, start_response)
        if "wsgi.input" in environ:
            sized = exchange.headers.get("content-length", "").isdigit()
            environ["wsgi.input"] = _CountedInput(environ["wsgi.input"], exchange.request, sized)

        def start_traced(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Callable[[bytes], object]:
            extra = guard("adding traceparent to the response", lambda: _started(exchange, status, headers), [])
            return start_response(status, headers + extra, *exc_info)

        try:
            body = self.app(environ, start_traced)
        except BaseException as exc:
            exchange.error = exc
            exchange.finish()
            raise
        exchange.end_span()
        return _CountedBody(body, exchange)

    def _exchange(self, environ: Environ) -> Exchange | None:
        headers = _headers(environ)
        url_map = getattr(self.app, "url_map", None) or getattr(getattr(self.app, "__self__", None), "url_map", None)
        path = _text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "/"))
        method = _text(environ.get("REQUEST_METHOD", "GET"))
        return self.start(method, path, headers, lambda: _rule(url_map, environ))


def _text(value: Any) -> str:
    """An environ string as the text the client sent: PEP 3333 hands the request's UTF-8 bytes over decoded as
    latin-1, so ``/users/jöhn@exämple.com`` arrives as ``/users/jÃ¶hn@exÃ¤mple.com``, which no pattern reads
    as an e-mail. Only where those bytes are UTF-8: a header a client sent in latin-1 (``X-Request-Id: req-café``
    from http.client) and text a server already decoded keep their reading (made U+FFFD, two request ids joined
    into one and no longer matched the app's)."""
    text = str(value)
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):  # not latin-1 (already decoded), or not UTF-8 bytes
        return text


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request headers, lower-case, from ``HTTP_*`` and the two CGI names WSGI keeps apart."""
    out = {k[5:].replace("_", "-").lower(): _text(v) for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            out[key.replace("_", "-").lower()] = _text(environ[key])
    return out


def _started(exchange: Exchange, status: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return exchange.response_started(int(status.split(" ", 1)[0]), headers)


def _rule(url_map: Any, environ: Environ) -> str | None:
    """The werkzeug rule the request matches (``/items/<int:item_id>``), or None (no map, no match)."""
    if url_map is None:
        return None
    try:
        rule, _ = url_map.bind_to_environ(environ).match(return_rule=True)
    except Exception:  # werkzeug says 404, 405 or redirect by raising: no rule, the path stands
        return None
    return str(rule.rule)


class _CountedInput:
    """``wsgi.input`` that counts (and keeps the head of) what the app reads.

    Without a Content-Length (a chunked body, ``wsgi.input_terminated``) the size the app should have read is
    unknown: the body counts as read in part (``Body.more``) while the app's last read could have stopped short of
    its end (``read(n)`` that filled ``n`` bytes, a line read); a read that came back short or empty, or that asked
    for everything, reached it.
    """

    def __init__(self, stream: Any, body: Body, sized: bool = True) -> None:
        self._stream = stream
        self._body = body
        self._sized = sized

    def read(self, *size: int | None) -> bytes:
        data = self._seen(self._stream.read(*size))
        if not self._sized:
            wanted = size[0] if size and size[0] is not None else -1
            self._body.more = 0 < wanted == len(data)
        return data

    def readline(self, *size: int | None) -> bytes:
        data = self._seen(self._stream.readline(*size))
        if not self._sized:
            self._body.more = bool(data)
        return data

    def readlines(self, *hint: int | None) -> list[bytes]:
        lines = [self._seen(line) for line in self._stream.readlines(*hint)]
        if not self._sized:
            self._body.more = bool(hint and hint[0] is not None and hint[0] > 0 and lines)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            if not self._sized:
                self._body.more = True
            yield self._seen(line)
        self._body.more = False

    def _seen(self, data: bytes) -> bytes:
        self._body.add(data)
        return data

    def __getattr__(self, name: str) -> Any:
        """The stream's attributes that read nothing (seek, closed, fileno: apps use them); a way to read past the
        count (readinto, read1, getvalue: werkzeug takes readinto where it finds it) stays hidden."""
        if name not in _PASSED:
            raise AttributeError(name)
        return getattr(self._stream, name)


_PASSED = frozenset({"seek", "tell", "seekable", "closed", "close", "fileno", "name", "mode", "encoding"})


class _CountedBody:
    """The app's response iterable, counted; closing it closes the app's and sends the record."""

    def __init__(self, body: Iterable[bytes], exchange: Exchange) -> None:
        self._body = body
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._body:
                self._exchange.response.add(chunk)
                yield chunk
        except BaseException as exc:
            self._exchange.error = exc
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._exchange.send_record()
