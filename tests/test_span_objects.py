"""Span objects on the queue: what :class:`spans.Span` enqueues reads back, as a block and as single events,
as the same spans handed over as fields (the shape ``otel.py`` enqueues and spans.py enqueued before)."""

from __future__ import annotations

import gc
import threading
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.producers.spans import Span, Stage
from test_exporter import Running, start
from test_inference_blocks import _same
from test_log_blocks import _TRACE, DECODER, _PerEvent, _sent

__all__ = ["start"]  # the fixture, imported


def _span(i: int, *, odd: bool) -> Span:
    """The i-th span as the caller leaves it at exit (clock readings set here, not read)."""
    attributes: dict[Any, Any] = {"route": f"/items/{i % 4}", "rows": i, "user": f"bob{i}@example.com"}
    if i % 5:
        attributes["auth"] = "healthy" if i % 2 else f"tok-{i}-9f8e7d"
    name: Any = 3 if odd and i == 4 else ("load", "predict", "save")[i % 3]  # not text: made text, as an event
    ctx = tc.SpanContext(_TRACE.trace_id, tc.new_span_id(), _TRACE.span_id if i % 2 else None)
    span = Stage(None, name, attributes, ctx, i) if i % 4 == 1 else Span(None, name, "server", attributes, *ctx[:3])  # type: ignore[arg-type]
    span._t0, span._t1 = 5_000_000 + i, 5_000_000 + i + (100 + i) * 1000 + 999  # floors to 100 + i µs
    span.end_us = 1_700_000_000_000_000 + i
    if i % 10 == 7:
        span.status, span.error_type, span.error_message = "error", "ValueError", f"bad {i}"
    return span


def _queue(running: Running, spans: list[Span], *, as_fields: bool, otel_every: int = 0) -> None:
    """Each span as Span.__exit__ enqueues it (the span as its own context), or as fields with its SpanContext."""
    for i, span in enumerate(spans):
        fields = span.fields() if as_fields or (otel_every and i % otel_every == 0) else span
        ctx = span if fields is span else span.context
        running.queue.append((ev.SPAN, span.end_us, ctx, fields, span.status == "error"))
    running.exporter.wake.set()


@pytest.mark.parametrize(("odd", "otel_every"), [(False, 0), (True, 0), (False, 3)])
def test_span_objects_read_back_as_the_same_spans_handed_over_as_fields(
    start: Callable[..., Running], odd: bool, otel_every: int
) -> None:
    spans = [_span(i, odd=odd) for i in range(40)]
    redactors = [Redactor(hash_key="k") for _ in range(3)]
    objects, fields = start([TraceSampler(1.0), redactors[0]]), start([TraceSampler(1.0), redactors[1]])
    single = start([TraceSampler(1.0), redactors[2], _PerEvent()])
    _queue(objects, spans, as_fields=False, otel_every=otel_every)
    _queue(fields, spans, as_fields=True)
    _queue(single, spans, as_fields=False)
    sent = [_sent(objects), _sent(fields), _sent(single)]
    assert [DECODER.decode(r.value).schema for r in objects.transport.records] == ["aitrace.SpanBlock"]
    assert {DECODER.decode(r.value).schema for r in single.transport.records} == {"aitrace.Batch"}
    assert _same(sent[0], sent[1]) and _same(sent[0], sent[2])
    first = sent[0][0]["payload"][1]
    assert (first["start_time"], first["duration_us"]) == (1_700_000_000_000_000 - 100, 100)
    assert "example.com" not in repr(sent[0]) and "tok-" not in repr(sent[0])
    assert redactors[0].counts == redactors[1].counts == redactors[2].counts


def test_a_span_from_the_client_carries_its_times_nesting_and_error() -> None:
    exporter = SimpleNamespace(sleeping=False, wake=threading.Event())
    client: Any = SimpleNamespace(_queue=deque(), _qmax=10, _exporter=exporter)  # what Span.__exit__ reads
    outer_ctx = tc.new_root()
    with pytest.raises(KeyError), Span(client, "outer", "server", {}, *outer_ctx[:3]) as outer:
        assert tc.current() == outer_ctx
        with Span(client, "inner", "internal", {"a": 1}, outer_ctx.trace_id, tc.new_span_id(), None) as inner:
            assert tc.current() == inner.context
        assert not exporter.wake.is_set()
        raise KeyError("k")
    assert tc.current() is None and exporter.wake.is_set()  # an error span wakes the exporter
    assert list(client._queue) == [inner, outer]  # each span its own queued row (events.Queued)
    assert outer.status == "error" and outer.error_type == "KeyError" and outer.error_message == "'k'"
    assert outer.start_time <= inner.start_time and outer.duration_us >= inner.duration_us >= 0
    assert inner.fields()["start_time"] + inner.fields()["duration_us"] <= inner.end_us


def test_an_ended_span_keeps_its_ids_not_its_context() -> None:
    """A queued span is the span and its tuple, no SpanContext: one object less for every collection that walks
    the queue (the span's caller cost, issue 11). Its context reads back equal, and as the current one inside."""
    exporter = SimpleNamespace(sleeping=False, wake=threading.Event())
    client: Any = SimpleNamespace(_queue=deque(), _qmax=10, _exporter=exporter)
    ctx = tc.SpanContext(tc.new_trace_id(), tc.new_span_id(), tc.new_span_id())
    with Span(client, "s", "internal", {"a": 1}, *ctx[:3]) as span:
        assert tc.current() is span.context == ctx
    (item,) = client._queue
    assert not [r for r in gc.get_referents(item, span) if isinstance(r, tc.SpanContext)]
    assert span.context == ctx and (span.trace_id, span.span_id, span.parent_span_id) == ctx[:3]
