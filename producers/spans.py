"""Spans: :class:`Span`, a unit of work opened by :meth:`Client.span <aitrace.producers.client.Client.span>`,
and :class:`Stage`, a data-pipeline stage (a span that also counts rows in and out).

Entering one makes it the current trace context; leaving it enqueues the span object itself, as its
own queued row (:data:`~aitrace.producers.events.Queued`: its kind is its type, its time ``end_us``,
its fields and its context itself, as it has the ``trace_id``, ``span_id`` and ``parent_span_id`` the
exporter reads of a context): the exporter thread reads its fields when it builds the block
(:func:`aitrace.producers.span_blocks.span_columns`) or the single event (:meth:`Span.fields`), so
the caller builds no dict, no tuple and does no arithmetic. A span is reported as it was when it
ended; changing it after its ``with`` block ended is not supported.

Why the span is its own row: a span keeps its ids as texts and holds its
:class:`~aitrace.producers.tracecontext.SpanContext` only inside its ``with`` block (built on
entering, let go on leaving), so a queued span is one object the garbage collector tracks (with
its attributes), not three (the context, a queued tuple). Each object a queued span keeps alive counts
towards the next collection, and each full collection walks the whole queue (``bench_producer.py``:
GC per event).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from aitrace.producers import tracecontext as tc
from aitrace.producers.events import plain_text
from aitrace.producers.summaries import row_count

if TYPE_CHECKING:
    from aitrace.producers.client import Client

_time_ns = time.time_ns
_perf_ns = time.perf_counter_ns
_ERROR = "error"
# tc.push / tc.pop without their call: a span's enter and exit run on the caller's thread.
_push = tc._CURRENT.set
_pop = tc._CURRENT.reset
_T = TypeVar("_T")
_new_tuple = tuple.__new__
_SpanContext = tc.SpanContext


class Span:
    """A unit of work opened by :meth:`Client.span`; reported as an ``aitrace.Span`` when it ends."""

    __slots__ = (
        "_client",
        "_ctx",
        "_t0",
        "_t1",
        "_token",
        "attributes",
        "end_us",
        "error_message",
        "error_type",
        "kind",
        "name",
        "parent_span_id",
        "span_id",
        "status",
        "trace_id",
    )

    # _t0, _t1, _token and end_us are set by __enter__ and __exit__ (a span is reported only after it ended).
    def __init__(
        self, client: Client, name: str, kind: str, attributes: dict[str, Any], trace_id: str, span_id: str,
        parent_span_id: str | None,
    ) -> None:  # fmt: skip
        self._client = client
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self._ctx: tc.SpanContext | None = None  # the current context inside the ``with`` block (see the module doc)
        self.status = "ok"
        self.error_type: str | None = None
        self.error_message: str | None = None

    @property
    def context(self) -> tc.SpanContext:
        """The span's trace context: the one current inside its ``with`` block (an equal one outside it)."""
        ctx = self._ctx
        return ctx if ctx is not None else tc.SpanContext(self.trace_id, self.span_id, self.parent_span_id)

    @property
    def duration_us(self) -> int:
        """Whole microseconds between enter and exit (perf_counter: a wall-clock step does not change it)."""
        return (self._t1 - self._t0) // 1000

    @property
    def start_time(self) -> int:
        """Microseconds since the epoch: the wall clock at exit less the duration."""
        return self.end_us - self.duration_us

    def set_attribute(self, key: str, value: Any) -> None:
        try:
            self.attributes[key] = value
        except Exception:  # a key that cannot be hashed (a list, an array): kept under its text
            self._client._rejected("Span.set_attribute(key=)", "a name", key, "kept under its text")
            self.attributes[plain_text(key)] = value

    def set_status(self, status: str, message: str | None = None) -> None:
        """``"ok"`` or ``"error"`` (an error span is never sampled out and leaves at once)."""
        try:
            error = bool(status == "error")
        except Exception:  # an array, an object whose == raises: not the word
            self._client._rejected("Span.set_status(status=)", '"ok" or "error"', status, "the status is left")
            return
        self.status = "error" if error else "ok"
        if message is not None:
            self.error_message = message

    def fields(self) -> dict[str, Any]:
        """The span as the fields :func:`events.span_payload` reads (what ``otel.py`` hands over too)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "start_time": self.start_time,
            "duration_us": self.duration_us,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attributes": self.attributes,
        }

    def __enter__(self) -> Span:
        # SpanContext(...) without the named tuple's Python-level __new__ (a third of its cost)
        ctx = self._ctx = _new_tuple(_SpanContext, (self.trace_id, self.span_id, self.parent_span_id, False))
        self._token = _push(ctx)
        self._t0 = _perf_ns()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._t1 = _perf_ns()
        _pop(self._token)
        del self._token  # freed now, not with the span: one object less for the collector while queued
        self._ctx = None  # the same: the span stands for its context from here (see the module doc)
        if exc is not None:
            self.status = _ERROR
            self.error_type = exc_type.__qualname__ if exc_type else type(exc).__qualname__
            self.error_message = plain_text(exc)
        self.end_us = _time_ns() // 1000
        # Client._put inlined: one Python call less per span on the caller's thread.
        client = self._client
        queue = client._queue
        if len(queue) >= client._qmax and not client._room():
            return
        urgent = self.status == _ERROR  # errors leave at once, even mid-linger
        queue.append(self)  # the span is its own queued row (events.Queued): no tuple beside it
        exporter = client._exporter
        if exporter.sleeping or urgent:
            exporter.sleeping = False
            exporter.wake.set()


class Stage(Span):
    """A data-pipeline stage opened by :meth:`Client.stage`: a span that also counts rows in and out.

    Set ``rows_in`` / ``rows_out`` (ints), or hand the data to :meth:`output`; the span's
    attributes get ``rows_in``, ``rows_out`` and ``rows_dropped`` (in - out, when rows were lost).
    """

    __slots__ = ("rows_in", "rows_out")

    def __init__(
        self, client: Client, name: str, attributes: dict[str, Any], ctx: tc.SpanContext, rows_in: int | None
    ) -> None:
        super().__init__(client, name, "internal", attributes, ctx.trace_id, ctx.span_id, ctx.parent_span_id)
        self.rows_in = rows_in
        self.rows_out: int | None = None

    def output(self, data: _T) -> _T:
        """Count ``data``'s rows (DataFrame, Series, array, mapping of columns) as ``rows_out``; returns ``data``."""
        self.rows_out = row_count(data)
        return data

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        rows = {"rows_in": self.rows_in, "rows_out": self.rows_out}
        self.attributes.update((k, v) for k, v in rows.items() if v is not None)
        try:  # counts the caller set by hand ("5", an array) are sent as they are, without rows_dropped
            if self.rows_in is not None and self.rows_out is not None and self.rows_out <= self.rows_in:
                self.attributes["rows_dropped"] = self.rows_in - self.rows_out
        except Exception:
            pass
        super().__exit__(exc_type, exc, tb)
