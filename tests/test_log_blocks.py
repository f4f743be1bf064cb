"""Log blocks: logs leave as one columnar ``aitrace.LogBlock`` per trace and batch, and read back
as the same events that logs sent one at a time read as.

Unit tests run the exporter over the in-memory transport and decode its records with the
worker's :class:`RecordDecoder`; the end-to-end test sends blocks (and a malformed one) through
the real Tansu and ``aitrace worker`` and finds each log indexed once.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
import pytest
from aitrace.processors.decode import RecordDecoder
from aitrace.processors.dlq import parse_headers
from aitrace.producers import events as ev
from aitrace.producers import log_blocks
from aitrace.producers import tracecontext as tc
from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.schemas.codec import AvroSerializer, DecodeError
from test_e2e_processors import Worker, _consume_all, _count, _wait, worker_factory
from test_exporter import _ENVELOPE, Running, start
from test_poison import _produce_raw
from test_producer_support import consume

__all__ = ["start", "worker_factory"]  # the fixtures, imported

DECODER = RecordDecoder()
_TRACE = tc.SpanContext(tc.new_trace_id(), tc.new_span_id())
_CHILD = tc.SpanContext(_TRACE.trace_id, tc.new_span_id(), _TRACE.span_id)


class _PerEvent:
    """A processor without ``accepts_log_blocks``: the chain then sends logs one event at a time."""

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        return item


def _queue_logs(running: Running, n: int, *, secret: bool = False) -> None:
    for i in range(n):
        level = ("info", "warning", "error", "debug")[i % 4]
        message = f"step {i} password=hunter2{i} mail bob{i}@example.com" if secret else f"step {i}"
        attributes = {"batch": i, "note": "card 4111 1111 1111 1111", "db_password": "x"} if i % 3 else {}
        if i % 5:  # a secret-named attribute holding a status word keeps it, in a block as in an event
            attributes["auth"] = "healthy" if i % 2 else f"tok-{i}-9f8e7d"
        exc = ValueError(f"bad {i}") if i == 5 else None
        ctx = _CHILD if i % 2 else _TRACE
        fields = {"level": level, "message": message, "logger": "app" if i % 2 else None,
                  "attributes": attributes, "exc": exc}  # fmt: skip
        running.queue.append((ev.LOG, 1_700_000_000_000_000 + i, ctx, fields, False))
    running.exporter.wake.set()


def _sent(running: Running) -> list[dict[str, Any]]:
    running.flush()
    return [e for record in running.transport.records for e in DECODER.decode(record.value).events]


def _without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "event_id"} for e in events]


@pytest.mark.parametrize("secret", [False, True])
def test_a_block_reads_back_as_the_events_sent_one_at_a_time(start: Callable[..., Running], secret: bool) -> None:
    redactor, single_redactor = Redactor(hash_key="k"), Redactor(hash_key="k")
    blocks = start([TraceSampler(1.0), redactor])
    single = start([TraceSampler(1.0), single_redactor, _PerEvent()])
    for running in (blocks, single):
        _queue_logs(running, 40, secret=secret)
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert [DECODER.decode(r.value).schema for r in blocks.transport.records] == ["aitrace.LogBlock"]
    assert {DECODER.decode(r.value).schema for r in single.transport.records} == {"aitrace.Batch"}
    assert _without_ids(from_blocks) == _without_ids(from_events)  # envelope, payload, redaction alike
    block_id = from_blocks[0]["event_id"].rsplit(":", 1)[0]
    assert [e["event_id"] for e in from_blocks] == [f"{block_id}:{i}" for i in range(40)]
    assert from_blocks[5]["payload"][1]["error_type"] == "ValueError"
    assert "bad 5" in from_blocks[5]["payload"][1]["stack_trace"]
    text = repr(from_blocks)
    if secret:
        assert "hunter2" not in text and "example.com" not in text and redactor.counts["secret_assignment"] == 40
    assert "4111" not in text and "'db_password': '[REDACTED]'" in text
    assert "'auth': 'healthy'" in text and "tok-" not in text
    assert redactor.counts["field"] == single_redactor.counts["field"]
    assert blocks.stats["sent"] == single.stats["sent"] == 40


def test_an_unsampled_trace_keeps_its_error_logs_marked_unsampled(start: Callable[..., Running]) -> None:
    running = start([TraceSampler(0.0), Redactor()])
    _queue_logs(running, 40)
    events = _sent(running)
    assert b"step 0" not in running.transport.records[0].value  # what was sampled out does not travel
    assert [e["payload"][1]["level"] for e in events] == ["error"] * 10
    assert {e["sampled"] for e in events} == {False}
    assert running.stats["sampled_out"] == 30 and running.stats["sent"] == 10


class _DropsDebug:
    accepts_log_blocks = True
    drop_reason = "debug_dropped"

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        if "payload" in item or "steps" in item:
            return item
        keep = [i for i, level in enumerate(item["level_index"]) if item["level"][level] != "debug"]
        return log_blocks.take_rows(item, keep)


def test_a_processor_that_reads_blocks_leaves_rows_out_counted(start: Callable[..., Running]) -> None:
    running = start([_DropsDebug()])
    _queue_logs(running, 40)
    events = _sent(running)
    assert len(events) == 30 and "debug" not in {e["payload"][1]["level"] for e in events}
    assert running.stats["debug_dropped"] == 10


def test_a_processor_for_single_events_still_sees_every_log(start: Callable[..., Running]) -> None:
    seen: list[str] = []

    def record(item: dict[str, Any]) -> dict[str, Any]:
        seen.append(item["payload"][1]["message"])
        return item

    running = start([record])
    _queue_logs(running, 12)
    assert len(_sent(running)) == 12 and seen == [f"step {i}" for i in range(12)]


def test_a_block_above_max_record_bytes_is_split_with_unique_ids(start: Callable[..., Running]) -> None:
    running = start(max_record_bytes=2000)
    for i in range(200):
        running.log(f"line {i} " + "x" * 40)
    events = _sent(running)
    assert [e["payload"][1]["message"].split()[1] for e in events] == [str(i) for i in range(200)]
    assert len({e["event_id"] for e in events}) == 200
    assert len(running.transport.records) > 4 and all(len(r.value) <= 2000 for r in running.transport.records)


def test_odd_values_are_made_text_and_unbuildable_records_counted() -> None:
    stats: Counter[str] = Counter()
    good = {"level": "info", "message": 42, "logger": 7, "attributes": {1: object()}, "exc": None}
    rows = [(ev.LOG, 1, _TRACE, good, False), (ev.LOG, 2, _TRACE, {"message": "no level"}, False)]
    columns = log_blocks.log_columns(rows, stats)
    assert columns["message"] == ["42"] and columns["logger"] == ["7"] and list(columns["attributes"]) == ["1"]
    assert columns["attributes"]["1"][0].startswith("<object object")
    assert stats["rejected_bad_event"] == 1 and stats["stringified"] == 1


def test_attribute_values_are_written_as_text_value_writes_them() -> None:
    stats: Counter[str] = Counter()
    values = [1, 2.5, True, float("nan"), 2**70, "text", None, {"a": [1]}]
    rows = [(ev.LOG, i, _TRACE, {"level": "info", "message": "m", "logger": None, "exc": None,
             "attributes": {} if v is None else {"v": v}}, False) for i, v in enumerate(values)]  # fmt: skip
    column = log_blocks.log_columns(rows, stats)["attributes"]["v"]
    assert column == [None if v is None else ev.text_value(v, Counter()) for v in values]
    numbers = log_blocks.log_columns(rows[:4], stats)["attributes"]["v"]  # the one-JSON-call path
    assert numbers == ["1", "2.5", "true", "null"]
    valued_none = [(ev.LOG, 1, _TRACE, {**rows[0][3], "attributes": {"w": None}}, False), rows[1]]
    assert log_blocks.log_columns(valued_none, stats)["attributes"]["w"] == ["null", None]


def _block(**changes: Any) -> dict[str, Any]:
    columns = {
        "time": [1_700_000_000_000_000, 1_700_000_000_000_001], "span_id": [_TRACE.span_id], "parent_span_id": [],
        "span_index": [0, 0], "level": ["info", "error"], "level_index": [0, 1], "message": ["a", "b"],
        "message_index": [0, 1], "logger": [], "logger_index": [], "attributes": {},
        "error_type": [], "error_message": [], "stack_trace": [],
    }  # fmt: skip
    block = log_blocks.new_block("b1", _TRACE.trace_id, _ENVELOPE, columns)
    block.update(changes)
    return block


def _encoded(block: dict[str, Any]) -> bytes:
    return AvroSerializer("aitrace.LogBlock")(block)


@pytest.mark.parametrize(
    "changes",
    [
        {"message_index": [0]},
        {"message_index": [0, 2]},
        {"span_index": [0, -1]},
        {"logger": ["x"], "logger_index": [0]},
        {"logger": ["x"], "logger_index": [0, 1]},
        {"parent_span_id": [None, None]},
        {"attributes": {"a": ["x"]}},
        {"error_type": [None]},
        # every record carries the block's labels: 8,000 on 8,000 rows took the worker 1.75 GB (a review)
        {"labels": {f"k{i}": "v" for i in range(125_001)}},
    ],
)
def test_a_block_whose_columns_do_not_line_up_is_rejected_whole(changes: dict[str, Any]) -> None:
    check_bad_shape(_encoded(_block(**changes)))


def test_bad_records_of_a_block_are_rejected_one_by_one() -> None:
    two_spans = {"span_id": ["zz", _TRACE.span_id], "span_index": [0, 1]}
    decoded = DECODER.decode(_encoded(_block(level=["loud", "error"], **two_spans)))
    assert [e["event_id"] for e in decoded.events] == ["b1:1"]
    assert [(r.index, r.reason) for r in decoded.rejected] == [(0, "invalid-span-id")]
    only_level = DECODER.decode(_encoded(_block(level=["loud", "error"])))
    assert [(r.index, r.reason) for r in only_level.rejected] == [(0, "bad-value")]


def check_bad_shape(data: bytes) -> None:
    """``data`` is rejected whole, as ``bad-shape``."""
    with pytest.raises(DecodeError) as err:
        DECODER.decode(data)
    assert err.value.reason == "bad-shape"


def check_bit_flips(data: bytes, seed: int) -> None:
    """Copies of ``data`` with one bit flipped each decode or are rejected with a reason: both happen, nothing else."""
    rng = random.Random(seed)
    outcomes = set()
    for _ in range(400):
        flipped = bytearray(data)
        flipped[rng.randrange(10, len(data))] ^= 1 << rng.randrange(8)
        try:
            DECODER.decode(bytes(flipped))
            outcomes.add("decoded")
        except DecodeError as exc:
            outcomes.add(exc.reason)
    assert "decoded" in outcomes and outcomes - {"decoded"}


def test_bit_flips_of_a_block_decode_or_reject_with_a_reason() -> None:
    check_bit_flips(_encoded(_block()), 11)


def spooled(tmp_path: Path, send: Callable[[aitrace.Client], None], n: int) -> tuple[list[dict[str, Any]], set[str]]:
    """The events and schemas a client whose broker is down leaves in its spool after ``send`` queued ``n``."""
    from aitrace.infra.stack import free_port
    from aitrace.producers.spool import Spool

    client = aitrace.init(service="spooled", kafka_bootstrap=f"127.0.0.1:{free_port()}",
                          spool_dir=str(tmp_path / "spool"), delivery_timeout_ms=1000)  # fmt: skip
    send(client)
    client.close(timeout=3)
    assert client.stats()["spilled"] == n
    spool = Spool(str(tmp_path / "spool"), 1 << 30)
    records = []
    while (rec := spool.next_record()) is not None:
        records.append(rec)
        spool.ack(rec)
    events = [e for rec in records for e in DECODER.decode(rec.value).events]
    return events, {DECODER.decode(rec.value).schema for rec in records}


def test_the_spool_carries_blocks(tmp_path: Path) -> None:
    """A client whose broker is down spools its log block; the bytes read back as every log."""

    def send(client: aitrace.Client) -> None:
        for i in range(30):
            client.log("info", f"kept {i}", i=i)

    events, schemas = spooled(tmp_path, send, 30)
    # in whatever order the records failed (the first one alone may spill after the block behind it)
    messages = sorted((e["payload"][1]["message"] for e in events), key=lambda m: int(m.split()[1]))
    assert messages == [f"kept {i}" for i in range(30)]
    assert schemas == {"aitrace.LogBlock"}


def test_the_default_chain_reads_blocks() -> None:
    processors, _ = default_processors(Settings(service="s"))
    assert log_blocks.block_chain(processors) is not None
    assert log_blocks.block_chain([*processors, _PerEvent()]) is None


# ---------------------------------------------------------------- through a running worker


def test_log_blocks_through_the_worker_are_indexed_once_and_a_bad_one_dead_lettered(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker],
    tmp_path: Path,
) -> None:  # fmt: skip
    prefix = unique_name("logblk")
    client = sending_client(kafka, prefix, tmp_path)
    for trace in range(3):
        with client.span(f"request {trace}"):
            for i in range(50):
                client.log("warning" if i % 10 else "error", f"trace {trace} line {i}", i=i)
    n = 150
    assert client.flush(60)
    client.close(10)
    bad = _encoded(_block(message_index=[0], block_id=f"bad-{os.urandom(4).hex()}"))
    indexed_once(kafka, search, worker_factory, prefix, ("aitrace.LogRecord", n), ("events.system", bad))
    assert _count(search.url, f"{prefix}-events-*", {"match": {"message": "line"}}) == n


def sending_client(kafka: Any, prefix: str, tmp_path: Path) -> aitrace.Client:
    """A client of the test broker under ``prefix``."""
    return aitrace.init(service="blocks", kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix,
                        spool_dir=str(tmp_path / "spool"))  # fmt: skip


def indexed_once(
    kafka: Any, search: Any, worker_factory: Callable[..., Worker], prefix: str, sent: tuple[str, int],
    bad: tuple[str, bytes],
) -> None:  # fmt: skip
    """The ``n`` records of ``sent`` (record name, n) on the broker came in blocks, each id once; with the
    worker running and the ``bad`` block (topic, bytes) produced, every one is indexed once and the bad
    block dead-lettered as ``bad-shape``."""
    record, n = sent

    def ids_of(records: list[tuple[str, dict[str, Any]]]) -> list[str]:
        events = [e for _, batch in records for e in batch["events"]]
        return [e["event_id"] for e in events if e["payload"][0] == record]

    # read before the worker starts (it reads from the earliest offset): no alert records to skip yet
    ids = ids_of(consume(kafka.bootstrap, prefix, lambda records: len(ids_of(records)) >= n))
    assert all(":" in i for i in ids)  # as <block_id>:<i>: they came in blocks
    assert len(ids) == n == len(set(ids))
    worker = worker_factory(kafka.bootstrap, search.url, prefix)
    worker.start()
    _produce_raw(kafka.bootstrap, [(f"{prefix}.{bad[0]}", _TRACE.trace_id.encode(), bad[1])])
    _wait(f"{n} records indexed",
          lambda: _count(search.url, f"{prefix}-events-*", {"terms": {"event.id": ids}}) == n, worker)  # fmt: skip
    dead = _consume_all(kafka.bootstrap, f"{prefix}.dlq", 1)
    assert [parse_headers(m.headers())["reason"] for m in dead] == ["bad-shape"]
    assert _count(search.url, f"{prefix}-events-*", {"terms": {"event.id": ids}}) == n
    worker.stop()


def _tags(text: str) -> str:
    """``text`` in Unicode tag characters: invisible, each mirroring an ASCII character."""
    return "".join(chr(0xE0000 + ord(c)) for c in text)


@pytest.mark.parametrize(
    "text",
    ["ＰＡＳＳＷＯＲＤ＝Hunter2Secret", "pass\u200bword=Hunter2Secret", _tags("password=Hunter2Secret"),
     "p\u0430ssw\u043erd=Hunter2Secret"],  # the last with a Cyrillic a and o
)  # fmt: skip
def test_a_column_of_disguised_secrets_is_scanned_not_set_aside(start: Callable[..., Running], text: str) -> None:
    """A long column whose texts fire no trigger is left as it is; a disguised secret's text fires none either,
    its plain variant does (a column of tag characters went to the index untouched)."""
    running = start([TraceSampler(1.0), Redactor()])
    for i in range(40):
        fields = {"level": "info", "message": f"step {i}", "logger": None, "attributes": {"note": text}, "exc": None}
        running.queue.append((ev.LOG, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    events = _sent(running)
    notes = {e["payload"][1]["attributes"]["note"] for e in events}
    assert len(events) == 40 and notes == {"[REDACTED:secret_assignment]"}, notes


def test_a_denied_number_column_keeps_its_block(start: Callable[..., Running]) -> None:
    """``deny=["time"]`` or ``deny=["index"]`` named the block's time and index columns (longs and ints): blanked to
    ``[REDACTED]`` texts, every log block was rejected by the schema, while single events kept their times. A
    secret-named list of numbers in an attribute is a free value and stays blanked."""
    redactor, single_redactor = (
        Redactor(deny=["time", "index"], hash_key="k"),
        Redactor(deny=["time", "index"], hash_key="k"),
    )
    blocks = start([redactor])
    single = start([single_redactor, _PerEvent()])
    for running in (blocks, single):
        for i in range(20):
            fields = {"level": "info", "message": f"step {i}", "logger": "app", "attributes": {"pin": [4, 3, 2, 1]},
                      "exc": None}  # fmt: skip
            running.queue.append((ev.LOG, 1_700_000_000_000_000 + i, _TRACE, fields, False))
        running.exporter.wake.set()
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert len(from_blocks) == 20 and blocks.stats["rejected_schema"] == 0
    assert _without_ids(from_blocks) == _without_ids(from_events)
    assert [e["time"] for e in from_blocks] == [1_700_000_000_000_000 + i for i in range(20)]
    assert "4, 3, 2" not in repr(from_blocks) and redactor.counts == single_redactor.counts


def test_a_key_word_a_control_character_hides_is_found_in_a_long_column(start: Callable[..., Running]) -> None:
    """A block's long text column is left unscanned when no pattern's trigger fires on its texts joined; a key word
    split by controls (``p\\x00a\\x00s\\x00s...``) fires none, so the column must be scanned where one could hide."""
    running = start([Redactor()])
    hidden = "\x00".join("password")
    for i in range(20):
        fields = {"level": "info", "message": f"login {hidden}: Tr0ub4dorXyz{i}", "logger": "app", "attributes": {},
                  "exc": None}  # fmt: skip
        running.queue.append((ev.LOG, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    running.exporter.wake.set()
    messages = [e["payload"][1]["message"] for e in _sent(running)]
    assert len(messages) == 20 and not any("Tr0ub4dor" in m for m in messages)
