"""A caller's value that raises when the sender reads it costs only its own event, counted; never the events
beside it, and never an exception in the caller. Found by a fuzz of the client's methods by argument type
(review of 7adc579): such a value lost the rest of the exporter's slice uncounted (``run_started(seed=...)``),
a whole trace's group of its kind (``metric(step=...)``, ``inference(error=...)``, ``span(name=...)``), or
replaced the caller's own exception (an exception whose ``__str__`` raises, a stage's ``rows_out`` set to text).
"""

from __future__ import annotations

import enum
import math
import os
import socket
from collections import Counter, deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from aitrace.producers import tracecontext as tc
from aitrace.producers.client import Client, default_processors
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter
from aitrace.producers.transport import MemoryTransport
from aitrace.schemas.codec import AvroDeserializer
from test_producer_support import decode


class _LocalClient(Client):
    """The real client whose exporter is not started: the test runs its ``_take`` and ``_send_pending``."""

    def _start_worker(self) -> None:
        producer = self.settings.producer
        self._root = tc.SpanContext(tc.trace_id_for(producer.run_id or "r"), tc.new_span_id())
        self._queue, self.stats_counter = deque(), Counter()
        envelope = {
            "service": producer.service, "service_version": None, "environment": producer.environment,
            "host": socket.gethostname(), "pid": os.getpid(), "run_id": producer.run_id, "sampled": True,
            "labels": {},
        }  # fmt: skip
        self.transport = MemoryTransport(self.stats_counter)
        self._exporter = Exporter(
            self.settings, self._queue, envelope, self._processors, "t", self.stats_counter, self.transport
        )

    def close(self, timeout: float | None = None) -> bool:
        """Nothing to stop or flush: the exporter thread was never started (the test drains it)."""
        self._closed = True
        return True


def _client() -> _LocalClient:
    settings = Settings(service="unit", run_id="run-1", resource_interval_s=0)
    processors, redactor = default_processors(settings)
    return _LocalClient(settings, processors, None, None, None, redactor)


def _sent(client: _LocalClient) -> Counter[str]:
    """Events that arrived, by record kind (metric points as ``metric``)."""
    client._exporter._take()
    client._exporter._send_pending()
    out: Counter[str] = Counter()
    for record in client.transport.records:
        batch = decode(record.value)
        out.update(event["payload"][0].removeprefix("aitrace.") for event in batch["events"])
        out["metric"] += sum(len(block["steps"]) for block in batch["metric_blocks"])
    return out


class _NoInt:
    """A value whose ``int()`` raises RuntimeError, as a tensor of many elements does."""

    def __int__(self) -> int:
        raise RuntimeError("a Tensor with 2 elements cannot be converted to Scalar")

    def __str__(self) -> str:
        raise RuntimeError("no text either")


def _step(c: Client) -> None:
    c.metric({"loss": 0.5}, step=_NoInt())  # type: ignore[arg-type]


def _error(c: Client) -> None:
    c.inference("bad", "m", 1.0, error=np.array([0.1, 0.2]))


def _status(c: Client) -> None:
    with c.span("x") as span:
        span.set_status("error", np.array([1, 2]))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "lost", "counter"),
    [(_step, "metric", "rejected_bad_step"),
     (_error, "InferenceRecord", "rejected_bad_event"), (_status, "Span", "rejected_bad_event")],
    ids=["metric step", "inference error", "span status message"],
)  # fmt: skip
def test_a_value_that_raises_costs_only_its_own_event(bad: Callable[[Client], None], lost: str, counter: str) -> None:
    c = _client()
    for i in range(30):
        c.log("info", f"line {i}")
        c.metric({"loss": 0.5}, step=i)
        c.inference(f"r{i}", "m", 1.0)
        c.ground_truth(f"r{i}", "m", 1)
        with c.span(f"s{i}"):
            pass
    bad(c)
    expected = Counter({"LogRecord": 30, "metric": 30, "InferenceRecord": 30, "GroundTruth": 30, "Span": 30})
    assert _sent(c) == expected
    assert c.stats_counter[counter] == 1 and c.stats_counter["dropped_exporter_error"] == 0


def test_a_seed_that_raises_is_left_out_of_its_run_event() -> None:
    c = _client()
    c.log("info", "before")
    c.run_started({"lr": 0.1}, seed=_NoInt())  # type: ignore[arg-type]
    c.log("info", "after")
    assert _sent(c) == Counter({"LogRecord": 2, "RunLifecycle": 1})


def test_a_single_event_that_cannot_be_built_costs_only_itself() -> None:
    """With a processor of the user's own in the chain every event travels alone (its payload built one by one):
    a feature's quantiles as a list (not a mapping) raised AttributeError out of the exporter's slice, and the
    rest of the slice was lost, uncounted."""
    settings = Settings(service="unit", run_id="run-1", resource_interval_s=0)
    processors, redactor = default_processors(settings)
    c = _LocalClient(settings, [*processors, lambda event: event], None, None, None, redactor)
    for i in range(20):
        c.log("info", f"line {i}")
        c.data_stats("stage", "d", [{"name": "f", "count": 3}], row_count=3)
    c.data_stats("stage", "d", [{"name": "f", "quantiles": [0.5]}], row_count=3)
    for i in range(20):
        c.log("info", f"line {i}")
    assert _sent(c) == Counter({"LogRecord": 40, "DataStats": 20}) and c.stats_counter["rejected_bad_event"] == 1


@pytest.mark.parametrize("name", [["a", "b"], {"a": 1}, np.array(3)], ids=["list", "dict", "0-d array"])
def test_a_span_named_by_an_unhashable_value_is_sent_beside_the_others(name: Any) -> None:
    c = _client()
    for i in range(10):
        with c.span(f"s{i}"):
            pass
    with c.span(name):
        pass
    assert _sent(c) == Counter({"Span": 11}) and c.stats_counter["dropped_exporter_error"] == 0


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


def test_the_callers_exception_leaves_a_span_whatever_its_message() -> None:
    c = _client()
    with pytest.raises(_Unprintable), c.span("step"):
        raise _Unprintable()
    assert _sent(c) == Counter({"Span": 1})


def test_a_stage_whose_rows_out_is_not_a_number_ends_and_is_sent() -> None:
    c = _client()
    with c.stage("clean", rows_in=10) as stage:
        stage.rows_out = "5"  # type: ignore[assignment]
    assert tc.current() is None and _sent(c) == Counter({"Span": 1})


_TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "headers",
    [{"traceparent": [_TP]}, {"traceparent": 5}, [("traceparent", _TP, "x")], f"traceparent: {_TP}", b"traceparent"],
    ids=["a list value", "an int value", "3-tuples", "a str", "bytes"],
)
def test_headers_of_no_known_shape_continue_nothing_and_are_counted(headers: Any) -> None:
    """The docs say a malformed header continues nothing and is counted: these raised into the caller."""
    c = _client()
    with c.extract(headers) as ctx:
        assert ctx is None
    assert c.stats()["bad_traceparent"] == 1


def test_a_step_or_epoch_that_is_not_a_whole_number_is_not_taken_as_one() -> None:
    """A bool, np.float32(0.5) and Decimal("1.5") were written as steps 1, 0 and 1, and an epoch of 1.5 as 1
    (as_int's docstring: bools and fractions are not steps). numpy's whole numbers are."""
    c = _client()
    for step in (True, np.float32(0.5), Decimal("1.5"), 1.5):
        c.metric({"loss": 0.5}, step=step)  # type: ignore[arg-type]
    c.metric({"loss": 0.5}, step=7, epoch=1.5)  # type: ignore[arg-type]
    c.metric({"loss": 0.5}, step=np.int64(8), epoch=np.int64(2))  # type: ignore[arg-type]
    c.metric({"loss": 0.5}, step=9.0, epoch=3)  # type: ignore[arg-type]
    c._exporter._take()
    c._exporter._send_pending()
    blocks = [block for record in c.transport.records for block in decode(record.value)["metric_blocks"]]
    points = sorted((s, b["epochs"][i] if b["epochs"] else -1) for b in blocks for i, s in enumerate(b["steps"]))
    assert points == [(7, -1), (8, 2), (9, 3)]
    assert c.stats_counter["rejected_bad_step"] == 4 and c.stats_counter["rejected_bad_epoch"] == 1


def test_a_numpy_integer_level_is_read_as_a_number() -> None:
    c = _client()
    c.log(np.int64(40), "disk full")  # type: ignore[arg-type]
    c._exporter._take()
    c._exporter._send_pending()
    (record,) = c.transport.records
    (event,) = decode(record.value)["events"]
    assert event["payload"][1]["level"] == "error"


@pytest.mark.parametrize(
    "setting",
    [{"batch_max_events": 1.5}, {"batch_max_events": math.inf}, {"queue_size": math.nan}, {"queue_size": True},
     {"batch_linger_ms": math.nan}, {"resource_interval_s": math.nan}, {"resource_interval_s": math.inf},
     {"resource_interval_s": 2**70}],
    ids=lambda s: f"{next(iter(s))}={next(iter(s.values()))!r}",
)  # fmt: skip
def test_a_setting_no_sender_can_work_with_is_refused_at_init(setting: dict[str, Any]) -> None:
    """NaN passed every comparison: the sender spun (linger) or never bounded its queue, the resource sampler
    sampled 3,000 times a second; 1.5 or inf events a batch lost every event; a wait past TIMEOUT_MAX killed
    the sampler's thread."""
    settings = Settings(service="unit", **setting)
    with pytest.raises(ValueError, match=next(iter(setting))):
        _LocalClient(settings, [], None, None, None, None)


def test_a_resource_sampler_every_nan_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        _client().start_resource_sampler(math.nan)


def test_names_given_as_numbers_are_sent_as_text() -> None:
    """run_id=12345 and environment=5 were accepted, and the schema's strings then refused every event."""
    settings = Settings(service="unit", run_id=12345, environment=5, resource_interval_s=0)
    c = _LocalClient(settings, [], None, None, None, None)
    c.log("info", "hello")
    c._exporter._take()
    c._exporter._send_pending()
    (record,) = c.transport.records
    (event,) = decode(record.value)["events"]
    assert (event["run_id"], event["environment"]) == ("12345", "5")


def test_a_huge_attribute_name_costs_only_the_record_that_carries_it() -> None:
    """An attribute's name is a column of its block, and halving a block too large for one record kept every
    column in each half: one 1 MB name made every half too large, and all 200 logs were dropped as oversized."""
    c = _client()
    for i in range(200):
        c.log("info", f"line {i}", **({"k" * 1_000_000: 1} if i == 7 else {"a": 1}))
    assert _sent(c) == Counter({"LogRecord": 199}) and c.stats_counter["dropped_oversized"] == 1


def test_a_group_that_fails_part_way_counts_only_what_it_did_not_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole group was counted as dropped, the events it had already sent too (sent + dropped > enqueued)."""
    c = _client()
    for i in range(10):
        c.metric({"loss": 0.5}, step=i)
    for i in range(5):
        c.log("info", f"line {i}")

    def fails(*_: Any) -> None:
        raise RuntimeError("a fault after the metrics were sent")

    monkeypatch.setattr(c._exporter, "_send_blocks", fails)
    assert _sent(c) == Counter({"metric": 10}) and c.stats_counter["dropped_exporter_error"] == 5


def test_a_seed_past_the_schemas_long_goes_into_the_config_as_text() -> None:
    """torch.initial_seed() of an unseeded run is any 64-bit unsigned number: half are past Avro's long, and
    run_started(seed=torch.initial_seed()) lost the whole run event."""
    c = _client()
    c.run_started({"lr": 0.1}, seed=13640143127458532357)
    c._exporter._take()
    c._exporter._send_pending()
    (record,) = c.transport.records
    (event,) = decode(record.value)["events"]
    payload = event["payload"][1]
    assert payload["seed"] is None and payload["config"] == {"lr": "0.1", "seed": "13640143127458532357"}


class _Meter:
    """An average meter read before its first update: float() divides by its count of 0."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def __float__(self) -> float:
        return self.total / self.count


def test_a_metric_value_whose_float_raises_anything_costs_only_that_value() -> None:
    """A ZeroDivisionError (or an AttributeError) from one value's float() escaped the block's build, and every
    metric point of the trace was lost as an exporter error (review /work/rev-t, D1)."""
    c = _client()
    for i in range(200):
        c.metric({"loss": 0.5}, step=i)
    c.metric({"loss": _Meter(), "acc": 0.9}, step=200)  # type: ignore[dict-item]
    assert _sent(c) == Counter({"metric": 201}) and c.stats_counter["rejected_non_numeric_metric"] == 1


def test_a_histogram_of_numpy_arrays_first_in_its_block_costs_nothing_beside_it() -> None:
    """np.histogram's arrays made the block's size estimate raise (an array's truth value), and the whole data group
    of the trace was lost when that row came first (review /work/rev-t, D2); the row itself is sent, its arrays
    read as the sequences they are."""
    c = _client()
    counts, edges = np.histogram(np.arange(100.0), bins=5)
    c.data_stats("stage", "d", [{"name": "f", "count": 100, "histogram_counts": counts, "histogram_edges": edges}])
    for _ in range(50):
        c.data_stats("stage", "d", [{"name": "f", "count": 3}], row_count=3)
    assert _sent(c) == Counter({"DataStats": 51}) and c.stats_counter["dropped_exporter_error"] == 0


def test_a_step_or_epoch_given_as_text_is_read_as_its_number() -> None:
    """Text steps were read by int() before the bounds (review /work/rev-t, D4): "5" is step 5, " 7 " step 7."""
    c = _client()
    c.metric({"loss": 0.5}, step="5", epoch="2")  # type: ignore[arg-type]
    c.metric({"loss": 0.5}, step=" 7 ")  # type: ignore[arg-type]
    c._exporter._take()
    c._exporter._send_pending()
    blocks = [block for record in c.transport.records for block in decode(record.value)["metric_blocks"]]
    assert sorted(s for b in blocks for s in b["steps"]) == [5, 7] and c.stats_counter["rejected_bad_step"] == 0


class _Name(enum.Enum):
    LOSS = "loss"


def test_a_metric_name_given_as_an_enum_is_its_value_as_a_split_is() -> None:
    c = _client()
    c.metric({_Name.LOSS: 0.5}, step=1, split=_Name.LOSS)  # type: ignore[dict-item, arg-type]
    c._exporter._take()
    c._exporter._send_pending()
    (record,) = c.transport.records
    (block,) = decode(record.value)["metric_blocks"]
    assert [s["name"] for s in block["series"]] == ["loss"] and block["split"] == "loss"


def test_a_malformed_header_pair_does_not_hide_the_traceparent_after_it() -> None:
    c = _client()
    with c.extract([("a", "b", "c"), ("traceparent", _TP)]) as ctx:
        assert ctx is not None and ctx.trace_id == _TP.split("-")[1]


def test_a_run_that_fails_with_an_unprintable_exception_reports_it_and_reraises_it() -> None:
    """run()'s f-strings formatted the exception: the caller got RuntimeError, and no FAILED event was sent."""
    c = _client()
    with pytest.raises(_Unprintable), c.run("r"):
        raise _Unprintable()
    c._exporter._take()
    c._exporter._send_pending()
    payloads = [e["payload"][1] for r in c.transport.records for e in decode(r.value)["events"]]
    assert [p["status"] for p in payloads if "status" in p] == ["STARTED", "FAILED"]


@pytest.mark.parametrize(
    "setting",
    [{"queue_size": 1e5}, {"max_record_bytes": 9e5}, {"spool_max_bytes": 2.5e8}, {"queue_size": np.float64(1000.0)}],
    ids=["queue_size=1e5", "max_record_bytes=9e5", "spool_max_bytes=2.5e8", "np.float64"],
)
def test_a_count_given_as_a_whole_float_is_that_count(setting: dict[str, Any]) -> None:
    settings = Settings(service="unit", resource_interval_s=0, **setting)
    c = _LocalClient(settings, [], None, None, None, None)
    (name, value), *_ = setting.items()
    assert getattr(c.settings.producer, name) == int(value) and type(getattr(c.settings.producer, name)) is int


@pytest.mark.parametrize("setting", [{"close_timeout_s": math.nan}, {"full_block_timeout_s": math.nan}])
def test_a_timeout_of_nan_is_refused_at_init(setting: dict[str, Any]) -> None:
    """close_timeout_s=nan made close() and the interpreter's exit wait for ever."""
    with pytest.raises(ValueError, match=next(iter(setting))):
        _LocalClient(Settings(service="unit", **setting), [], None, None, None, None)


def test_a_run_id_given_as_bytes_is_its_text() -> None:
    settings = Settings(service="unit", run_id=b"run-7", resource_interval_s=0)
    assert _LocalClient(settings, [], None, None, None, None).settings.producer.run_id == "run-7"


def _decoded(client: _LocalClient) -> list[dict[str, Any]]:
    """Every event sent, decoded: ``(record name, payload)`` as the batch holds them."""
    client._exporter._take()
    client._exporter._send_pending()
    return [event for record in client.transport.records for event in decode(record.value)["events"]]


_NOT_A_MAPPING = [5, None, np.array([1.0, 2.0]), "loss", [1, 2]]


@pytest.mark.parametrize("values", _NOT_A_MAPPING, ids=["int", "None", "array", "str", "list"])
def test_metric_values_that_are_not_a_mapping_drop_that_point_told_once(
    values: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A telemetry call must not stop the loop it reports (OpenTelemetry's rule for its API): ``metric(5)``
    raised "'int' object is not iterable" into the training loop. Now the point is dropped, counted and
    told once, in words that say what the call takes."""
    c = _client()
    c.metric({"loss": 0.5}, step=1)
    c.metric(values, step=2)
    c.metric(values, step=3)
    c.metric({"loss": 0.4}, step=4)
    assert _sent(c) == Counter({"metric": 2}) and c.stats()["rejected_bad_argument"] == 2
    told = [r.getMessage() for r in caplog.records if "rejected_bad_argument" in r.getMessage()]
    assert len(told) == 1 and "metric(values=) takes a mapping of names to numbers" in told[0]


@pytest.mark.parametrize("bad", [*_NOT_A_MAPPING[2:], 3.5], ids=["array", "str", "list", "float"])
def test_an_argument_that_is_not_what_the_call_takes_costs_only_itself(bad: Any) -> None:
    """Each of these raised into the caller; the event now goes without the bad argument, counted."""
    c = _client()
    c.inference("r1", "m", 2.0, features=bad)
    c.inference("r2", "m", 2.0, status=np.array(["ok", "error"]))
    c.data_stats("stage", "d", 5, row_count=3, class_counts=bad)  # type: ignore[arg-type]
    c.run_started(bad, libraries=5)  # type: ignore[arg-type]
    with c.span("top", kind=bad, new_trace=np.array([1, 0])) as span:
        span.set_attribute(bad if not isinstance(bad, str | float) else ["k"], 1)
        span.set_status(np.array([1, 2]))  # type: ignore[arg-type]
    headers = c.inject(bad)
    events = _decoded(c)
    assert Counter(name.removeprefix("aitrace.") for name, _ in (e["payload"] for e in events)) == Counter(
        {"InferenceRecord": 2, "DataStats": 1, "RunLifecycle": 1, "Span": 1}
    )
    assert c.stats()["rejected_bad_argument"] == 11 - isinstance(bad, str) and headers is bad  # "loss": a kind
    span_payload = next(p for name, p in (e["payload"] for e in events) if name == "aitrace.Span")
    assert span_payload["status"] == "ok" and span_payload["name"] == "top"


def test_a_data_stats_class_counts_given_as_a_pandas_series_is_its_counts() -> None:
    """``df.label.value_counts()`` has no truth value: it raised ValueError into the pipeline."""
    pd = pytest.importorskip("pandas")
    c = _client()
    c.data_stats("stage", "d", [], row_count=5, class_counts=pd.Series({"cat": 3, "dog": 2}))
    (event,) = _decoded(c)
    assert event["payload"][1]["class_counts"] == {"cat": 3, "dog": 2}


def test_a_run_config_held_in_a_namespace_or_a_dataclass_is_its_fields() -> None:
    """Training scripts hold their settings in argparse's Namespace or a dataclass: ``dict()`` refused both."""
    import argparse
    import dataclasses

    @dataclasses.dataclass
    class Config:
        lr: float = 0.1
        layers: int = 3

    c = _client()
    c.run_started(argparse.Namespace(lr=0.1, layers=3))  # type: ignore[arg-type]
    c.run_started(Config())  # type: ignore[arg-type]
    configs = [p["config"] for name, p in (e["payload"] for e in _decoded(c))]
    assert configs == [{"lr": "0.1", "layers": "3"}] * 2 and "rejected_bad_argument" not in c.stats()


def test_rejected_bad_event_counts_the_callers_and_the_senders_together() -> None:
    """The OTel exporter counts unreadable spans on the caller's side: ``stats()`` let that count replace the
    sender's own count of the same name."""
    c = _client()
    c.data_stats("stage", "d", [{"name": "f", "quantiles": [0.5]}], row_count=3)
    _sent(c)
    with c._caller_lock:
        c._caller_stats["rejected_bad_event"] += 2
    assert c.stats()["rejected_bad_event"] == c.stats_counter["rejected_bad_event"] + 2


@pytest.mark.parametrize("kind", ["log", "span"])
def test_attribute_names_that_differ_per_record_go_in_blocks_of_few_null_cells(kind: str) -> None:
    """A column map holds a cell under every name for every record: 1,000 logs each with a name of its own were
    one block of 1,000,000 cells (0.3 ms a log to send, 0.6 ms at 4,000: growing with the block). The rows now go
    in blocks whose cells stay within 1,024 or 4x the values present; every attribute arrives as sent."""
    c = _client()
    for i in range(1_000):
        attributes = {f"user_{i}": i, "route": "/p"}
        if kind == "log":
            c.log("info", "served", **attributes)
        else:
            with c.span("served", **attributes):
                pass
    c._exporter._take()
    c._exporter._send_pending()
    got: dict[str, str] = {}
    for record in c.transport.records:
        _, block = AvroDeserializer().decode(record.value)
        columns, rows = block["attributes"], len(block["time"])
        assert len(columns) * rows <= max(1_024, 4 * sum(v is not None for col in columns.values() for v in col))
        got.update((k, v) for k, column in columns.items() for v in column if v is not None and k != "route")
    assert got == {f"user_{i}": str(i) for i in range(1_000)}


def test_spans_named_by_unhashable_values_among_others_leave_in_one_block() -> None:
    """Every second span named by a list failed the block as a whole, and every half of it down to single spans:
    2,000 spans went as 2,000 records (125 us a span to send)."""
    c = _client()
    for i in range(2_000):
        with c.span(["a"] if i % 2 else f"s{i}"):
            pass
    assert _sent(c) == Counter({"Span": 2_000}) and len(c.transport.records) == 1


def test_a_batch_of_features_summarized_at_different_levels_is_sent_with_the_others() -> None:
    """A review of the sparse-block split (/work/rev-y D1): one record whose features' quantile maps differ (200 at
    the median, 10 at seven levels) read as sparse, and a record cannot be split: it recursed and lost every
    data_stats record beside it. Only attribute maps (one per record) are judged sparse now."""
    c = _client()
    features = [{"name": f"m{i}", "count": 10, "quantiles": {0.5: np.float64(1.0)}} for i in range(200)]
    levels = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    features += [{"name": f"f{i}", "count": 10, "quantiles": {q: np.float64(q) for q in levels}} for i in range(10)]
    for _ in range(5):
        c.data_stats("ingest", "ds", [{"name": "x", "count": 3, "quantiles": {0.5: 1.0}}], row_count=3)
    c.data_stats("ingest", "ds", features, row_count=10)
    assert _sent(c) == Counter({"DataStats": 6}) and c.stats_counter["dropped_exporter_error"] == 0


def test_a_few_call_sites_each_with_names_of_their_own_stay_in_one_block() -> None:
    """The same review (D2): 5 call sites each logging 6 names of their own were cut in blocks of 34 records
    (128 records where 2; the sender's time doubled)."""
    c = _client()
    for i in range(1_000):
        site = i % 5
        c.log("info", "x", **{f"site{site}_k{j}": j for j in range(6)})
    assert _sent(c) == Counter({"LogRecord": 1_000}) and len(c.transport.records) == 1
