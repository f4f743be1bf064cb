"""Data-stats blocks: a trace's batch statistics leave as one ``aitrace.DataStatsBlock`` and read back as
the events they would have been one at a time (redaction, sampling, splitting, the spool, the DLQ)."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
import pytest
from aitrace.producers import data_stats_blocks
from aitrace.producers import events as ev
from aitrace.producers.blocks import new_block
from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.producers.summaries import summarize
from aitrace.schemas.codec import AvroSerializer
from test_e2e_processors import Worker, worker_factory
from test_exporter import _ENVELOPE, Running, start
from test_inference_blocks import _same
from test_log_blocks import (
    _CHILD,
    _TRACE,
    DECODER,
    _PerEvent,
    _sent,
    check_bad_shape,
    check_bit_flips,
    indexed_once,
    sending_client,
    spooled,
)

__all__ = ["start", "worker_factory"]  # the fixtures, imported


def _features(i: int, secret: bool) -> list[dict[str, Any]]:
    """What summarize gives for a small table, and hand-written summaries with odd values."""
    city = ["berlin", "paris", "bob@example.com" if secret else "rome", None][: 2 + i % 3]
    table = {"amount": [1.5 * i, 2.0, 7.25, math.nan], "city": (city * 4)[:4], "n": [i, i, 3, 4]}
    if secret:  # a secret-named column: its values are the secrets (in its min, max, quantiles, categories)
        table["card_pin"] = [4921, 7712 + i, 4921, 3301]
    out = summarize(table)
    if i % 3 == 0:
        out.append({"name": "age", "count": 10, "mean": 41, "quantiles": {0.5: 40, "0.9": 60.5}})  # ints, odd keys
    if i % 4 == 1:
        out.append({"name": "api_token" if secret else "token_count", "dtype": "categorical", "count": 3,
                    "categories": {"password": 2, 7: 1}})  # fmt: skip
    return out


def _queue(running: Running, n: int, *, secret: bool = False) -> None:
    features = [_features(i, secret) for i in range(n)]  # before queuing: all of them leave together
    for i in range(n):
        fields = {"stage": ("ingest", "train")[i % 2], "dataset": "tx", "features": features[i],
                  "row_count": 1000 + i, "class_counts": {"fraud": i, 0: 3} if i % 2 else {},
                  "label": "is_fraud" if i % 3 else None, "batch": i if i % 5 else f"b-{i}",
                  "rows_dropped": i % 2, "ingest_delay_ms": 1.5 if i % 2 else None}  # fmt: skip
        running.queue.append((ev.DATA, 1_700_000_000_000_000 + i, _CHILD if i % 2 else _TRACE, fields, False))
    running.exporter.wake.set()


@pytest.mark.parametrize("secret", [False, True])
def test_a_block_reads_back_as_the_events_sent_one_at_a_time(start: Callable[..., Running], secret: bool) -> None:
    redactor, single_redactor = Redactor(hash_key="k"), Redactor(hash_key="k")
    blocks = start([TraceSampler(1.0), redactor])
    single = start([TraceSampler(1.0), single_redactor, _PerEvent()])
    for running in (blocks, single):
        _queue(running, 40, secret=secret)
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert [DECODER.decode(r.value).schema for r in blocks.transport.records] == ["aitrace.DataStatsBlock"]
    assert {DECODER.decode(r.value).schema for r in single.transport.records} == {"aitrace.Batch"}
    assert _same(from_blocks, from_events)
    first = from_blocks[0]["payload"][1]
    assert first["features"][0]["name"] == "amount" and first["features"][0]["histogram_counts"]
    assert redactor.counts == single_redactor.counts and blocks.stats["sent"] == single.stats["sent"] == 40
    if secret:
        assert "example.com" not in repr(from_blocks) and redactor.total > 0
        assert "4921" not in repr(from_blocks) and "'password'" not in repr(from_blocks)
        pin = next(f for f in first["features"] if f["name"] == "card_pin")
        assert pin["count"] == 4 and pin["min"] is None and not pin["quantiles"] and not pin["histogram_edges"]


@pytest.mark.parametrize(
    "features",
    [[{"name": f"f{j}", "count": 1000, "mean": 0.5, "quantiles": {"0.5": 0.5}} for j in range(4)],  # no missing
     [{"name": "h", "count": 90, "missing": None, "histogram_edges": [0, 0.5, True], "histogram_counts": [70, 200]}],
     [{"name": "t", "histogram_edges": [0.0, "1.0"], "histogram_counts": [3]}]],  # a text edge: left out
)  # fmt: skip
def test_statistics_of_absent_counts_and_byte_sized_histograms_read_back_as_sent_one_at_a_time(
    start: Callable[..., Running], features: list[dict[str, Any]]
) -> None:
    """No class counts in any record, counts absent or None, histogram edges of ints, bools or a text: as per event."""
    blocks, single = start([TraceSampler(1.0), Redactor()]), start([TraceSampler(1.0), Redactor(), _PerEvent()])
    for running in (blocks, single):
        for i in range(20):
            fields = {"stage": "ingest", "dataset": "tx", "features": features, "row_count": 1000, "batch": str(i)}
            running.queue.append((ev.DATA, 1_700_000_000_000_000 + i, _TRACE, fields, False))
        running.exporter.wake.set()
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert _same(from_blocks, from_events) and blocks.stats == single.stats


def test_an_unsampled_trace_sends_no_statistics(start: Callable[..., Running]) -> None:
    running = start([TraceSampler(0.0), Redactor()])
    _queue(running, 20)
    assert _sent(running) == [] and running.stats["sampled_out"] == 20


def test_a_block_above_max_record_bytes_is_split_with_unique_ids(start: Callable[..., Running]) -> None:
    blocks, single = start(max_record_bytes=4000), start([_PerEvent()])
    for running in (blocks, single):
        _queue(running, 60)
    events = _sent(blocks)
    assert _same(events, _sent(single))
    assert len({e["event_id"] for e in events}) == 60 and len(blocks.transport.records) > 4


def test_large_statistics_leave_in_blocks_that_fit_without_splitting(start: Callable[..., Running]) -> None:
    """Records with long histograms: the first record's size sets the block length, no block is cut in halves."""
    features = summarize({f"x{j}": [float(v) for v in range(j, j + 150)] for j in range(4)})  # 300 edges each
    running = start(max_record_bytes=60_000)
    for i in range(100):
        fields = {"stage": "s", "dataset": "d", "features": features, "batch": str(i)}
        running.queue.append((ev.DATA, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    running.exporter.wake.set()
    events = _sent(running)
    assert [e["payload"][1]["batch"] for e in events] == [str(i) for i in range(100)]
    ids = {e["event_id"].rsplit(":", 1)[0] for e in events}
    assert len(ids) > 4 and not any("." in i for i in ids)  # several blocks, none of them a half
    assert max(len(r.value) for r in running.transport.records) <= 60_000


def test_unbuildable_statistics_are_left_out_and_counted() -> None:
    stats: Counter[str] = Counter()
    good = {"stage": "s", "dataset": "d", "features": [{"name": "a", "quantiles": {"0.5": 1.0}}]}
    rows = [(ev.DATA, 1, _TRACE, good, False),
            (ev.DATA, 2, _TRACE, {"dataset": "d"}, False),  # no stage
            (ev.DATA, 3, _TRACE, {**good, "features": [{"count": 1}]}, False),  # a feature without a name
            (ev.DATA, 4, _TRACE, {**good, "features": [{"name": "q", "quantiles": {"0.5": "hi"}}]}, False)]  # fmt: skip
    columns = data_stats_blocks.data_stats_columns(rows, stats)
    assert columns["time"] == [1] and columns["features"]["name"] == ["a"]
    assert stats["rejected_bad_event"] == 2 and stats["rejected_schema"] == 1


def _block(**changes: Any) -> dict[str, Any]:
    features = {"per_record": [2, 1], "name": ["a", "c"], "name_index": [0, 1, 0], "dtype": ["numeric", "categorical"],
                "dtype_index": [0, 1, 0], "count": [5, 3, 6], "missing": [0, 1, 0], "mean": [1.0, None, 2.0],
                "variance": [], "min": [], "max": [], "quantiles": {"0.5": [1.0, None, 2.0]},
                "histogram_edges": [0.0, 1.0, 0.0, 2.0], "histogram_edges_length": [2, 0, 2],
                "histogram_counts": [5, 6], "histogram_counts_length": [1, 0, 1],
                "categories": {"x": [1, 2]}}  # fmt: skip
    columns = {"time": [1_700_000_000_000_000, 1_700_000_000_000_001], "span_id": [_TRACE.span_id],
               "parent_span_id": [], "span_index": [0, 0], "stage": ["ingest"], "stage_index": [0, 0],
               "dataset": ["tx"], "dataset_index": [0, 0], "batch": ["1", None], "row_count": [10, 20],
               "rows_dropped": [0, 1], "label": [], "label_index": [], "class_counts": {"1": [3, None]},
               "ingest_delay_ms": [], "features": features}  # fmt: skip
    block = new_block("b1", _TRACE.trace_id, _ENVELOPE, columns)
    for name, value in changes.items():
        target = block["features"] if name.startswith("f_") else block
        target[name.removeprefix("f_")] = value
    return block


def _encoded(block: dict[str, Any]) -> bytes:
    return AvroSerializer("aitrace.DataStatsBlock")(block)


def test_a_well_formed_block_decodes_to_its_records() -> None:
    decoded = DECODER.decode(_encoded(_block()))
    assert [e["event_id"] for e in decoded.events] == ["b1:0", "b1:1"] and not decoded.rejected
    first, second = (e["payload"][1] for e in decoded.events)
    assert [f["name"] for f in first["features"]] == ["a", "c"] and second["features"][0]["count"] == 6
    assert first["features"][1] == {"name": "c", "dtype": "categorical", "count": 3, "missing": 1, "mean": None,
                                    "variance": None, "min": None, "max": None, "quantiles": {},
                                    "histogram_edges": [], "histogram_counts": [], "categories": {"x": 2}}  # fmt: skip
    assert second["features"][0]["histogram_edges"] == [0.0, 2.0] and second["features"][0]["quantiles"] == {"0.5": 2.0}
    assert (first["class_counts"], second["class_counts"], first["batch"], second["label"]) == ({"1": 3}, {}, "1", None)


@pytest.mark.parametrize(
    "changes",
    [
        {"row_count": [1]},
        {"stage_index": [0, 1]},
        {"f_per_record": [2]},
        {"f_per_record": [2, 2]},
        {"f_name_index": [0, 5, 0]},
        {"f_count": [1]},
        {"f_mean": [1.0]},
        {"f_quantiles": {"0.5": [1.0]}},
        {"f_histogram_edges_length": [2, 0, 1]},
        {"f_histogram_counts_length": []},
        {"f_categories": {"x": [3, 1]}},
        {"f_categories": {"x": [1]}},
    ],
)
def test_a_block_whose_columns_do_not_line_up_is_rejected_whole(changes: dict[str, Any]) -> None:
    check_bad_shape(_encoded(_block(**changes)))


def test_bit_flips_of_a_block_decode_or_reject_with_a_reason() -> None:
    check_bit_flips(_encoded(_block()), 17)


def test_the_spool_carries_blocks(tmp_path: Path) -> None:
    """A client whose broker is down spools its data-stats block; the bytes read back as every batch."""

    def send(client: aitrace.Client) -> None:
        for i in range(30):
            client.data_stats("ingest", "tx", summarize({"x": [i, 1.0, 2.0]}), row_count=3, batch=str(i))

    events, schemas = spooled(tmp_path, send, 30)
    # every batch, in whatever order the records failed (the first one alone may spill after the block behind it)
    by_batch = {e["payload"][1]["batch"]: e for e in events}
    assert sorted(by_batch, key=int) == [str(i) for i in range(30)] and len(events) == 30
    assert by_batch["4"]["payload"][1]["features"][0]["max"] == 4.0
    assert schemas == {"aitrace.DataStatsBlock"}


def test_the_default_chain_reads_blocks() -> None:
    processors, _ = default_processors(Settings(service="s"))
    assert data_stats_blocks.block_chain(processors) is not None
    assert data_stats_blocks.block_chain([*processors, _PerEvent()]) is None


def test_data_stats_blocks_through_the_worker_are_indexed_once_and_a_bad_one_dead_lettered(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker],
    tmp_path: Path,
) -> None:  # fmt: skip
    prefix = unique_name("dsblk")
    client = sending_client(kafka, prefix, tmp_path)
    for trace in range(3):
        with client.span(f"pipeline {trace}"):
            for i in range(20):
                client.data_stats("ingest", "tx", _features(i, False), row_count=4, batch=f"{trace}-{i}")
    assert client.flush(60)
    client.close(10)
    bad = _encoded(_block(f_per_record=[9, 9], block_id=f"bad-{os.urandom(4).hex()}"))
    indexed_once(kafka, search, worker_factory, prefix, ("aitrace.DataStats", 60), ("events.data", bad))


def test_a_feature_named_like_the_label_series_is_dead_lettered_from_a_block_too(tmp_path: Path) -> None:
    """The block path turns the block into events and checks them as single events are checked: a
    feature named ``__label__`` (the key of the stage's label series) is a series-clash there too."""
    from aitrace.infra.stack import free_port
    from aitrace.processors.options import WorkerOptions
    from aitrace.processors.pipeline import Pipeline
    from aitrace.producers.spool import Spool

    client = aitrace.init(service="s", kafka_bootstrap=f"127.0.0.1:{free_port()}",
                          spool_dir=str(tmp_path / "spool"), delivery_timeout_ms=1000)  # fmt: skip
    client.data_stats("ingest", "tx", summarize({"x": [1.0, 2.0], "__label__": [0.0, 1.0]}), row_count=2)
    client.data_stats("ingest", "tx", summarize({"x": [1.0, 3.0]}), row_count=2)
    client.close(timeout=3)
    spool = Spool(str(tmp_path / "spool"), 1 << 30)
    pipe = Pipeline(WorkerOptions(index=False))
    letters = []
    while (rec := spool.next_record()) is not None:
        spool.ack(rec)
        out = pipe.process_record(rec.value, key=None, topic="t", partition=0, offset=0, traces={}, now=0.0)
        letters += [(letter.reason, letter.detail) for letter in out.dead_letters]
    assert [reason for reason, _ in letters] == ["series-clash"] and "__label__" in letters[0][1], letters


def test_two_class_names_that_redact_to_one_keep_the_block(start: Callable[..., Running]) -> None:
    """Class counts under ``bob@example.com`` and ``bob%40example.com`` (one name once redacted) dropped the block."""
    running = start([Redactor(hash_key="k")])
    for i in range(20):
        fields = {"stage": "s", "dataset": "d", "features": [], "batch": str(i),
                  "class_counts": {"bob@example.com": 3, "bob%40example.com": 1}}  # fmt: skip
        running.queue.append((ev.DATA, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    running.exporter.wake.set()
    sent = _sent(running)
    assert len(sent) == 20 and running.stats["dropped_processor_error"] == 0 and "bob" not in repr(sent)
    assert all(len(e["payload"][1]["class_counts"]) == 1 for e in sent)


@pytest.mark.parametrize("where", ["row_count", "count", "histogram_counts"])
def test_a_count_past_64_bits_costs_only_its_own_record(start: Callable[..., Running], where: str) -> None:
    """A long field past 64 bits raised OverflowError from the encoder, which the serializer did not turn into
    EncodeError, so the block was not split in halves and every record of it was dropped."""
    running = start([Redactor()])
    for i in range(20):
        big = 10**30 if i == 7 else None
        feature = {"name": "age", "count": 10, "histogram_edges": [0.0, 1.0, 2.0], "histogram_counts": [5, 5]}
        if big and where != "row_count":
            feature[where] = big if where == "count" else [5, big]
        fields = {"stage": "s", "dataset": "d", "features": [feature], "batch": str(i), "row_count": 5}
        if big and where == "row_count":
            fields["row_count"] = big
        running.queue.append((ev.DATA, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    running.exporter.wake.set()
    batches = [e["payload"][1]["batch"] for e in _sent(running)]
    assert batches == [str(i) for i in range(20) if i != 7] and running.stats["rejected_schema"] == 1


@pytest.mark.parametrize("deny", [["count"], ["mean"], ["missing"], ["index"], ["time"]])
def test_a_denied_number_column_keeps_its_block(start: Callable[..., Running], deny: list[str]) -> None:
    """``init(deny=["count"])`` named the block's row_count and features.count columns (longs), ``deny=["mean"]``
    its features.mean (doubles), ``deny=["index"]`` its index columns: blanked to ``[REDACTED]`` texts, which no
    number array takes, every block of data statistics was rejected by the schema (shown by a review: 0 of 5 while
    single events arrived). A typed number column now gets a single event's rule: doubles NaN, ints kept."""
    redactor, single_redactor = Redactor(deny=deny, hash_key="k"), Redactor(deny=deny, hash_key="k")
    blocks = start([redactor])
    single = start([single_redactor, _PerEvent()])
    for running in (blocks, single):
        for i in range(20):
            feature = {"name": "age", "dtype": "numeric", "count": 10, "mean": 1.5, "missing": 0}
            fields = {"stage": "s", "dataset": "d", "features": [feature], "batch": str(i), "row_count": 5}
            running.queue.append((ev.DATA, 1_700_000_000_000_000 + i, _TRACE, fields, False))
        running.exporter.wake.set()
    sent = [e["payload"][1] for e in _sent(blocks)]
    assert [p["batch"] for p in sent] == [str(i) for i in range(20)] and blocks.stats["rejected_schema"] == 0
    assert all(p["row_count"] == 5 and p["features"][0]["count"] == 10 for p in sent)
    assert all(math.isnan(p["features"][0]["mean"]) == (deny == ["mean"]) for p in sent)
    assert _same(_sent(blocks), _sent(single)) and redactor.counts == single_redactor.counts


@pytest.mark.parametrize("deny", [["histogram_edges"], ["edges"], ["counts"]])
def test_a_histogram_under_a_denied_name_is_left_out_of_a_block(deny: list[str]) -> None:
    """Shown by a review: the concatenated histogram edges under a secret's name were made NaN, which the worker's
    decoder refuses ("histogram edges must be finite and rising"): the whole record was lost, counted nowhere, and
    under ``deny=["counts"]`` the counts went out. The histogram is left out whole, edges and counts of every row,
    and the record reads back without it."""
    from aitrace.schemas.data_stats_block import feature_stats

    redactor = Redactor(deny=deny)
    (chain,) = data_stats_blocks.block_chain([redactor]) or [None]
    assert chain is not None
    feature = {"name": "age", "dtype": "numeric", "count": 10, "missing": 0, "mean": 1.5}
    feature.update({"histogram_edges": [0.0, 1.0, 2.0], "histogram_counts": [5, 5]})
    columns = data_stats_blocks.data_stats_columns([(ev.DATA, 1, _TRACE, {"stage": "s", "dataset": "d",
                                                   "features": [feature]}, False)], Counter())  # fmt: skip
    out = chain(new_block("b", _TRACE.trace_id, dict(_ENVELOPE), columns))
    features = out["features"]
    assert [list(features[k]) for k in ("histogram_edges", "histogram_edges_length")] == [[], []]
    assert [list(features[k]) for k in ("histogram_counts", "histogram_counts_length")] == [[], []]
    (row,) = feature_stats(features, "block b")
    assert row["histogram_edges"] == [] and row["histogram_counts"] == [] and row["mean"] == 1.5
    assert redactor.counts["field"] == 5
