"""The span table of a block, built by the faster code, is the one the code before it built.

:func:`blocks.span_columns` finds records of one context by one ``count`` instead of hashing every
context (issue 11, the sender's cost per event); the queued rows are read by ``itemgetter`` maps
instead of unpacking each row. ``_old_span_columns`` below is the code before that change, kept
here as the reference: every mix of contexts gives the same table, and every kind's block
encodes to the same bytes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from aitrace.producers import blocks
from aitrace.producers import events as ev
from aitrace.producers.block_kinds import block_kinds
from aitrace.producers.tracecontext import SpanContext
from aitrace.schemas.codec import SerializationContext

_T = "4bf92f3577b34da6a3ce929d0e0e4736"
_A = SpanContext(_T, "00f067aa0ba902b7")
_B = SpanContext(_T, "00f067aa0ba902b8", "00f067aa0ba902b7")


def _old_span_columns(ctxs: list[Any]) -> dict[str, Any]:
    span_ids, span_index = blocks.interned([c.span_id for c in ctxs])
    parent_of = {c.span_id: c.parent_span_id for c in dict.fromkeys(ctxs)}
    parents = list(map(parent_of.__getitem__, span_ids))
    return {"span_id": span_ids, "parent_span_id": blocks.optional_column(parents), "span_index": span_index}


_CONTEXTS: dict[str, list[Any]] = {
    "no records": [],
    "one record": [_A],
    "one context, the same object": [_A] * 50,
    "one context with a parent": [_B] * 50,
    "equal contexts, distinct objects": [SpanContext(_T, "00f067aa0ba902b8", "00f067aa0ba902b7") for _ in range(20)],
    "two contexts": [_A, _B] * 20,
    "one context, then another": [_A] * 30 + [_B],
    "another context amid one": [_A] * 10 + [_B] + [_A] * 10,
    "one span id, two parents (the later wins)": [_A, SpanContext(_T, _A.span_id, "00f067aa0ba902b9")] * 5,
    "a remote context": [SpanContext(_T, "00f067aa0ba902b7", None, True)] * 3,
    "a parent that is empty text": [SpanContext(_T, "00f067aa0ba902b7", "")] * 4,
}


@pytest.mark.parametrize("shape", _CONTEXTS)
def test_the_span_table_is_the_one_the_old_code_built(shape: str) -> None:
    ctxs = _CONTEXTS[shape]
    assert blocks.span_columns(list(ctxs)) == _old_span_columns(list(ctxs))


def _rows(kind: int, ctxs: list[SpanContext]) -> list[ev.Queued]:
    fields: dict[int, Any] = {
        ev.LOG: lambda i: {"level": "info", "message": f"m {i % 3}", "logger": None, "exc": None,
                           "attributes": {"batch": i, "user": "é ü"}},
        ev.GROUND_TRUTH: lambda i: {"request_id": f"req-{i}", "model_name": "fraud", "label": i % 2},
        ev.INFERENCE: lambda i: {"request_id": f"r{i}", "model_name": "m", "model_version": "v1", "latency_ms": 1.5,
                                 "status": "ok", "features": {"x": float(i), "c": "DE"}, "prediction": 1,
                                 "confidence": None, "error": None, "inputs_summary": None, "feature_version": None},
    }  # fmt: skip
    return [(kind, 1_700_000_000_000_000 + i, ctx, fields[kind](i), False) for i, ctx in enumerate(ctxs)]


@pytest.mark.parametrize("kind", [ev.LOG, ev.GROUND_TRUTH, ev.INFERENCE])
@pytest.mark.parametrize(
    "shape", ["one context, the same object", "another context amid one", "equal contexts, distinct objects"]
)
def test_a_block_encodes_to_the_bytes_the_old_span_table_gave(
    kind: int, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    block_kind = block_kinds([], None)[kind]
    rows = _rows(kind, _CONTEXTS[shape])
    envelope = {"service": "s", "service_version": None, "environment": "prod", "host": "h", "pid": 1,
                "run_id": None, "sampled": True, "labels": {}}  # fmt: skip
    ctx = SerializationContext("t")
    new = block_kind.plain(blocks.new_block("b1", _T, envelope, block_kind.columns(rows, Counter())), ctx)
    monkeypatch.setattr(blocks, "span_columns", _old_span_columns)
    old = block_kind.plain(blocks.new_block("b1", _T, envelope, block_kind.columns(rows, Counter())), ctx)
    assert new == old
