"""Event blocks kept as columns (:mod:`aitrace.processors.block_columns`) give the worker exactly what
their events give it one dict at a time: the same documents, trace states and documents, series
chunks (byte for byte), alerts and series states."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
import test_inference_blocks as inference
import test_log_blocks as logs
import test_span_blocks as spans
from aitrace.processors import block_columns, correlate
from aitrace.processors.block_columns import BlockColumns
from aitrace.processors.decode import RecordDecoder
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.schemas.span_block import SPAN_SHAPE
from test_exporter import Running, start

__all__ = ["start"]  # the fixture, imported

NOW = 1_700_000_100.0


def _dump(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _run(records: list[bytes]) -> tuple[list[Any], dict[str, Any], dict[str, Any], int]:
    """Everything the worker makes of the records, in order; and how many decoded as columns."""
    pipe = Pipeline(WorkerOptions(index=True), decoder=RecordDecoder(now_us=lambda: int(NOW * 1e6)))
    traces: dict[str, Any] = {}
    table: dict[str, Any] = {}
    out: list[Any] = []
    as_columns = 0
    for offset, value in enumerate(records):
        result = pipe.process_record(value, key=None, topic="t", partition=0, offset=offset, traces=traces, now=NOW)
        as_columns += bool(result.decoded and result.decoded.columns)
        out.append((result.events, [letter.reason for letter in result.dead_letters], _dump(result.actions)))
        out.append([(key, chunk) for key, chunk in result.chunks])  # bytes: every array, key and order alike
        for _key, chunk in result.chunks:
            alerts, actions = pipe.series(chunk, table)
            out.append((_dump(alerts), _dump(actions)))
    out.extend(pipe.tick(0, traces, now=NOW + 3600))  # close every trace: its document
    return out, traces, table, as_columns


def _compare(records: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    new, new_traces, new_table, as_columns = _run(records)
    assert as_columns == len(records)  # every block took the column path
    with monkeypatch.context() as m:
        m.setattr(block_columns, "block_columns", lambda *_a: None)  # the event-by-event path
        old, old_traces, old_table, none = _run(records)
    assert none == 0
    assert len(new) == len(old)
    for a, b in zip(new, old, strict=True):
        assert a == b
    assert _dump(new_traces) == _dump(old_traces)
    assert _dump(new_table) == _dump(old_table)


def _records(running: Running) -> list[bytes]:
    running.flush()
    return [r.value for r in running.transport.records]


@pytest.mark.parametrize(("odd", "secret"), [(False, False), (True, True)])
def test_inference_blocks_as_columns_equal_their_events(
    start: Callable[..., Running], monkeypatch: pytest.MonkeyPatch, odd: bool, secret: bool
) -> None:
    running = start(default_processors(Settings(service="unit"))[0])
    inference._queue(running, 60, odd=odd, secret=secret)  # 2 models, errors, absent features, predictions
    records = _records(running)
    assert len(records) >= 1
    _compare(records, monkeypatch)


def test_log_and_span_blocks_as_columns_equal_their_events(
    start: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    running = start(default_processors(Settings(service="unit"))[0])
    logs._queue_logs(running, 40)  # error levels, an exception, loggers, attributes
    spans._queue(running, 30, odd=True)
    records = _records(running)
    assert {RecordDecoder().decode(r).schema for r in records} == {"aitrace.LogBlock", "aitrace.SpanBlock"}
    _compare(records, monkeypatch)


def test_a_block_with_one_bad_record_is_left_to_the_event_path() -> None:
    good = inference._encoded(inference._block())
    bad = inference._encoded(inference._block(latency_ms=[1.0, -1.0]))
    decoder = RecordDecoder()
    assert decoder.decode(good).columns and not decoder.decode(good).rejected
    decoded = decoder.decode(bad)
    assert not decoded.columns and [r.index for r in decoded.rejected] == [1] and len(decoded.events) == 1


def _span_rows_block(rows: list[int]) -> dict[str, Any]:
    """A span block of the given rows of five: a root and two children, one span id twice, errors with and
    without words (a failed span without any: "span failed")."""
    columns: dict[str, list[Any]] = {
        "time": [1_700_000_000_000_100 + i for i in range(5)],
        "span_index": [1, 2, 1, 0, 2],  # a span id twice: the later row wins
        "start_time": [1_700_000_000_000_000 + 7 * i for i in range(5)],
        "duration_us": [100, 5, 300, 1000, 0],
        "name_index": [0, 0, 0, 1, 0],
        "kind_index": [0] * 5,
        "status_index": [1, 0, 1, 0, 1],
        "error_type": [None, None, "E", None, None],
        "error_message": ["boom", None, None, None, None],
    }
    return spans._block(
        **{name: [values[i] for i in rows] for name, values in columns.items()},
        span_id=["00f067aa0ba902b7", "00f067aa0ba902b8", "00f067aa0ba902b9"],
        parent_span_id=[None, "00f067aa0ba902b7", "00f067aa0ba902b8"],
        name=["load", "root"],
        status=["ok", "error"],
        attributes={},
    )


@pytest.mark.parametrize("rows", [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
@pytest.mark.parametrize("max_spans", [2, 2000])
def test_a_span_block_folds_into_its_trace_as_its_events_do(rows: list[int], max_spans: int) -> None:
    """Spans read from the columns: the same span tree, root, errors, bounds and dropped spans as their events."""
    block = _span_rows_block(rows)
    config = correlate.CorrelationConfig(max_spans=max_spans)
    columns = BlockColumns(SPAN_SHAPE, block, len(rows), np.asarray(block["time"], dtype=np.int64))
    by_columns, by_events = correlate.new_state("t", 0), correlate.new_state("t", 0)
    correlate._apply_columns(by_columns, columns, config)
    correlate._apply_events(by_events, columns.events(), config)
    assert _dump(by_columns) == _dump(by_events)
