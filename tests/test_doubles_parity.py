"""Columns the block builders hand over as :class:`Doubles` encode to the bytes their plain lists gave.

The data-stats and inference builders mark a column of floats only (moments, quantiles, latencies,
numeric features, confidences) as :class:`~aitrace.schemas.avro_writer.Doubles`, and the writer
packs it without a second look at each item's type (issue 11, the sender's cost per event). Built
with ``Doubles`` replaced by ``list`` (the code before), every block encodes to the same bytes.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from aitrace.producers import data_stats_blocks, inference_blocks
from aitrace.producers import events as ev
from aitrace.producers.block_kinds import block_kinds
from aitrace.producers.blocks import new_block
from aitrace.producers.tracecontext import SpanContext
from aitrace.schemas.avro_writer import Doubles, writer
from aitrace.schemas.codec import SerializationContext

_T = "4bf92f3577b34da6a3ce929d0e0e4736"
_CTX = SpanContext(_T, "00f067aa0ba902b7")
_ENVELOPE = {"service": "s", "service_version": None, "environment": "prod", "host": "h", "pid": 1,
             "run_id": None, "sampled": True, "labels": {}}  # fmt: skip
_ODD = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e308, 5e-324, 0.1]


def _feature(i: int, **extra: Any) -> dict[str, Any]:
    x = _ODD[i % len(_ODD)]
    return {"name": f"f{i % 3}", "count": 10, "mean": x, "variance": 0.5, "quantiles": {"0.5": x, "0.9": 1.0}, **extra}


_DATA: dict[str, list[dict[str, Any]]] = {
    "floats only": [{"stage": "s", "dataset": "d", "features": [_feature(i), _feature(i + 1)]} for i in range(20)],
    "ints among the moments": [{"stage": "s", "dataset": "d", "features": [_feature(i, mean=i)]} for i in range(9)],
    "a moment missing": [{"stage": "s", "dataset": "d", "features": [_feature(i, variance=None)]} for i in range(5)],
    "a quantile level on some": [
        {"stage": "s", "dataset": "d", "features": [_feature(i, quantiles={"0.5": 1.0} if i % 2 else {})]}
        for i in range(6)
    ],
    "no features": [{"stage": "s", "dataset": "d", "features": []}] * 3,
}
_INFERENCE: dict[str, list[dict[str, Any]]] = {
    "floats only": [{"latency_ms": _ODD[i % 8], "confidence": 0.5, "features": {"x": _ODD[i % 8]}} for i in range(20)],
    "ints and bools": [{"latency_ms": i, "confidence": 1.0, "features": {"x": i, "b": i % 2 == 0}} for i in range(9)],
    "confidence missing on some": [{"latency_ms": 1.5, "confidence": None if i % 2 else 0.9} for i in range(6)],
    "a feature missing on some": [{"latency_ms": 1.5, "features": {"x": 1.0} if i % 2 else {}} for i in range(6)],
    "mixed feature values": [{"latency_ms": 2.0, "features": {"x": [1.0, "a", None, 2][i % 4]}} for i in range(8)],
}


def _inference_fields(extra: dict[str, Any]) -> dict[str, Any]:
    fields = {"request_id": "r", "model_name": "m", "model_version": None, "latency_ms": 1.0, "status": "ok",
              "features": {}, "prediction": None, "confidence": None, "error": None, "inputs_summary": None,
              "feature_version": None}  # fmt: skip
    return {**fields, **extra}


def _encoded(kind: int, fields: list[dict[str, Any]]) -> bytes:
    block_kind = block_kinds([], None)[kind]
    rows = [(kind, 1_700_000_000_000_000 + i, _CTX, f, False) for i, f in enumerate(fields)]
    columns = block_kind.columns(rows, Counter())
    return block_kind.plain(new_block("b1", _T, _ENVELOPE, columns), SerializationContext("t"))


@pytest.mark.parametrize("shape", _DATA)
def test_a_data_stats_block_encodes_as_with_plain_lists(shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    new = _encoded(ev.DATA, _DATA[shape])
    monkeypatch.setattr(data_stats_blocks, "Doubles", list)
    assert new == _encoded(ev.DATA, _DATA[shape])


@pytest.mark.parametrize("shape", _INFERENCE)
def test_an_inference_block_encodes_as_with_plain_lists(shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = [_inference_fields(f) for f in _INFERENCE[shape]]
    new = _encoded(ev.INFERENCE, fields)
    monkeypatch.setattr(inference_blocks, "Doubles", list)
    assert new == _encoded(ev.INFERENCE, fields)


_SCHEMA = {
    "type": "record",
    "name": "T",
    "fields": [
        {"name": "a", "type": {"type": "array", "items": ["null", "double"]}},
        {"name": "b", "type": {"type": "array", "items": "double"}},
    ],
}


@pytest.mark.parametrize(
    "values", [[], [1.5], _ODD, [float(i) for i in range(300)], [1.0, None, 2.0], [1.0, 2], [1.0, "x"]]
)
def test_the_writer_packs_doubles_as_it_writes_the_same_list(values: list[Any]) -> None:
    """Even a column changed after it was built (a None or a text put in) is written as its plain list is."""
    write = writer(_SCHEMA)

    def result(column: list[Any]) -> Any:
        try:
            return write({"a": column, "b": [x for x in column if x is not None]})
        except Exception as exc:
            return type(exc)

    assert result(Doubles(values)) == result(list(values))
