"""The exporter over the in-memory transport: batching, the processor chain and record splitting, no broker."""

from __future__ import annotations

import enum
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter, Processor
from aitrace.producers.transport import MemoryTransport
from test_producer_support import decode, metric_steps

_ENVELOPE = {
    "service": "unit",
    "service_version": None,
    "environment": "test",
    "host": "h",
    "pid": 1,
    "run_id": None,
    "sampled": True,
    "labels": {},
}
_CTX = tc.SpanContext(tc.new_trace_id(), tc.new_span_id())


class Running:
    """An exporter thread over a :class:`MemoryTransport`, fed as the client feeds it."""

    def __init__(self, tmp_path: Path, processors: list[Processor], **overrides: Any) -> None:
        self.queue: deque = deque()
        self.stats: Counter[str] = Counter()
        self.transport = MemoryTransport(self.stats)
        settings = {"service": "unit", "spool_dir": str(tmp_path / "spool"), **overrides}
        self.exporter = Exporter(
            Settings(**settings), self.queue, dict(_ENVELOPE), processors, "t", self.stats, self.transport
        )
        self.exporter.start()

    def log(self, message: str) -> None:
        fields = {"level": "INFO", "message": message, "logger": None, "attributes": {}, "exc": None}
        self.queue.append((ev.LOG, time.time_ns() // 1000, _CTX, fields, False))
        self.exporter.wake.set()

    def metric(self, step: int, loss: float) -> None:
        self.queue.append((ev.METRIC, time.time_ns() // 1000, _CTX, ({"loss": loss}, step, None, None), False))
        self.exporter.wake.set()

    def flush(self) -> list[dict[str, Any]]:
        ticket = self.exporter.request_flush()
        deadline = time.monotonic() + 30.0
        with self.exporter.changed:
            while not self.exporter.idle(ticket) and time.monotonic() < deadline:
                self.exporter.changed.wait(0.05)
        assert self.exporter.idle(ticket)
        return [decode(record.value) for record in self.transport.records]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def make(processors: list[Processor] | None = None, **settings: Any) -> Running:
        started.append(Running(tmp_path, processors or [], **settings))
        return started[-1]

    yield make
    for running in started:
        running.exporter.stop(5.0)
        assert running.transport.closed


def test_events_and_metric_points_arrive_batched(start: Callable[..., Running]) -> None:
    running = start()
    for i in range(10):
        running.log(f"line {i}")
    for step in range(1, 101):
        running.metric(step, 1.0 / step)
    batches = running.flush()
    messages = [e["payload"][1]["message"] for b in batches for e in b["events"]]
    assert messages == [f"line {i}" for i in range(10)]
    assert sorted(s for b in batches for s in metric_steps(b)) == list(range(1, 101))
    assert running.stats["sent"] == 110
    assert running.stats["records_sent"] == len(running.transport.records) < 110  # batched, not one per event


def _drop_odd_lines(item: dict[str, Any]) -> dict[str, Any] | None:
    payload = item.get("payload")
    if payload and payload[1].get("message", "").endswith(("1", "3", "5", "7", "9")):
        return None
    return item


def test_a_processor_drops_and_the_drops_are_counted(start: Callable[..., Running]) -> None:
    running = start([_drop_odd_lines])
    for i in range(10):
        running.log(f"line {i}")
    batches = running.flush()
    messages = [e["payload"][1]["message"] for b in batches for e in b["events"]]
    assert messages == [f"line {i}" for i in range(0, 10, 2)]
    assert running.stats["dropped_by_processor"] == 5


class _DropsOddLines:
    """A processor that drops out of band, as structlog's processors do."""

    drop_reason = "dropped_odd"

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        if _drop_odd_lines(item) is None:
            raise ev.DropEvent
        return item


def test_a_processor_raising_drop_event_drops_and_counts_under_its_reason(start: Callable[..., Running]) -> None:
    seen: list[str] = []

    def after(item: dict[str, Any]) -> dict[str, Any]:
        seen.append(item["payload"][1]["message"] if "payload" in item else "block")
        return item

    running = start([_DropsOddLines(), after])
    for i in range(10):
        running.log(f"line {i}")
        running.metric(i + 1, float(i))
    batches = running.flush()
    messages = [e["payload"][1]["message"] for b in batches for e in b["events"]]
    assert messages == seen[: len(messages)] == [f"line {i}" for i in range(0, 10, 2)]
    assert sorted(s for b in batches for s in metric_steps(b)) == list(range(1, 11))
    assert running.stats["dropped_odd"] == 5 and "dropped_by_processor" not in running.stats


def _keep_odd_steps(item: dict[str, Any]) -> dict[str, Any]:
    """A processor that keeps only some rows of a metric block: a new block, no count of its own."""
    if "steps" not in item:
        return item
    rows = [i for i, step in enumerate(item["steps"]) if step % 2]
    out = {**item, "steps": [item["steps"][i] for i in rows], "times": [item["times"][i] for i in rows]}
    out["series"] = [{**s, "values": [s["values"][i] for i in rows]} for s in item["series"]]
    return out


def test_rows_a_processor_leaves_out_of_a_block_are_counted(start: Callable[..., Running]) -> None:
    running = start([_keep_odd_steps])
    for step in range(1, 11):
        running.metric(step, 0.5)
    batches = running.flush()
    assert sorted(s for b in batches for s in metric_steps(b)) == [1, 3, 5, 7, 9]
    assert running.stats["dropped_by_processor"] == 5 and running.stats["sent"] == 5


def test_a_record_above_max_record_bytes_is_split_in_halves(start: Callable[..., Running]) -> None:
    running = start(max_record_bytes=2_000)
    for i in range(40):
        running.log(f"line {i} " + "x" * 100)
    batches = running.flush()
    assert len(running.transport.records) > 1
    assert all(len(record.value) <= 2_000 for record in running.transport.records)
    messages = [e["payload"][1]["message"].split()[1] for b in batches for e in b["events"]]
    assert messages == [str(i) for i in range(40)]


def test_the_worker_gives_the_gil_away_once_per_slice(
    start: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aitrace.producers import exporter as exporter_module

    running = start()
    running.exporter.stop(5.0)  # driven by hand below
    sleeps: list[float] = []
    monkeypatch.setattr(exporter_module.time, "sleep", sleeps.append)
    clock = iter([10.0, 10.0, 10.0005, 10.0011, 10.0011])
    monkeypatch.setattr(exporter_module.time, "perf_counter", lambda: next(clock))
    exporter = running.exporter
    exporter._slice_end = 0.0
    exporter._share()  # a slice starts: yield, then work until 10.001
    exporter._share()  # 10.0005: inside the slice
    exporter._share()  # 10.0011: the slice is over, yield again
    assert sleeps == [0, 0]


_BAD_STEPS = [2**70, -(2**70), 10**400, 2**63, -(2**63) - 1]
_BAD_EPOCHS = [2**70, 2**31, -(2**31) - 1]


@pytest.mark.parametrize(
    ("field", "big"),
    [pytest.param("step", b, id=f"step-{i}") for i, b in enumerate(_BAD_STEPS)]
    + [pytest.param("epoch", b, id=f"epoch-{i}") for i, b in enumerate(_BAD_EPOCHS)],
)
def test_a_step_or_epoch_the_schema_cannot_hold_costs_only_its_own_point(
    start: Callable[..., Running], field: str, big: int
) -> None:
    """A metric block that did not fit the schema was dropped whole: one step past 64 bits (fastavro: "int too large
    to convert to C long") cost all 20 points of its block, and halving it lost every point of a block whose first
    and last steps were bad. A step past 64 bits is a bad step (its point is dropped, counted); an epoch past 32 bits
    (Avro's int: fastavro wrote 2**31 and up, which other Avro readers refuse) is left out of its point, counted."""
    running = start()
    bad = (0, 7, 19)
    for i in range(20):
        step, epoch = (big if i in bad and field == "step" else i), (big if i in bad and field == "epoch" else 1)
        running.queue.append((ev.METRIC, 1_700_000_000_000_000 + i, _CTX, ({"loss": 0.5}, step, epoch, "s"), False))
    running.exporter.wake.set()
    batches = running.flush()
    if field == "step":
        assert sorted(s for b in batches for s in metric_steps(b)) == [i for i in range(20) if i not in bad]
        assert running.stats["rejected_bad_step"] == 3 and running.stats["sent"] == 17
    else:
        blocks = [block for batch in batches for block in batch["metric_blocks"]]
        assert [e for block in blocks for e in block["epochs"]] == [-1 if i in bad else 1 for i in range(20)]
        assert running.stats["rejected_bad_epoch"] == 3 and running.stats["sent"] == 20
    assert running.stats["rejected_schema"] == 0


def test_the_largest_step_and_epoch_the_schema_holds_are_sent(start: Callable[..., Running]) -> None:
    running = start()
    for i, (step, epoch) in enumerate([(2**63 - 1, 2**31 - 1), (-(2**63), -(2**31))]):
        running.queue.append((ev.METRIC, 1_700_000_000_000_000 + i, _CTX, ({"loss": 0.5}, step, epoch, "s"), False))
    running.exporter.wake.set()
    (batch,) = running.flush()
    assert metric_steps(batch) == [2**63 - 1, -(2**63)] and batch["metric_blocks"][0]["epochs"] == [2**31 - 1, -(2**31)]


def test_a_fault_every_point_shares_loses_no_point_and_costs_no_encode_a_point(
    start: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step of a block past 64 bits: each point is a bad step, counted without an encode each (halving
    the block down to each point cost the sender 112-174 us a point). A split that is not text (``split=5``, an
    Enum member, a list) is written as text: it lost the whole block."""
    running = start()
    for i in range(1000):
        running.queue.append((ev.METRIC, 1_700_000_000_000_000 + i, _CTX, ({"loss": 0.5}, 2**70 + i, 1, "s"), False))
    encodes = []
    real = running.exporter._encode
    monkeypatch.setattr(running.exporter, "_encode", lambda *a: encodes.append(1) or real(*a))
    running.exporter.wake.set()
    assert running.flush() == []
    assert running.stats["rejected_bad_step"] == 1000 and running.stats["rejected_schema"] == 0 and len(encodes) < 3


class _Split(enum.Enum):
    VAL = "val"


@pytest.mark.parametrize(("split", "text"), [(5, "5"), (_Split.VAL, "val"), (["a", 1], "['a', 1]"), (2.5, "2.5")])
def test_a_split_that_is_not_text_is_sent_as_text(start: Callable[..., Running], split: Any, text: str) -> None:
    running = start()
    for i in range(5):
        running.queue.append((ev.METRIC, 1_700_000_000_000_000 + i, _CTX, ({"loss": 0.5}, i, None, split), False))
    running.exporter.wake.set()
    (batch,) = running.flush()
    assert [block["split"] for block in batch["metric_blocks"]] == [text] and running.stats["sent"] == 5


class _NoText:
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_a_metric_name_that_is_not_text_is_sent_as_text(start: Callable[..., Running]) -> None:
    """``{5: 0.5}`` lost its whole block (the schema's names are strings); it is metric "5", as text_map writes keys.
    A name with no text is left out, and a name that repeats another once written as text, counted."""
    running = start()
    points: list[dict[Any, float]] = [{5: 0.5, None: 1.0}, {5: 0.5, None: 1.0}]
    points += [{"a": 1.0, _NoText(): 2.0}, {1: 1.0, "1": 2.0}]
    for i, values in enumerate(points):
        running.queue.append((ev.METRIC, 1_700_000_000_000_000 + i, _CTX, (values, i, None, None), False))
    running.exporter.wake.set()
    names = sorted(tuple(s["name"] for s in block["series"]) for b in running.flush() for block in b["metric_blocks"])
    assert names == [("1",), ("5", "None"), ("a",)]
    stats = running.stats
    assert stats["rejected_bad_metric_name"] == 1 and stats["rejected_duplicate_metric"] == 1 and stats["sent"] == 4
