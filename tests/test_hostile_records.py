"""Records valid under the schema but hostile in content, through the pipeline in process.

Each test is a record some Kafka client could write to an input topic; the worker must
process it, or dead-letter it with a reason, without losing the valid part of it, without
an exception on the series side and without work that grows faster than the record.
Work is bounded by counts, never by wall-clock time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import synth as S
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, RecordOutput


def _process(pipe: Pipeline, value: bytes, traces: dict[str, Any], offset: int = 0) -> RecordOutput:
    return pipe.process_record(value, key=b"k", topic="t", partition=0, offset=offset, traces=traces, now=time.time())


def test_an_empty_metric_block_is_dead_lettered_and_the_valid_block_beside_it_detected() -> None:
    # A block of no points decoded and made a chunk whose empty series raised IndexError in the
    # run checks on the series side: the chunk was dead-lettered whole, the valid series with it.
    tr = S.trace_id()
    valid = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.full(5, np.nan)})
    empty = S.metric_block(trace=tr, run_id="r", start_step=0, series={"acc": []})
    pipe = Pipeline(WorkerOptions(index=False))
    out = _process(pipe, S.encode(S.batch([], [valid, empty])), {})
    [letter] = out.dead_letters
    assert (letter.reason, letter.rejected) == ("bad-shape", ("block:1",)) and "no points" in letter.detail
    table: dict[str, Any] = {}
    alerts = [a for _, chunk in out.chunks for a in pipe.series(chunk, table)[0]]
    assert [a["detector"] for a in alerts] == ["nan"]  # the valid block's diverged loss is still told
