"""Ground-truth blocks: a trace's labels leave as one ``aitrace.GroundTruthBlock`` and read back as the
events they would have been one at a time (redaction, sampling, splitting, the DLQ)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aitrace.producers import events as ev
from aitrace.producers import ground_truth_blocks
from aitrace.producers.blocks import new_block
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.schemas.codec import AvroSerializer
from test_e2e_processors import Worker, worker_factory
from test_exporter import _ENVELOPE, Running, start
from test_inference_blocks import _same
from test_log_blocks import _CHILD, _TRACE, DECODER, _PerEvent, _sent, check_bad_shape, indexed_once, sending_client

__all__ = ["start", "worker_factory"]  # the fixtures, imported


def _queue(running: Running, n: int, *, secret: bool = False) -> None:
    for i in range(n):
        label: Any = ("yes", "no", 1, 0.5, None)[i % 5]
        request_id = f"req-{i} bob{i}@example.com" if secret and i % 7 == 0 else f"req-{i}"
        fields = {"request_id": request_id, "model_name": ("churn", "fraud")[i % 2], "label": label}
        running.queue.append((ev.GROUND_TRUTH, 1_700_000_000_000_000 + i, _CHILD if i % 2 else _TRACE, fields, False))
    running.exporter.wake.set()


@pytest.mark.parametrize("secret", [False, True])
def test_a_block_reads_back_as_the_events_sent_one_at_a_time(start: Callable[..., Running], secret: bool) -> None:
    redactor, single_redactor = Redactor(hash_key="k"), Redactor(hash_key="k")
    blocks = start([TraceSampler(1.0), redactor])
    single = start([TraceSampler(1.0), single_redactor, _PerEvent()])
    for running in (blocks, single):
        _queue(running, 40, secret=secret)
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert [DECODER.decode(r.value).schema for r in blocks.transport.records] == ["aitrace.GroundTruthBlock"]
    assert _same(from_blocks, from_events)
    assert [e["payload"][1]["label"] for e in from_blocks[:5]] == ["yes", "no", "1", "0.5", "null"]
    assert "example.com" not in repr(from_blocks) and redactor.counts == single_redactor.counts
    assert blocks.stats["sent"] == single.stats["sent"] == 40


def test_an_unsampled_trace_sends_no_labels(start: Callable[..., Running]) -> None:
    running = start([TraceSampler(0.0), Redactor()])
    _queue(running, 40)
    assert _sent(running) == [] and running.stats["sampled_out"] == 40


def test_a_block_above_max_record_bytes_is_split_with_unique_ids(start: Callable[..., Running]) -> None:
    running = start(max_record_bytes=600)
    _queue(running, 200)
    events = _sent(running)
    assert [e["payload"][1]["request_id"] for e in events] == [f"req-{i}" for i in range(200)]
    assert len({e["event_id"] for e in events}) == 200 and len(running.transport.records) > 4


def test_unbuildable_labels_are_left_out_and_counted() -> None:
    stats: Counter[str] = Counter()
    rows = [(ev.GROUND_TRUTH, 1, _TRACE, {"request_id": "r", "model_name": "m", "label": 1}, False),
            (ev.GROUND_TRUTH, 2, _TRACE, {"request_id": "r"}, False)]  # fmt: skip
    columns = ground_truth_blocks.ground_truth_columns(rows, stats)
    assert columns["time"] == [1] and columns["label"] == ["1"] and stats["rejected_bad_event"] == 1


def _block(**changes: Any) -> dict[str, Any]:
    columns = {"time": [1, 2], "span_id": [_TRACE.span_id], "parent_span_id": [], "span_index": [0, 0],
               "request_id": ["r1", "r2"], "model_name": ["m"], "model_name_index": [0, 0], "label": ["1", "0"],
               "label_index": [0, 1]}  # fmt: skip
    block = new_block("b1", _TRACE.trace_id, _ENVELOPE, columns)
    block.update(changes)
    return block


def _encoded(block: dict[str, Any]) -> bytes:
    return AvroSerializer("aitrace.GroundTruthBlock")(block)


@pytest.mark.parametrize("changes", [{"request_id": ["r1"]}, {"label_index": [0, 2]}, {"model_name_index": [0]}])
def test_a_block_whose_columns_do_not_line_up_is_rejected_whole(changes: dict[str, Any]) -> None:
    check_bad_shape(_encoded(_block(**changes)))


def test_ground_truth_blocks_through_the_worker_are_indexed_once_and_a_bad_one_dead_lettered(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker],
    tmp_path: Path,
) -> None:  # fmt: skip
    prefix = unique_name("gtblk")
    client = sending_client(kafka, prefix, tmp_path)
    for trace in range(3):
        with client.span(f"request {trace}"):
            for i in range(50):
                client.ground_truth(f"t{trace}-r{i}", "churn", i % 2)
    assert client.flush(60)
    client.close(10)
    bad = _encoded(_block(request_id=["r1"], block_id=f"bad-{os.urandom(4).hex()}"))
    indexed_once(kafka, search, worker_factory, prefix, ("aitrace.GroundTruth", 150), ("events.inference", bad))
