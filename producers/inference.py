"""Inference services: one server span and one ``aitrace.InferenceRecord`` per request or call.

What the ASGI middleware (:mod:`aitrace.producers.asgi`), the WSGI middleware (:mod:`aitrace.producers.wsgi`) and the
:func:`traced` decorator share lives here:

- :func:`annotate` lets a handler attach prediction, confidence, model, version, features,
  request id or an error to its request's record (a ContextVar holds the request's notes, so
  threads and asyncio tasks each see their own; sync handlers that a framework runs in a
  thread pool see them too, since the pool copies the context).
- :class:`Served` is one call under a server span that ends in one record; the HTTP request a
  middleware sees (:class:`~aitrace.producers.http_exchange.Exchange`) is one, and the module
  :mod:`aitrace.producers.http_exchange` holds it, the content checks and the middlewares' base.

The record's ``status`` is ``ok`` or ``error``; ``error`` reads ``<kind>: <detail>`` with kind
``schema_validation`` (a ``*ValidationError`` raised by the handler; the detail is each error's
location and message, never the offending input) or ``exception`` (HTTP adds its own kinds).

Nothing here raises into the app: a failure of the tracing is logged once per place and the
request goes on untraced. The client only enqueues (see :mod:`aitrace.producers.client`), so a slow or
absent broker never holds a request up (unless the client was built with
``full_policy="block"``, which waits for room by design).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aitrace.producers import tracecontext as tc
from aitrace.producers.client import get_client
from aitrace.producers.events import UNKNOWN_MODEL, plain_text
from aitrace.producers.spans import Span

__all__ = [
    "Annotations",
    "Served",
    "TracingClient",
    "annotate",
    "guard",
    "traced",
]

log = logging.getLogger("aitrace")

_MAX_VALIDATION_ERRORS = 5
_warned: set[str] = set()

F = TypeVar("F", bound=Callable[..., Any])


class TracingClient(Protocol):
    """The part of the producer client the integrations call (:class:`aitrace.Client`, or a stand-in)."""

    def span(self, name: str, kind: str = ..., **attributes: Any) -> AbstractContextManager[Any]: ...

    def extract(self, headers: Any) -> AbstractContextManager[Any]: ...

    def inject(self, headers: dict[str, Any]) -> Any: ...

    def inference(self, *args: Any, **fields: Any) -> Any: ...


@dataclass(slots=True)
class Annotations:
    """What a handler attached to its request's record with :func:`annotate`."""

    model: str | None = None
    version: str | None = None
    prediction: Any = None
    confidence: float | None = None
    request_id: str | None = None
    features: Mapping[str, Any] | None = None
    error: Any = None
    feature_version: str | None = None


_NOTES: ContextVar[Annotations | None] = ContextVar("aitrace_inference_notes", default=None)


def annotate(
    *,
    prediction: Any = None,
    confidence: float | None = None,
    model: str | None = None,
    version: str | None = None,
    request_id: str | None = None,
    features: Mapping[str, Any] | None = None,
    error: Any = None,
    feature_version: str | None = None,
) -> bool:
    """Attach fields to the current request's inference record (None leaves a field as it is).

    ``features`` maps input names to values (numbers feed the drift detectors, text goes to
    ``categorical_features``); anything but a mapping is left out. Returns False, and does
    nothing, outside a request a middleware or :func:`traced` follows.
    """
    notes = _NOTES.get()
    if notes is None:
        return False
    given = {
        "prediction": prediction,
        "confidence": confidence,
        "model": model,
        "version": version,
        "request_id": request_id,
        "features": features,
        "error": error,
        "feature_version": feature_version,
    }
    for name, value in given.items():
        if value is not None:
            setattr(notes, name, value)
    return True


def guard(place: str, action: Callable[[], Any], fallback: Any = None) -> Any:
    """Run a tracing step; a failure is logged (once per place), ``fallback`` returned, and the request goes on."""
    try:
        return action()
    except Exception:
        if place not in _warned:
            _warned.add(place)
            log.warning("aitrace: %s failed; the request goes on untraced there", place, exc_info=True)
        return fallback


# --------------------------------------------------------------------------- one served call


class Served:
    """One call served under a server span that ends in one inference record."""

    def __init__(self, client: TracingClient, model: str | None, version: str | None) -> None:
        self.client = client
        self.model = model
        self.version = version
        self.notes = Annotations()
        self.error: BaseException | None = None
        self.traceparent = ""
        self._t0 = time.perf_counter()
        self._stack = ExitStack()
        self._span: Any = None
        self._ctx: tc.SpanContext | None = None
        self._sent = False

    def begin(self, name: str, carrier: Any) -> bool:
        """Continue the trace ``carrier``'s traceparent names and open the span; False when that failed."""
        return bool(guard("starting a trace", lambda: self._open(name, carrier), fallback=False))

    def _open(self, name: str, carrier: Any) -> bool:
        stack = self._stack
        try:
            stack.enter_context(self.client.extract(carrier if carrier is not None else {}))
            self._span = stack.enter_context(self.client.span(name, kind="server"))
            self._ctx = tc.current()
            stack.callback(_NOTES.reset, _NOTES.set(self.notes))
            outgoing: dict[str, Any] = {}
            self.client.inject(outgoing)
        except BaseException:
            stack.close()  # nothing half-open stays current for the next request
            raise
        self.traceparent = str(outgoing.get(tc.TRACEPARENT, ""))
        return True

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Around the handler: an exception leaving it is noted (and propagates); then record and span."""
        try:
            yield
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.finish()

    def finish(self) -> None:
        """The record inside the span (a stand-in client may carry context its own way), then the span."""
        self.send_record()
        self.end_span()

    def end_span(self) -> None:
        guard("closing the server span", self._close_span)

    def send_record(self) -> None:
        if not self._sent:
            self._sent = True
            guard("sending the inference record", self._send)

    def _close_span(self) -> None:
        span = self._span
        if isinstance(span, Span):  # guarded apart: the contexts below must be left whatever happens
            guard("describing the server span", lambda: self.describe_span(span))
        exc = self.error
        self._stack.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    def _send(self) -> None:
        # After a WSGI body the span is closed already: the record still belongs to it.
        token = tc.push(self._ctx) if self._ctx is not None else None
        try:
            self.client.inference(**self.record())
        finally:
            if token is not None:
                tc.pop(token)

    def record(self) -> dict[str, Any]:
        """The ``client.inference`` keywords of this call."""
        notes = self.notes
        problem = self.problem()
        return {
            "request_id": plain_text(notes.request_id or self.default_request_id()),  # a UUID as it prints
            "model_name": notes.model or self.model or UNKNOWN_MODEL,
            "model_version": notes.version or self.version,
            "latency_ms": (time.perf_counter() - self._t0) * 1000,
            "status": "error" if problem else "ok",
            "error": problem,
            "features": notes.features if isinstance(notes.features, Mapping) else None,
            "prediction": notes.prediction,
            "confidence": notes.confidence,
            "feature_version": notes.feature_version,
            "inputs_summary": self.summary(),
        }

    def problem(self) -> str | None:
        """``<kind>: <detail>`` of what went wrong, or None."""
        if self.error is not None:
            return _exception_problem(self.error, self.notes.error)
        return None if self.notes.error is None else plain_text(self.notes.error)

    def default_request_id(self) -> str:
        return uuid.uuid4().hex

    def summary(self) -> str | None:
        return None

    def describe_span(self, span: Span) -> None:
        """Name and attributes known only at the end (only the producer's own spans take them)."""


def _exception_problem(exc: BaseException, note: Any) -> str:
    # a note, or an exception, with no text of its own must not lose the whole record (plain_text)
    told = None if note is None else plain_text(note)
    if type(exc).__name__.endswith("ValidationError"):
        return f"schema_validation: {told if told is not None else _validation_errors(exc)}"
    return f"exception: {told if told is not None else f'{type(exc).__qualname__}: {plain_text(exc)}'}"


def _validation_errors(exc: BaseException) -> str:
    """Where and why validation failed (pydantic's / FastAPI's ``errors()``), without the input itself."""
    errors = getattr(exc, "errors", None)
    items = guard("reading a validation error", errors) if callable(errors) else None
    return _error_items(items) or type(exc).__qualname__


def _error_items(items: Any) -> str | None:
    """``loc: msg; ...`` of a list of validation errors (as in FastAPI's 422 ``detail``), or None."""
    if not isinstance(items, list):
        return None
    parts = []
    for item in items[:_MAX_VALIDATION_ERRORS]:
        if isinstance(item, dict):
            where = ".".join(str(p) for p in item.get("loc") or ())
            msg = str(item.get("msg", ""))
            parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or None


# --------------------------------------------------------------------------- the decorator


def traced(
    model: str,
    version: str | None = None,
    *,
    client: TracingClient | None = None,
    name: str | None = None,
    headers: Callable[..., Any] | None = None,
) -> Callable[[F], F]:
    """Trace a batch or gRPC-style handler: each call is a server span and one inference record.

    ``client`` defaults to the last :func:`aitrace.init`'s (looked up per call; none: the call runs
    untraced). ``name`` (default: the function's qualified name) names the span. ``headers``,
    given the call's arguments, returns the carrier of the caller's traceparent (a dict, or
    ``(key, value)`` pairs such as gRPC's ``context.invocation_metadata()``). Inside, the handler
    calls :func:`annotate`; an exception marks the record ``error`` and propagates. Plain and
    ``async`` functions are supported.
    """

    def decorate(func: F) -> F:
        span_name = name or func.__qualname__

        def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> AbstractContextManager[None]:
            use = client if client is not None else get_client()
            if use is None:
                return nullcontext()
            carrier = guard("reading the caller's headers", lambda: headers(*args, **kwargs)) if headers else None
            served = Served(use, model, version)
            return served.serving() if served.begin(span_name, carrier) else nullcontext()

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                with start(args, kwargs):
                    return await func(*args, **kwargs)

            return call_async  # type: ignore[return-value]

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            with start(args, kwargs):
                return func(*args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate
