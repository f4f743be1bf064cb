"""The producer client against a real Tansu: every event type, batching, bad input, back-pressure, spans, fork."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
import numpy as np
import pytest
from aitrace import schemas
from aitrace.infra.stack import TansuProcess, free_port
from aitrace.schemas import codec
from test_producer_support import all_ids, consume, event_ids

Records = list[tuple[str, dict[str, Any]]]


def read(client: aitrace.Client, done: Callable[[Records], bool], timeout: float = 30.0) -> Records:
    return consume(client.settings.kafka.kafka_bootstrap, client.settings.kafka.topic_prefix, done, timeout)


def events_of(records: Records, name: str | None = None) -> list[dict[str, Any]]:
    out = [e for _, batch in records for e in batch["events"]]
    return [e for e in out if name is None or e["payload"][0] == name]


def blocks_of(records: Records) -> list[dict[str, Any]]:
    return [b for _, batch in records for b in batch["metric_blocks"]]


def n_events(records: Records) -> int:
    return len(all_ids(records))


# -- every event type


def test_every_event_type_arrives_decoded_on_its_topic(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(service="trainer", run_id="run-7", environment="test", service_version="1.2")
    client.run_started(config={"lr": 0.1, "optim": {"name": "adam"}}, seed=7, code_version="abc123")
    client.metric({"loss": 0.31, "grad_norm": 4.2}, step=120, epoch=2, split="train")
    try:
        raise ValueError("bad batch")
    except ValueError:
        client.log("error", "CUDA OOM in batch 17", batch=17, exc_info=True)
    features = aitrace.summarize({"alcohol": np.array([12.0, 13.5, np.nan]), "color": ["red", "red", "white"]})
    client.data_stats("ingest", "wine", features=features, row_count=3, class_counts={0: 2, 1: 1}, label="class")
    client.inference(
        request_id="r1",
        model_name="wine-clf",
        model_version="3",
        latency_ms=4.5,
        features={"alcohol": 13.0, "color": "red", "missing": None},
        prediction=1,
        confidence=0.93,
        feature_version="fv2",
    )
    client.ground_truth(request_id="r1", model_name="wine-clf", label=1)
    client.resources()
    with client.span("preprocess", rows=3):
        pass
    client.run_finished(status="FINISHED", message="done")
    assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 9)
    topics = {t.rsplit(".", 1)[-1] for t, _ in records}
    assert topics == {"training", "data", "inference", "system"}

    run = [e["payload"][1] for e in events_of(records, "aitrace.RunLifecycle")]
    assert [r["status"] for r in run] == ["STARTED", "FINISHED"]
    assert run[0]["config"] == {"lr": "0.1", "optim.name": "adam"} and run[0]["seed"] == 7
    assert run[0]["library_versions"]["numpy"] == np.__version__
    (block,) = blocks_of(records)
    assert block["steps"] == [120] and block["epochs"] == [2] and block["split"] == "train"
    assert {s["name"]: s["values"] for s in block["series"]} == {"loss": [0.31], "grad_norm": [4.2]}
    (log_event,) = events_of(records, "aitrace.LogRecord")
    log_rec = log_event["payload"][1]
    assert log_rec["level"] == "error" and log_rec["attributes"] == {"batch": "17"}
    assert log_rec["error_type"] == "ValueError" and "bad batch" in log_rec["stack_trace"]
    (data,) = [e["payload"][1] for e in events_of(records, "aitrace.DataStats")]
    assert data["class_counts"] == {"0": 2, "1": 1}
    alcohol = data["features"][0]
    assert alcohol["missing"] == 1 and alcohol["mean"] == pytest.approx(12.75)
    assert data["features"][1]["categories"] == {"red": 2, "white": 1}
    (inf,) = [e["payload"][1] for e in events_of(records, "aitrace.InferenceRecord")]
    assert inf["features"]["alcohol"] == 13.0 and math.isnan(inf["features"]["missing"])
    assert inf["categorical_features"] == {"color": "red"}
    assert inf["prediction"] == "1" and inf["feature_version"] == "fv2"
    (gt,) = [e["payload"][1] for e in events_of(records, "aitrace.GroundTruth")]
    assert gt == {"request_id": "r1", "model_name": "wine-clf", "label": "1"}
    (res,) = [e["payload"][1] for e in events_of(records, "aitrace.ResourceSample")]
    assert res["memory_rss_bytes"] > 0 and res["gpus"] == []
    (span,) = [e for e in events_of(records, "aitrace.Span")]
    assert span["payload"][1]["name"] == "preprocess" and span["payload"][1]["attributes"] == {"rows": "3"}

    every = events_of(records)
    assert len({e["event_id"] for e in every}) == len(every)
    run_trace = every[0]["trace_id"]
    assert all(e["trace_id"] == run_trace for e in every)  # one run, one trace
    assert block["trace_id"] == run_trace
    env = every[0]
    assert (env["service"], env["service_version"], env["environment"], env["run_id"], env["pid"]) == (
        "trainer",
        "1.2",
        "test",
        "run-7",
        os.getpid(),
    )


# -- batching


def test_a_burst_of_metrics_travels_as_few_columnar_records(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(run_id="burst", batch_linger_ms=200)
    for step in range(2000):
        client.metric({"loss": 1.0 / (step + 1), "acc": step / 2000}, step=step)
    client.metric({"loss": float("nan"), "acc": float("inf")}, step=2000)
    assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 2001)
    assert n_events(records) == 2001
    assert len(records) <= 5  # 2,001 events, a handful of Kafka records
    steps = [s for b in blocks_of(records) for s in b["steps"]]
    assert sorted(steps) == list(range(2001))
    last = next(b for b in blocks_of(records) if 2000 in b["steps"])
    i = last["steps"].index(2000)
    values = {s["name"]: s["values"][i] for s in last["series"]}
    assert math.isnan(values["loss"]) and values["acc"] == math.inf  # NaN and Inf are data


def test_batch_max_events_bounds_the_records(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(run_id="bounded", batch_linger_ms=500, batch_max_events=100)
    for step in range(450):
        client.metric({"loss": 0.5}, step=step)
    assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 450)
    sizes = [len(b["steps"]) for b in blocks_of(records)]
    assert sum(sizes) == 450 and max(sizes) <= 100
    ids = [i for _, batch in records for i in event_ids(batch)]
    assert len(set(ids)) == 450


def test_a_lone_event_leaves_at_once_without_waiting_out_the_linger(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(batch_linger_ms=600_000)  # ten minutes: only "at once" can deliver in time
    client.log("info", "alone")
    records = read(client, lambda r: n_events(r) >= 1, timeout=60)
    assert [e["payload"][1]["message"] for e in events_of(records)] == ["alone"]


_JUST_BOOTED = """
import sys, time, aitrace
client = aitrace.init(service="svc", kafka_bootstrap=sys.argv[1], topic_prefix=sys.argv[2],
                      spool_dir=sys.argv[3], batch_linger_ms=600_000)
client.log("info", "alone")
deadline = time.monotonic() + 20
while client.stats().get("sent", 0) < 1 and time.monotonic() < deadline:
    time.sleep(0.05)
print(time.monotonic(), client.stats().get("sent", 0))
client.close(timeout=5)
"""


def _just_booted_command() -> list[str]:
    """``unshare`` into a time namespace whose monotonic clock reads about 5 s, or skip."""
    uptime = float(Path("/proc/uptime").read_text().split()[0]) if Path("/proc/uptime").exists() else 0.0
    cmd = ["unshare", "-Ur", "--time", f"--monotonic=-{max(0, int(uptime) - 5)}"]
    if shutil.which("unshare") is None or uptime < 10:
        pytest.skip("needs unshare and /proc/uptime")
    probe = subprocess.run([*cmd, sys.executable, "-c", "import time; print(time.monotonic())"], capture_output=True)
    if probe.returncode != 0 or float(probe.stdout or 1e9) > 60:
        pytest.skip(f"time namespaces not available here: {probe.stderr.decode()[:200]}")
    return cmd


def test_a_lone_event_leaves_at_once_on_a_machine_that_just_booted(
    kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    """time.monotonic() counts from boot: on a fresh CI runner it is below the linger (the flake)."""
    cmd = _just_booted_command()
    script = [sys.executable, "-c", _JUST_BOOTED, kafka.bootstrap, unique_name("p"), str(tmp_path / "spool")]
    done = subprocess.run([*cmd, *script], capture_output=True, text=True, timeout=60)
    clock, sent = done.stdout.split()
    assert float(clock) < 60 and int(sent) == 1, done.stdout + done.stderr  # sent before close, not by it


_NO_BROKER = """
import logging, sys, time, aitrace
if sys.argv[3] == "configured":
    logging.basicConfig()
client = aitrace.init(service="svc", kafka_bootstrap=sys.argv[1], spool_dir=sys.argv[2])
client.log("info", "nobody listens")
time.sleep(3)  # librdkafka reconnects every second at most meanwhile
client.close(timeout=1)
"""


@pytest.mark.parametrize("logging_", ["unconfigured", "configured"])
def test_a_broker_that_is_down_is_one_warning_unless_logging_asks_for_more(tmp_path: Path, logging_: str) -> None:
    """librdkafka's "Connect to ... failed" came once per reconnect on a script's stderr."""
    bootstrap = f"127.0.0.1:{free_port()}"
    script = [sys.executable, "-c", _NO_BROKER, bootstrap, str(tmp_path / "spool"), logging_]
    err = subprocess.run(script, capture_output=True, text=True, timeout=60).stderr
    assert "aitrace: Kafka:" in err and "brokers are down" in err, err  # the client's own warning
    librdkafka = [line for line in err.splitlines() if "FAIL [" in line]  # its lines: "FAIL [client id] ..."
    if logging_ == "configured":
        assert librdkafka and all(line.startswith("ERROR:aitrace.kafka:FAIL [") for line in librdkafka), err
    else:
        assert librdkafka == [], err


def test_an_error_sends_what_waits_in_the_linger_at_once(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(batch_linger_ms=600_000)
    client.log("info", "first")  # idle: leaves at once
    read(client, lambda r: n_events(r) >= 1, timeout=60)
    client.log("info", "second")  # within the linger of the first: waits
    client.log("error", "boom")  # urgent: takes "second" along
    records = read(client, lambda r: n_events(r) >= 3, timeout=60)
    assert sorted(e["payload"][1]["message"] for e in events_of(records)) == ["boom", "first", "second"]


# -- bad input


def test_bad_values_are_stringified_or_rejected_and_counted(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(run_id="bad")

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque thing>"

    client.log("warning", "odd attribute", thing=Opaque(), ok=3)
    client.metric({"loss": 0.2, "note": "not a number", "obj": object()}, step=1)
    client.metric({"note": "only text"}, step=2)
    client.inference(request_id="r", model_name="m", latency_ms="fast", features={"x": Opaque()})
    assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 3)
    log_rec = events_of(records, "aitrace.LogRecord")[0]["payload"][1]
    assert log_rec["attributes"] == {"thing": "<Opaque thing>", "ok": "3"}
    (block,) = blocks_of(records)
    assert block["steps"] == [1] and [s["name"] for s in block["series"]] == ["loss"]
    inf = events_of(records, "aitrace.InferenceRecord")[0]["payload"][1]
    assert math.isnan(inf["latency_ms"]) and inf["categorical_features"] == {"x": "<Opaque thing>"}
    stats = client.stats()
    assert stats["stringified"] == 2
    assert stats["rejected_non_numeric_metric"] == 3
    assert stats["rejected_empty_metric"] == 1
    assert stats["rejected_bad_latency"] == 1


def test_text_with_lone_surrogates_is_kept_with_a_replacement_character(
    make_client: Callable[..., aitrace.Client],
) -> None:
    """A file name that is not UTF-8, through os.fsdecode, carries lone surrogates: UTF-8 cannot encode
    them, and the log event (a whole inference record, a span) was dropped as not fitting the schema."""
    client = make_client(run_id="surrogates")
    name = os.fsdecode(b"data-\xff.csv")
    client.log("warning", f"cannot read {name}", path=name)
    client.inference(request_id=f"r-{name}", model_name="m", latency_ms=3.0, features={"x": 1.0})
    assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 2)
    log_rec = events_of(records, "aitrace.LogRecord")[0]["payload"][1]
    assert log_rec["message"] == "cannot read data-\ufffd.csv" and log_rec["attributes"] == {"path": "data-\ufffd.csv"}
    assert events_of(records, "aitrace.InferenceRecord")[0]["payload"][1]["request_id"] == "r-data-\ufffd.csv"
    stats = client.stats()
    assert stats["repaired_text"] == 2 and stats.get("rejected_schema", 0) == 0


def test_oversized_records_are_split_and_a_single_oversized_event_is_rejected(
    make_client: Callable[..., aitrace.Client], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_record_bytes=8_000, batch_linger_ms=300)
    for i in range(40):
        client.log("info", f"line {i} " + "x" * 1000)
    client.log("info", "huge " + "y" * 50_000)
    client.log("info", "after")
    with caplog.at_level(logging.ERROR, logger="aitrace.exporter"):
        assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 41)
    messages = [e["payload"][1]["message"] for e in events_of(records)]
    assert len(messages) == 41 and "after" in messages and not any(m.startswith("huge") for m in messages)
    assert len(records) >= 6  # 40 KB of logs under an 8 KB limit
    assert client.stats()["dropped_oversized"] == 1
    assert "above max_record_bytes" in caplog.text


def test_a_missing_schema_fails_at_init_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka: TansuProcess
) -> None:
    broken = tmp_path / "schemas"
    broken.mkdir()
    for path in schemas.SCHEMA_DIR.glob("aitrace.*.avsc"):
        if path.name != "aitrace.LogRecord.avsc":
            (broken / path.name).write_text(path.read_text())
    monkeypatch.setattr(schemas, "SCHEMA_DIR", broken)
    schemas.raw.cache_clear()
    codec.compiled.cache_clear()
    try:
        with pytest.raises(schemas.SchemaNotFoundError, match=r"aitrace\.LogRecord"):
            aitrace.init(service="x", kafka_bootstrap=kafka.bootstrap, spool_dir=str(tmp_path / "spool"))
    finally:
        monkeypatch.undo()
        schemas.raw.cache_clear()
        codec.compiled.cache_clear()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"full_policy": "drop_oldest"}, "full_policy"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"queue_size": 0}, "queue_size"),
    ],
)
def test_invalid_settings_fail_at_init(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aitrace.init(service="x", spool_dir=str(tmp_path), **override)


# -- back-pressure


class Gate:
    """A processor that holds the exporter inside the chain until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        self.entered.set()
        self.release.wait(30)
        return item


def test_queue_full_drops_newest_and_counts(make_client: Callable[..., aitrace.Client]) -> None:
    gate = Gate()
    client = make_client(queue_size=50, processors=[gate])
    client.log("info", "holds the exporter")
    assert gate.entered.wait(10)
    for i in range(200):
        client.log("info", f"queued {i}")
    assert client.stats()["dropped_queue_full"] == 150
    gate.release.set()
    assert client.flush(timeout=30)
    stats = client.stats()
    assert stats["sent"] == 51 and stats["dropped"] == 150


def test_block_policy_waits_for_room_then_drops_and_counts(make_client: Callable[..., aitrace.Client]) -> None:
    gate = Gate()
    client = make_client(queue_size=10, processors=[gate], full_policy="block", full_block_timeout_s=2.0)
    client.log("info", "holds the exporter")
    assert gate.entered.wait(10)
    for i in range(10):
        client.log("info", f"fits {i}")
    client.log("info", "times out")  # blocks 2 s, then is dropped
    assert client.stats()["dropped_queue_full"] == 1
    waiter = threading.Thread(target=client.log, args=("info", "waits for room"))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive()  # still blocked: the queue is full
    gate.release.set()
    waiter.join(10)
    assert not waiter.is_alive()
    assert client.flush(timeout=30)
    stats = client.stats()
    assert stats["dropped_queue_full"] == 1 and stats["sent"] == 12


def _unreachable(tmp_path: Path, **overrides: Any) -> aitrace.Client:
    settings: dict[str, Any] = {
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "spool_dir": str(tmp_path / "spool"),
        "topic_prefix": "unreachable",
    }
    settings.update(overrides)
    return aitrace.init(service="offline", **settings)


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_spool_full_drops_newest_and_counts(tmp_path: Path) -> None:
    client = _unreachable(tmp_path, spool_max_bytes=4_000, delivery_timeout_ms=1000)
    try:
        for i in range(30):
            client.log("info", f"event {i} " + "z" * 400)
            time.sleep(0.01)
        assert client.flush(timeout=3) is False
        assert _wait(lambda: client.stats()["spilled"] + client.stats().get("dropped_spool_full", 0) == 30, 60)
        stats = client.stats()
        assert stats["spilled"] > 0 and stats["dropped_spool_full"] > 0
        assert stats["spool_bytes"] <= 4_000
    finally:
        client.close(timeout=1)


def test_an_unwritable_spool_is_counted_not_raised(tmp_path: Path) -> None:
    # A short delivery timeout: a record handed to librdkafka before it noticed that no broker
    # listens comes back (and goes to the spool) within a second.
    client = _unreachable(tmp_path, delivery_timeout_ms=1000)
    try:
        import shutil

        shutil.rmtree(tmp_path / "spool")  # the disk under the spool goes away
        for i in range(5):
            client.log("info", f"event {i}")
        assert _wait(lambda: client.stats().get("dropped_spool_error", 0) == 5, 60)
        client.log("info", "the caller still runs")
    finally:
        client.close(timeout=1)


def test_what_close_could_not_deliver_is_delivered_by_the_next_client(tmp_path: Path) -> None:
    port = free_port()
    spool = tmp_path / "spool"
    first = _unreachable(tmp_path, kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix="handover")
    for i in range(20):
        first.log("info", f"before the broker {i}")
    assert first.close(timeout=1.5) is False
    assert list(spool.glob("*/*.seg"))  # on disk
    broker = TansuProcess(port, tmp_path / "logs").start().wait_ready(60)
    try:
        second = _unreachable(tmp_path, kafka_bootstrap=broker.bootstrap, topic_prefix="handover")
        assert second.flush(timeout=60)
        second.close(timeout=5)
        records = consume(broker.bootstrap, "handover", lambda r: n_events(r) >= 20)
        assert sorted(e["payload"][1]["message"] for e in events_of(records)) == sorted(
            f"before the broker {i}" for i in range(20)
        )
        assert not list(spool.glob("*/*.seg"))
    finally:
        broker.kill()


# -- sampling


def test_sampling_drops_unsampled_traces_but_keeps_errors_and_anomalies(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(sample_rate=0.0, run_id="sampled-out")
    client.log("info", "dropped")
    client.metric({"loss": 0.1}, step=1)
    client.metric({"loss": 0.2}, step=2)
    client.log("error", "kept: error")
    client.log("info", "kept: anomaly", anomaly=True)
    client.metric({"loss": float("nan")}, step=3)
    client.inference(request_id="r", model_name="m", latency_ms=1.0, error="timeout")
    with pytest.raises(KeyError), client.span("failing"):
        raise KeyError("x")
    assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 5)
    kept = {e["payload"][0]: e for e in events_of(records)}
    assert sorted(e["payload"][1].get("message", "") for e in events_of(records, "aitrace.LogRecord")) == [
        "kept: anomaly",
        "kept: error",
    ]
    assert "aitrace.InferenceRecord" in kept and kept["aitrace.Span"]["payload"][1]["status"] == "error"
    assert all(e["sampled"] is False for e in events_of(records))
    assert [b["steps"] for b in blocks_of(records)] == [[3]]
    assert client.stats()["sampled_out"] == 3


def test_sampling_decision_is_deterministic_by_trace_and_close_to_the_rate() -> None:
    from aitrace.producers import tracecontext as tc
    from aitrace.producers.sampling import TraceSampler, trace_sampled

    ids = [tc.new_trace_id() for _ in range(20_000)]
    kept = [trace_sampled(t, 0.25) for t in ids]
    assert 0.23 < sum(kept) / len(ids) < 0.27
    other = TraceSampler(0.25)  # another service, same rate: same decisions
    assert [other.sampled(t) for t in ids] == kept
    assert all(trace_sampled(t, 0.5) for t, k in zip(ids, kept, strict=True) if k)  # nested by rate


# -- spans and context


def test_spans_nest_and_errors_mark_the_span_and_propagate(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client()
    with client.span("request", kind="server", route="/predict") as outer:
        client.log("info", "in outer")
        with pytest.raises(ZeroDivisionError), client.span("inner"):
            client.log("info", "in inner")
            _ = 1 / 0
    assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 4)
    spans = {e["payload"][1]["name"]: e for e in events_of(records, "aitrace.Span")}
    logs = {e["payload"][1]["message"]: e for e in events_of(records, "aitrace.LogRecord")}
    assert spans["inner"]["parent_span_id"] == spans["request"]["span_id"] == outer.span_id
    assert spans["request"]["parent_span_id"] is None
    assert {e["trace_id"] for e in events_of(records)} == {outer.trace_id}
    assert logs["in inner"]["span_id"] == spans["inner"]["span_id"]
    assert logs["in outer"]["span_id"] == outer.span_id
    inner = spans["inner"]["payload"][1]
    assert inner["status"] == "error" and inner["error_type"] == "ZeroDivisionError"
    assert spans["request"]["payload"][1]["status"] == "ok"


def test_inject_and_extract_continue_a_trace_across_services(make_client: Callable[..., aitrace.Client]) -> None:
    caller = make_client(service="gateway")
    callee = make_client(service="model-server")
    with caller.span("call model", kind="client") as span:
        headers = caller.inject({})
    assert headers["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"
    with callee.extract(headers), callee.span("predict", kind="server"):
        callee.log("info", "serving")
    with callee.extract({"traceparent": "not-a-header"}):
        callee.log("info", "no context")
    assert callee.flush(timeout=30)
    records = read(callee, lambda r: n_events(r) >= 3)
    predict = events_of(records, "aitrace.Span")[0]
    assert predict["trace_id"] == span.trace_id and predict["parent_span_id"] == span.span_id
    logs = {e["payload"][1]["message"]: e for e in events_of(records, "aitrace.LogRecord")}
    assert logs["serving"]["trace_id"] == span.trace_id
    assert logs["no context"]["trace_id"] != span.trace_id
    assert callee.stats()["bad_traceparent"] == 1


def test_the_current_opentelemetry_span_is_used(make_client: Callable[..., aitrace.Client]) -> None:
    trace = pytest.importorskip("opentelemetry.trace")
    client = make_client()
    otel_ctx = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_remote=False
    )
    with trace.use_span(trace.NonRecordingSpan(otel_ctx)):
        client.log("info", "under otel")
        headers = client.inject()
    assert headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-")
    assert client.flush(timeout=30)
    (event,) = events_of(read(client, lambda r: n_events(r) >= 1))
    assert (event["trace_id"], event["span_id"]) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")


# -- processors, logging, resources


def test_a_custom_processor_chain_and_a_failing_processor(make_client: Callable[..., aitrace.Client]) -> None:
    def tag(item: dict[str, Any]) -> dict[str, Any]:
        if "payload" in item:
            item["labels"] = {**item["labels"], "team": "vision"}
        return item

    def drop_debug(item: dict[str, Any]) -> dict[str, Any] | None:
        return None if "payload" in item and item["payload"][1].get("level") == "debug" else item

    def broken(item: dict[str, Any]) -> dict[str, Any]:
        if "payload" in item and item["payload"][1].get("message") == "poison":
            raise RuntimeError("processor bug")
        return item

    client = make_client(processors=[drop_debug, broken, tag])
    client.log("debug", "noise")
    client.log("info", "poison")
    client.log("info", "kept")
    assert client.flush(timeout=30)
    (event,) = events_of(read(client, lambda r: n_events(r) >= 1))
    assert event["payload"][1]["message"] == "kept" and event["labels"] == {"team": "vision"}
    stats = client.stats()
    assert stats["dropped_by_processor"] == 1 and stats["dropped_processor_error"] == 1


def test_the_logging_handler_forwards_records(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client()
    logger = logging.getLogger("test.app")
    handler = aitrace.AitraceHandler(client)
    logger.addHandler(handler)
    try:
        logger.warning("disk at %d%%", 91, extra={"volume": "/data"})
        try:
            {}["missing"]
        except KeyError:
            logger.exception("lookup failed")
    finally:
        logger.removeHandler(handler)
    assert client.flush(timeout=30)
    records = read(client, lambda r: n_events(r) >= 2)
    logs = {e["payload"][1]["message"]: e["payload"][1] for e in events_of(records)}
    assert logs["disk at 91%"]["level"] == "warning" and logs["disk at 91%"]["attributes"]["volume"] == "/data"
    assert logs["disk at 91%"]["logger"] == "test.app"
    assert logs["lookup failed"]["level"] == "error" and logs["lookup failed"]["error_type"] == "KeyError"


def test_the_resource_sampler_reports_periodically(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client()
    client.start_resource_sampler(interval_s=0.05)
    assert _wait(lambda: client.stats()["enqueued"] >= 3)
    client.close(timeout=10)
    records = read(client, lambda r: n_events(r) >= 3)
    samples = [e["payload"][1] for e in events_of(records, "aitrace.ResourceSample")]
    assert len(samples) >= 3
    assert any(s["cpu_percent"] is not None for s in samples)
    assert all(s["memory_percent"] > 0 for s in samples)


def test_gpu_sampling_is_skipped_without_pynvml(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aitrace.producers import resources

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    resources._nvml_state.clear()
    with caplog.at_level(logging.DEBUG, logger="aitrace.resources"):
        assert resources.sample()["gpus"] == []
    assert "no GPU sampling (ModuleNotFoundError" in caplog.text
    resources._nvml_state.clear()


def test_summarize_numeric_and_categorical() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    num, cat = aitrace.summarize({"x": values, "c": np.array(["a", "b", "a", None], dtype=object)}, bins=4)
    assert num["count"] == 5 and num["missing"] == 1 and num["mean"] == 2.5 and num["variance"] == 1.25
    assert num["min"] == 1.0 and num["max"] == 4.0 and num["quantiles"]["0.5"] == 2.5
    assert sum(num["histogram_counts"]) == 4 and len(num["histogram_edges"]) == 5
    assert cat == {"name": "c", "dtype": "categorical", "count": 4, "missing": 1, "categories": {"a": 2, "b": 1}}
    (ids,) = aitrace.summarize({"id": [1, 2, 3]}, categorical=["id"])
    assert ids["categories"] == {"1": 1, "2": 1, "3": 1}


def test_summaries_stay_within_what_a_worker_takes() -> None:
    # A worker dead-letters a data batch with a category past 1,024 characters or a histogram past
    # 4,096 bins (its reference would outgrow a changelog record): free text summarized as a
    # category is counted under its first 1,024 characters, and too many bins is the caller's error.
    long_a, long_b = "a " * 512 + "1", "a " * 512 + "2"
    (cat,) = aitrace.summarize({"note": np.array([long_a, long_b, "short"], dtype=object)})
    assert cat["categories"] == {"a " * 512: 2, "short": 1}
    # The cut leaves out the word it goes through: there the head of a key ("ghp_" and 19 characters, too short for
    # its pattern) went out as it was.
    token = "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    (cut,) = aitrace.summarize({"note": ["z" * 1_000 + " " + token] * 3 + ["b" * 2_000]}, categorical=["note"])
    one_token = "...#" + hashlib.sha256(b"b" * 2_000).hexdigest()[:12]  # no head left: a hash, not the empty category
    assert cut["categories"] == {"z" * 1_000 + " ": 3, one_token: 1}
    assert len(aitrace.summarize({"x": np.arange(10_000.0)}, bins=4_094)[0]["histogram_counts"]) == 4_094
    with pytest.raises(ValueError, match="1 to 4094 bins"):
        aitrace.summarize({"x": np.arange(10.0)}, bins=5_000)


# -- fork and exit


def test_fork_child_and_parent_both_deliver(make_client: Callable[..., aitrace.Client]) -> None:
    # the default delivery timeout: at 5 s a broker slowed by a loaded machine (CI beside reviews) let the child's
    # first records expire into the spool, and its flush said so (exit 2; twice in 30 stops' runs)
    client = make_client(run_id="forked")
    client.log("info", "before fork")
    pid = os.fork()
    if pid == 0:  # the child: its own queue, producer and worker
        code = 1
        try:
            child = aitrace.get_client()
            assert child is client
            client.log("info", "from the child")
            client.metric({"loss": 0.5}, step=1)
            code = 0 if client.flush(timeout=60) else 2
        finally:
            os._exit(code)
    client.log("info", "from the parent")
    assert client.flush(timeout=60)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    records = read(client, lambda r: n_events(r) >= 4)
    logs = {e["payload"][1]["message"]: e for e in events_of(records, "aitrace.LogRecord")}
    assert set(logs) == {"before fork", "from the child", "from the parent"}
    assert logs["from the child"]["pid"] == pid and logs["from the parent"]["pid"] == os.getpid()
    assert blocks_of(records)[0]["pid"] == pid
    assert len(all_ids(records)) == 4  # no id collides between parent and child


def test_events_are_flushed_at_exit(kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("exit")
    code = (
        "import aitrace\n"
        f"c = aitrace.init(service='script', kafka_bootstrap={kafka.bootstrap!r}, topic_prefix={prefix!r},"
        f" spool_dir={str(tmp_path / 'spool')!r}, batch_linger_ms=60000)\n"
        "for i in range(100): c.log('info', f'line {i}')\n"
        # no flush, no close: the atexit hook must deliver
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    records = consume(kafka.bootstrap, prefix, lambda r: n_events(r) >= 100)
    assert n_events(records) == 100


def test_events_after_close_are_counted_not_lost_silently(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client()
    client.log("info", "before close")
    assert client.close(timeout=10)
    client.metric({"loss": 1.0}, step=1)
    client.log("error", "after close")
    client.data_stats("ingest", "tx", [{"name": "f", "count": 1}])  # its own inlined enqueue
    assert client.close() is True  # idempotent
    stats = client.stats()
    assert stats["dropped_closed"] == 3 and stats["sent"] == 1


def test_with_a_schema_registry_records_use_the_confluent_format(
    make_client: Callable[..., aitrace.Client],
) -> None:
    from http.server import ThreadingHTTPServer

    from aitrace.schemas.codec import CONFLUENT_MAGIC, AvroDeserializer, as_batch
    from aitrace.schemas.registry import SchemaRegistryClient
    from test_schemas import _FakeRegistry  # the in-test registry fake

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    values: list[bytes] = []
    try:
        client = make_client(schema_registry_url=url, delivery_listener=lambda t, v, e: values.append(v))
        client.log("info", "framed by the registry")
        assert client.flush(timeout=30)
        client.inference("r1", "m", 2.0, features={"x": 1.0})
        with client.span("framed"):
            pass
        assert client.flush(timeout=30)
        assert values and values[0][:1] == CONFLUENT_MAGIC
        name, obj = AvroDeserializer(SchemaRegistryClient(url)).decode(values[0])  # a reader's own registry client
    finally:
        server.shutdown()
        server.server_close()
    assert name == "aitrace.LogBlock"  # logs leave as a block, registered under <topic>-aitrace.LogBlock
    assert any(s.endswith(".events.system-aitrace.LogBlock") for s in _FakeRegistry.subjects), _FakeRegistry.subjects
    assert as_batch(name, obj)["events"][0]["payload"][1]["message"] == "framed by the registry"
    assert any(s.endswith(".events.inference-aitrace.InferenceBlock") for s in _FakeRegistry.subjects)
    assert any(s.endswith(".events.system-aitrace.SpanBlock") for s in _FakeRegistry.subjects)


def test_an_unreachable_registry_falls_back_to_single_object_encoding(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(schema_registry_url=f"http://127.0.0.1:{free_port()}")
    client.log("info", "still delivered")
    assert client.flush(timeout=30)
    (event,) = events_of(read(client, lambda r: n_events(r) >= 1))
    assert event["payload"][1]["message"] == "still delivered"
    assert client.stats()["registry_fallback"] == 1


def test_gpu_samples_come_from_nvml_when_pynvml_is_importable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """NVML itself needs a GPU; this fakes the pynvml module to check the mapping onto GpuSample."""
    import types

    from aitrace.producers import resources
    from aitrace.schemas.codec import AvroSerializer

    fake = types.SimpleNamespace(
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"handle{i}",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=70 << 30, total=80 << 30),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=97),
        nvmlDeviceGetName=lambda h: b"NVIDIA H100",
        nvmlDeviceGetTemperature=lambda h, sensor: 71,
        nvmlDeviceGetPowerUsage=lambda h: 640_500,
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    resources._nvml_state.clear()
    sample = resources.sample()
    assert sample["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H100",
            "utilization_percent": 97.0,
            "memory_used_bytes": 70 << 30,
            "memory_total_bytes": 80 << 30,
            "temperature_c": 71.0,
            "power_w": 640.5,
        }
    ]
    AvroSerializer("aitrace.ResourceSample")(sample)  # fits the schema

    def broken() -> int:
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setattr(fake, "nvmlDeviceGetCount", broken)
    resources._nvml_state.clear()
    with caplog.at_level(logging.DEBUG, logger="aitrace.resources"):
        assert resources.gpu_samples() == []
        assert resources.gpu_samples() == []  # not retried on every sample
    assert caplog.text.count("no GPU sampling (RuntimeError: NVML Shared Library Not Found)") == 1
    resources._nvml_state.clear()


def test_block_policy_with_a_full_spool_holds_records_until_the_broker_returns(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    port = free_port()
    prefix = unique_name("held")
    client = _unreachable(
        tmp_path,
        kafka_bootstrap=f"127.0.0.1:{port}",
        topic_prefix=prefix,
        spool_max_bytes=3_000,
        full_policy="block",
        full_block_timeout_s=0.2,
        queue_size=20,
        delivery_timeout_ms=1000,
    )
    broker = TansuProcess(port, tmp_path / "logs")
    try:
        for i in range(60):
            client.log("info", f"event {i} " + "q" * 400)
            time.sleep(0.01)
        stats = client.stats()
        assert stats["dropped_queue_full"] > 0  # the spool filled, the exporter held on, the queue filled
        assert stats.get("dropped_spool_full", 0) == 0  # nothing the exporter held was dropped
        broker.start().wait_ready(60)
        assert client.flush(timeout=90), client.stats()
        stats = client.stats()
        delivered = 60 - stats["dropped_queue_full"]
        assert stats["sent"] == delivered
        records = consume(broker.bootstrap, prefix, lambda r: n_events(r) >= delivered)
        assert n_events(records) == delivered
    finally:
        client.close(timeout=5)
        broker.kill()


def test_a_record_kafka_refuses_for_its_size_is_counted_not_retried_forever(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(max_record_bytes=4_000_000)  # above librdkafka's message.max.bytes (1 MB)
    client.log("info", "big " + "b" * 1_500_000)
    assert client.flush(timeout=30)
    client.log("info", "small")
    assert client.flush(timeout=30)
    (event,) = events_of(read(client, lambda r: n_events(r) >= 1))
    assert event["payload"][1]["message"] == "small"
    stats = client.stats()
    assert stats["dropped_oversized"] == 1 and stats["spilled"] == 0


def test_a_producer_that_never_delivers_is_replaced_and_the_next_one_delivers(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    port = free_port()
    prefix = unique_name("wedged")
    client = _unreachable(tmp_path, kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix=prefix, delivery_timeout_ms=1000)
    broker = TansuProcess(port, tmp_path / "logs")
    try:
        client.log("info", "waits for a broker")
        assert _wait(lambda: client.stats().get("producer_restarts", 0) >= 1)  # probes timed out: replaced
        broker.start().wait_ready(60)
        assert client.flush(timeout=60)
        (event,) = events_of(consume(broker.bootstrap, prefix, lambda r: n_events(r) >= 1))
        assert event["payload"][1]["message"] == "waits for a broker"
    finally:
        client.close(timeout=5)
        broker.kill()


@pytest.mark.parametrize(
    ("level", "expected"),
    [("info", "info"), ("INFO", "info"), ("Warn", "warning"), ("WARNING", "warning"), ("fatal", "critical"),
     ("EXCEPTION", "error"), ("trace", "debug"), (" Error ", "error"), ("wArN", "warning"), ("bogus", "info"),
     (40, "error"), (5, "debug"), (99, "critical"), (None, "info")],
)  # fmt: skip
def test_log_levels_are_normalized_alike_on_the_fast_and_the_slow_path(level: Any, expected: str) -> None:
    from aitrace.producers.events import normalize_level

    assert normalize_level(level) == expected


def test_stats_count_every_event_while_the_exporter_takes_them(make_client: Callable[..., aitrace.Client]) -> None:
    # the exporter counted what it took only after filing up to 20,000 items: meanwhile they were in
    # neither the queue nor the count, and a run's event count read right after it came up short
    client = make_client()
    n = 40_000
    for i in range(n):
        client.metric({"loss": 1.0}, step=i)
    seen = Counter(client.stats()["enqueued"] for _ in range(3000))
    assert set(seen) == {n}, seen.most_common(5)


def test_a_cut_keeps_the_head_of_text_in_other_scripts_and_long_tokens_stay_apart() -> None:
    """Shown by a review: any non-ASCII character counted as part of a token, so a body of Chinese text cut at
    its limit lost its whole head, and categories of one long token (URLs) all counted as the empty category."""
    from aitrace.producers.text_reading import without_cut_token

    assert without_cut_token('{"answer": "这是一个很长') == '{"answer": "这是一个很长'
    assert without_cut_token("x ghp_ABCDEFGHIJKLMNOPQRS") == "x "
    urls = ["https://cdn.example.com/" + c * 1_100 for c in "ab"]
    (cat,) = aitrace.summarize({"u": [*urls, "", "", "short"]}, categorical=["u"])
    assert cat["categories"][""] == 2 and cat["categories"]["short"] == 1 and len(cat["categories"]) == 4
