"""HTTP inference: one request as a middleware sees it, the content checks, and the middlewares' base.

:class:`Exchange` is one HTTP request (a :class:`~aitrace.producers.inference.Served` call): it
continues the caller's W3C trace, opens the server span, counts the bodies, runs the input
checks and builds the record. :class:`Middleware` holds what the ASGI
(:mod:`aitrace.producers.asgi`) and WSGI (:mod:`aitrace.producers.wsgi`) middlewares share.

Besides the kinds of :mod:`aitrace.producers.inference`, the record's ``error`` kind may be
``invalid_input`` (the content check below refused the body), ``schema_validation`` for a 422
answer, or ``http_<status>`` (any other 4xx/5xx). The InferenceRecord schema has no HTTP
fields, so method, route, status code, body sizes and content type travel in ``inputs_summary``
as a JSON object (and on the server span as ``http.*`` attributes).

Content checks (``inputs={"/predict": "json", "/classify": "image"}``, keyed by route template
or path), on POST, PUT and PATCH bodies the app read:

- ``json``: the body parses as JSON and is an object. A body over ``max_body_bytes`` is not
  parsed (nothing is said about it).
- ``image``: the body, or the first file part of a ``multipart/form-data`` body, starts with a
  PNG, JPEG, GIF, WebP, TIFF or BMP signature.

Payloads are never put on the record unless ``log_payloads=True``; then the first
``max_body_bytes`` of each body go into ``inputs_summary`` after the client's redactor (JSON
structurally, so a ``password`` field is blanked; other text by its patterns), and not at all
when the client has no redactor.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
from aitrace.producers import tracecontext as tc
from aitrace.producers.client import get_client
from aitrace.producers.inference import Served, TracingClient, _error_items, _exception_problem, guard
from aitrace.producers.spans import Span
from aitrace.producers.text_reading import without_cut_token

__all__ = ["INPUT_KINDS", "Body", "Exchange", "Middleware", "Options", "check_input"]

INPUT_KINDS = ("json", "image")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM")
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class Body:
    """The size of a body and, up to ``limit`` bytes, its head (for the checks and logged payloads).

    ``more``: the server said more of the body was to come when the app stopped reading (ASGI ``more_body``).
    """

    __slots__ = ("head", "limit", "more", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.head = bytearray()
        self.more = False

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]

    @property
    def kept_all(self) -> bool:
        return self.total == len(self.head)


@dataclass(frozen=True)
class Options:
    """A middleware's settings; see :class:`Middleware`."""

    model: str | None = None
    version: str | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    inference: bool = True
    log_payloads: bool = False
    max_body_bytes: int = 64 * 1024


class Exchange(Served):
    """One HTTP request and its response, as a middleware sees them.

    ``find_route`` returns the matched route template (None: unknown); it is asked once, when
    the record or the span is written, after the app has routed the request.
    """

    def __init__(
        self,
        client: TracingClient,
        options: Options,
        method: str,
        path: str,
        headers: Mapping[str, str],
        find_route: Callable[[], str | None],
    ) -> None:
        super().__init__(client, options.model, options.version)
        self.options = options
        self.method = method
        self.path = path
        self.headers = headers
        self.find_route = find_route
        self.status: int | None = None
        self.response_type = ""
        self.request = Body(options.max_body_bytes if options.inputs or options.log_payloads else 0)
        self.response = Body(0)

    def response_started(self, status: int, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Note the status; the headers to add to the response (traceparent, unless the app set one)."""
        self.status = status
        names = {key.lower(): value for key, value in headers}
        self.response_type = names.get("content-type", "")
        if self.options.log_payloads or status == 422:  # a 422's body says what failed validation
            self.response.limit = self.options.max_body_bytes
        if tc.TRACEPARENT in names or not self.traceparent:
            return []
        return [(tc.TRACEPARENT, self.traceparent)]

    def send_record(self) -> None:
        if self.options.inference:
            super().send_record()

    @functools.cached_property
    def route(self) -> str:
        """The matched route template, else the path."""
        return guard("finding the route", self.find_route) or self.path

    @property
    def request_bytes(self) -> int:
        """Content-Length when the caller sent one (the app may not have read it all), else the bytes read."""
        declared = self.headers.get("content-length", "")
        return int(declared) if declared.isdigit() else self.request.total

    @property
    def request_whole(self) -> bool:
        """Every byte of the request body was read by the app and kept here."""
        return self.request.kept_all and not self.request.more and self.request.total == self.request_bytes

    def default_request_id(self) -> str:
        # the first of repeated ids (a client's, then a proxy's: folded "a, b" as servers fold repeated headers)
        return self.headers.get("x-request-id", "").split(",")[0].strip() or uuid.uuid4().hex

    def problem(self) -> str | None:
        refused = self._refused_input()
        if refused is not None:
            return f"invalid_input: {refused}"
        if self.error is not None:
            return _exception_problem(self.error, self.notes.error)
        status, note = self.status or 0, self.notes.error
        if status == 422:
            return f"schema_validation: {note if note is not None else self._validation_detail()}"
        if status >= 400:
            return f"http_{status}: {note if note is not None else _phrase(status)}"
        return None if note is None else str(note)

    def _refused_input(self) -> str | None:
        kind = self.options.inputs.get(self.route)
        unread = self.request.total == 0 and self.request_bytes > 0
        if kind is None or self.method not in _BODY_METHODS or unread:
            return None  # nothing declared, no body expected, or the app never read it
        return check_input(kind, bytes(self.request.head), self.headers.get("content-type", ""), self.request_whole)

    def _validation_detail(self) -> str:
        answer = guard("reading a 422 answer", lambda: orjson.loads(bytes(self.response.head)))
        detail = answer.get("detail") if isinstance(answer, dict) and self.response.kept_all else None
        if isinstance(detail, str):
            return detail
        return _error_items(detail) or "request failed validation"

    def summary(self) -> str:
        out: dict[str, Any] = {
            "method": self.method,
            "route": self.route,
            "status_code": self._status_code(),
            "request_bytes": self.request_bytes,
            "response_bytes": self.response.total,
            "content_type": self.headers.get("content-type") or None,
        }
        if self.options.log_payloads:
            out.update(self._payloads())
        return orjson.dumps(out).decode()

    def _status_code(self) -> int | None:
        """The response's status as HTTP has them (an app's 2**70 failed the record's JSON and lost it), 500 for
        an exception before one was set."""
        status = self.status
        if isinstance(status, int) and not isinstance(status, bool) and 0 <= status <= 999:
            return status or (500 if self.error is not None else None)
        return 500 if status is None and self.error is not None else None

    def _payloads(self) -> dict[str, str]:
        redactor = getattr(self.client, "redactor", None)
        if redactor is None:
            guard("log_payloads", _no_redactor)
            return {}
        request_type = self.headers.get("content-type", "")
        return {
            "request_body": _payload_text(self.request, request_type, self.request_whole, self.request_bytes, redactor),
            "response_body": _payload_text(
                self.response, self.response_type, self.response.kept_all, self.response.total, redactor
            ),
        }

    def describe_span(self, span: Span) -> None:
        span.name = f"{self.method} {self.route}"
        span.attributes["http.request.method"] = self.method
        span.attributes["http.route"] = self.route
        span.attributes["http.request.body.size"] = self.request_bytes
        if self.status is not None:
            span.attributes["http.response.status_code"] = self.status
            if self.status >= 500:
                span.set_status("error", f"HTTP {self.status}")


def _no_redactor() -> None:
    raise RuntimeError("log_payloads=True but the client has no redactor: payloads are left out")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _payload_text(body: Body, content_type: str, whole: bool, total: int, redactor: Any) -> str:
    """A body for the record, through the redactor: JSON by its structure, other text by its patterns.

    ``whole``: ``body`` holds all of it; else it was cut, at ``max_body_bytes`` or where the app stopped reading
    (``read(64)``), and the token the cut went through is left out. ``total``: the body's size in bytes."""
    data = bytes(body.head)
    if "json" in content_type:
        # By its structure wherever it parses, whole or not: a body read in full but not known to be (chunked, or
        # an app that stops at its Content-Length) went by its text patterns only, and deny= fields went out
        try:
            shown = orjson.dumps(redactor.value(orjson.loads(data))).decode()
            return shown if whole or len(data) >= total else shown + f"... ({total} bytes)"
        except (orjson.JSONDecodeError, TypeError, RecursionError):
            pass  # a body that only claims to be JSON, one cut, or one nested deeper than orjson writes: text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{total} bytes, not text>"
    if whole:
        return redactor.scrub(text)
    # cut at max_body_bytes or where the app stopped reading: the head of a secret the cut went through matches no
    # pattern, so it goes too
    return redactor.scrub(without_cut_token(text)) + f"... ({total} bytes)"


def check_input(kind: str, body: bytes, content_type: str, whole: bool) -> str | None:
    """Why ``body`` is not a valid ``kind`` input (see the module doc); None when it is, or cannot be told."""
    if kind == "image":
        return _check_image(body, content_type, whole)
    if not whole:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    if isinstance(value, dict):
        return None
    return f"JSON body is {_JSON_TYPES.get(type(value), 'null')}, expected an object"


def _check_image(body: bytes, content_type: str, whole: bool) -> str | None:
    if content_type.lower().startswith("multipart/form-data"):
        part = _first_file_part(body, _header_param(content_type, "boundary"))
        if part is None:
            return "multipart body has no file part" if whole else None
        body = part
    if body.startswith(_IMAGE_SIGNATURES) or (body[:4] == b"RIFF" and body[8:12] == b"WEBP"):
        return None
    return "body is not an image (no PNG, JPEG, GIF, WebP, TIFF or BMP signature)"


def _header_param(value: str, name: str) -> str:
    """A parameter of a header value (``boundary`` of ``multipart/form-data; boundary=x``), or ''."""
    for param in value.split(";")[1:]:
        key, _, found = param.strip().partition("=")
        if key.lower() == name:
            return found.strip('"')
    return ""


def _first_file_part(body: bytes, boundary: str) -> bytes | None:
    """The content of the first part of a multipart body that carries a file name."""
    if not boundary:
        return None
    for part in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        head, sep, content = part.partition(b"\r\n\r\n")
        if sep and b"filename=" in head:
            return content
    return None


# --------------------------------------------------------------------------- the middlewares' base


class Middleware:
    """What the ASGI and WSGI middlewares share: their settings and the start of an exchange.

    - ``client``: the producer client; default, the last :func:`aitrace.init`'s (looked up per
      request; none: requests pass untraced).
    - ``model`` / ``version``: the record's model when the handler does not :func:`annotate` one
      (else ``"unknown"``).
    - ``inputs``: content checks by route template or path, ``"json"`` or ``"image"`` (module doc).
    - ``inference=False``: trace only (span and traceparent), no record: a service that serves no model.
    - ``log_payloads``: bodies on the record, redacted (module doc); ``max_body_bytes`` bounds
      what is kept of each body for the checks and the payloads.
    """

    def __init__(
        self,
        app: Any,
        client: TracingClient | None = None,
        *,
        model: str | None = None,
        version: str | None = None,
        inputs: Mapping[str, str] | None = None,
        inference: bool = True,
        log_payloads: bool = False,
        max_body_bytes: int = 64 * 1024,
    ) -> None:
        unknown = {k: v for k, v in (inputs or {}).items() if v not in INPUT_KINDS}
        if unknown:
            raise ValueError(f"inputs kinds must be one of {INPUT_KINDS}, got {unknown}")
        self.app = app
        self.client = client
        self.options = Options(model, version, dict(inputs or {}), inference, log_payloads, max_body_bytes)

    def start(
        self, method: str, path: str, headers: Mapping[str, str], find_route: Callable[[], str | None]
    ) -> Exchange | None:
        """A begun exchange, or None: no client, or its trace could not start (the request goes on untraced)."""
        client = self.client if self.client is not None else get_client()
        if client is None:
            return None
        exchange = Exchange(client, self.options, method, path, headers, find_route)
        return exchange if exchange.begin(f"{method} {path}", headers) else None
