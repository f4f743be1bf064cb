"""Logs, inference records, ground truth and data statistics are queued flat,
``(kind, time, ctx, None, urgent, *fields)`` (events.Queued): one object per event for the garbage collector to
count and walk, not two; an ended span is queued as itself. Records stay byte for byte those of the five-item rows
of before (b37389f: the same fields as one tuple at index 3; a span inside its tuple), as blocks and as single
events, in batches mixing them with rows queued by hand, and a malformed flat row loses only itself."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any

import pytest
from aitrace.producers import blocks
from aitrace.producers import events as ev
from aitrace.producers.client import Client
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.producers.transport import MemoryTransport
from test_data_stats_counts_parity import _calls as _data_calls
from test_exporter import _ENVELOPE
from test_inference_blocks import _fields as _inference_call
from test_log_blocks import _TRACE
from test_log_tuple_parity import _call as _log_call
from test_log_tuple_parity import _PerEvent
from test_log_tuple_parity import _queued_by_client as _queued_logs
from test_queued_tuple_parity import _queued_by_client as _queued_by_keywords


def _labels(n: int) -> list[dict[str, Any]]:
    labels: tuple[Any, ...] = (1, 0, "fraud", "ünïcødé ✓", None, 2.5, True, 2**70, "password=hunter2hunter2", b"\xff")
    return [{"request_id": f"req-{i}" if i % 9 else f"alice{i}@example.com", "model_name": ("fraud", "churn")[i % 2],
             "label": labels[i % len(labels)]} for i in range(n)]  # fmt: skip


def _queued(kind: int, n: int) -> list[ev.Queued]:
    if kind == ev.GROUND_TRUTH:
        return _queued_by_keywords(_labels(n), "ground_truth")
    if kind == ev.LOG:
        return _queued_logs([_log_call(i, odd=i % 4 == 3) for i in range(n)])
    if kind == ev.INFERENCE:
        return _queued_by_keywords([_inference_call(i, odd=i % 4 == 3, secret=i % 3 == 0) for i in range(n)])
    return _queued_by_keywords(_data_calls(n), "data_stats")


def _by_hand(rows: list[ev.Queued]) -> list[ev.Queued]:
    """Every third row as a five-item row with a dict of its fields (as a user's own code may queue), the rest flat."""
    out = []
    for i, row in enumerate(rows):
        if i % 3 == 1:
            kind, t, ctx, fields, urgent = blocks.unflattened([row])[0]
            row = (kind, t, ctx, ev.fields_dict(kind, fields), urgent)
        out.append(row)
    return out


def _sent(rows: list[ev.Queued], per_event: bool) -> tuple[list[str], Counter[str]]:
    settings = Settings(service="unit", batch_max_events=9)
    stats: Counter[str] = Counter()
    transport = MemoryTransport(stats)
    processors: list[Any] = [TraceSampler(1.0), Redactor(hash_key="k")]  # the default chain, its hash key fixed
    chain = [*processors, _PerEvent()] if per_event else processors
    exporter = Exporter(settings, deque(rows), dict(_ENVELOPE), chain, "p", stats, transport)
    exporter._take()
    exporter._send_pending()
    return [hashlib.sha256(r.value).hexdigest() for r in transport.records], stats


_KINDS = pytest.mark.parametrize(
    "kind", [ev.LOG, ev.INFERENCE, ev.DATA, ev.GROUND_TRUTH], ids=["log", "inference", "data_stats", "ground_truth"]
)


@_KINDS
@pytest.mark.parametrize("per_event", [False, True], ids=["blocks", "single events"])
def test_flat_rows_send_the_records_five_item_rows_sent(kind: int, per_event: bool) -> None:
    flat = _queued(kind, 40)
    assert {len(row) for row in flat} == {5 + len(ev.QUEUED_FIELDS[kind])} and {row[3] for row in flat} == {None}
    new, new_stats = _sent(flat, per_event)
    old, old_stats = _sent(blocks.unflattened(flat), per_event)
    assert new == old and new_stats == old_stats and new_stats["sent"] == 40
    mixed, mixed_stats = _sent(_by_hand(flat), per_event)
    assert mixed == old and mixed_stats == old_stats
    dicts = [(k, t, c, ev.fields_dict(k, f), u) for k, t, c, f, u in blocks.unflattened(flat)]  # logs, labels before
    assert _sent(dicts, per_event) == (old, old_stats)


@_KINDS
def test_a_flat_row_of_another_length_loses_only_itself(kind: int) -> None:
    rows = _queued(kind, 6)
    rows[2] = rows[2][:-1]  # one field short: queued by hand, wrongly
    _, stats = _sent(rows, per_event=False)
    assert stats["sent"] == 5 and stats["rejected_bad_event"] == 1


@_KINDS
def test_a_queued_event_holds_no_container_of_its_own_besides_the_callers_values(kind: int) -> None:
    (row,) = _queued(kind, 1)
    assert not any(type(item) is tuple for item in row)  # the fields are the row's own items, not a tuple in it


def test_unflattened_rows_are_the_five_item_rows() -> None:
    row: Any = (ev.LOG, 1, "ctx", None, True, "info", "m", None, {}, None)
    plain: Any = (ev.LOG, 2, "ctx", {"message": "m"}, False)
    assert blocks.unflattened([row, plain]) == [(ev.LOG, 1, "ctx", ("info", "m", None, {}, None), True), plain]
    assert blocks.flat_columns([row], ev.LOG_FIELDS) == {
        "level": ["info"], "message": ["m"], "logger": [None], "attributes": [{}], "exc": [None],
    }  # fmt: skip
    assert blocks.flat_columns([row, plain], ev.LOG_FIELDS) is None


# -- spans: an ended span is queued as itself, no longer as (SPAN, end_us, span, span, urgent)


def _ended_spans(n: int) -> list[Any]:
    """Spans and stages ended through a client: errors raised and set, unicode and secrets in names and attributes."""
    client: Any = Client.__new__(Client)  # as test_queued_tuple_parity's _queued_by_client builds one
    client.settings = Settings(service="unit")
    client._queue, client._qmax, client._run_id, client._closed = deque(), 10**6, "r", False
    client._exporter, client._root = SimpleNamespace(sleeping=False, wake=threading.Event()), _TRACE
    for i in range(n):
        attributes = {"route": f"/v1/ünï/{i % 4}", "user": None if i % 3 else f"u{i}@example.com", "n": i}
        if i % 6 == 5:
            attributes["password"] = "correct-horse-battery"
        try:
            opened = client.stage("load", dataset="tx", rows_in=10) if i % 8 == 7 else client.span(
                f"op-{i % 3}", kind=("internal", "server", "client")[i % 3], **attributes
            )  # fmt: skip
            with opened as span:
                if i % 5 == 1:
                    span.set_status("error", "token=sk-live-0123456789abcdef0123")
                if i % 7 == 3:
                    raise ValueError("password=hunter2hunter2 ✗")
        except ValueError:
            pass
    return list(client._queue)


def _five_item(rows: list[Any]) -> list[ev.Queued]:
    """What Span.__exit__ queued before (b37389f)."""
    return [(ev.SPAN, s.end_us, s, s, s.status == "error") for s in rows]


@pytest.mark.parametrize("per_event", [False, True], ids=["blocks", "single events"])
def test_spans_queued_as_themselves_send_the_records_their_tuples_sent(per_event: bool) -> None:
    spans = _ended_spans(48)
    assert spans and not [s for s in spans if type(s) is tuple]
    new, new_stats = _sent(spans, per_event)
    old, old_stats = _sent(_five_item(spans), per_event)
    assert new == old and new_stats == old_stats and new_stats["sent"] == 48
    # beside spans handed over as fields with their context (otel.py's rows), every third
    otel = [(ev.SPAN, s.end_us, s.context, s.fields(), s.status == "error") if i % 3 == 0 else s
            for i, s in enumerate(spans)]  # fmt: skip
    mixed, mixed_stats = _sent(otel, per_event)
    old_mixed, old_mixed_stats = _sent([r if type(r) is tuple else _five_item([r])[0] for r in otel], per_event)
    assert mixed == old_mixed and mixed_stats == old_mixed_stats


def test_an_error_span_queued_as_itself_is_sent_at_once() -> None:
    spans = _ended_spans(6)
    stats: Counter[str] = Counter()
    exporter = Exporter(Settings(service="unit"), deque(), dict(_ENVELOPE), [], "p", stats, MemoryTransport(stats))
    exporter._file([s for s in spans if s.status != "error"])
    assert not exporter._urgent
    exporter._file([s for s in spans if s.status == "error"][:1])
    assert exporter._urgent


@pytest.mark.parametrize("per_event", [False, True], ids=["blocks", "single events"])
def test_labels_queued_flat_send_the_records_the_old_dicts_sent(per_event: bool) -> None:
    """Against what client.ground_truth queued before (b37389f): a dict of its arguments, built here from the calls."""
    calls = _labels(30)
    flat = _queued_by_keywords(calls, "ground_truth")
    old = [(k, t, c, dict(call), u) for (k, t, c, _, u), call in zip(blocks.unflattened(flat), calls, strict=True)]
    assert _sent(flat, per_event) == _sent(old, per_event)
