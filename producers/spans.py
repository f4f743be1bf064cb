"""Spans: :class:`Span`, a unit of work opened by :meth:`Client.span <aitrace.producers.client.Client.span>`,
and :class:`Stage`, a data-pipeline stage (a span that also counts rows in and out).

Entering one makes it the current trace context; leaving it enqueues one ``aitrace.Span``
event through its client.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.summaries import row_count

if TYPE_CHECKING:
    from aitrace.producers.client import Client

_time_ns = time.time_ns
_perf_ns = time.perf_counter_ns
_SPAN = ev.SPAN
# tc.push / tc.pop without their call: a span's enter and exit run on the caller's thread.
_push = tc._CURRENT.set
_pop = tc._CURRENT.reset
_T = TypeVar("_T")


class Span:
    """A unit of work opened by :meth:`Client.span`; reported as an ``aitrace.Span`` when it ends."""

    __slots__ = (
        "_client",
        "_start_us",
        "_t0",
        "_token",
        "attributes",
        "context",
        "error_message",
        "error_type",
        "kind",
        "name",
        "status",
    )

    # _start_us, _t0 and _token are set by __enter__ (a span is reported only after it was entered).
    def __init__(self, client: Client, name: str, kind: str, attributes: dict[str, Any], ctx: tc.SpanContext) -> None:
        self._client = client
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.context = ctx
        self.status = "ok"
        self.error_type: str | None = None
        self.error_message: str | None = None

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    @property
    def span_id(self) -> str:
        return self.context.span_id

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_status(self, status: str, message: str | None = None) -> None:
        """``"ok"`` or ``"error"`` (an error span is never sampled out and leaves at once)."""
        self.status = "error" if status == "error" else "ok"
        if message is not None:
            self.error_message = message

    def __enter__(self) -> Span:
        self._start_us = _time_ns() // 1000
        self._t0 = _perf_ns()
        self._token = _push(self.context)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        duration_us = (_perf_ns() - self._t0) // 1000
        _pop(self._token)
        if exc is not None:
            self.status = "error"
            self.error_type = exc_type.__qualname__ if exc_type else type(exc).__qualname__
            self.error_message = str(exc)
        fields = {
            "name": self.name,
            "kind": self.kind,
            "start_time": self._start_us,
            "duration_us": duration_us,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attributes": self.attributes,
        }
        self._client._put((_SPAN, self._start_us + duration_us, self.context, fields, self.status == "error"))


class Stage(Span):
    """A data-pipeline stage opened by :meth:`Client.stage`: a span that also counts rows in and out.

    Set ``rows_in`` / ``rows_out`` (ints), or hand the data to :meth:`output`; the span's
    attributes get ``rows_in``, ``rows_out`` and ``rows_dropped`` (in - out, when rows were lost).
    """

    __slots__ = ("rows_in", "rows_out")

    def __init__(
        self, client: Client, name: str, attributes: dict[str, Any], ctx: tc.SpanContext, rows_in: int | None
    ) -> None:
        super().__init__(client, name, "internal", attributes, ctx)
        self.rows_in = rows_in
        self.rows_out: int | None = None

    def output(self, data: _T) -> _T:
        """Count ``data``'s rows (DataFrame, Series, array, mapping of columns) as ``rows_out``; returns ``data``."""
        self.rows_out = row_count(data)
        return data

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        rows = {"rows_in": self.rows_in, "rows_out": self.rows_out}
        self.attributes.update((k, v) for k, v in rows.items() if v is not None)
        if self.rows_in is not None and self.rows_out is not None and self.rows_out <= self.rows_in:
            self.attributes["rows_dropped"] = self.rows_in - self.rows_out
        super().__exit__(exc_type, exc, tb)
