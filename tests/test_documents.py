"""Decoded records -> ECS documents: fields, ids, index names, NaN handling, rollups.

Pure-function tests; the property test checks that every field a document carries
is mapped in the template (or sits under a source-only object or ``labels``), so
the documents never depend on dynamic mapping.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import synth as S
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from aitrace.schemas.metric_block import MetricBlock
from aitrace.sinks import documents as d
from aitrace.sinks import templates
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_795_687_200_000_000  # 2026-11-26T10:00:00Z in microseconds
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def envelope(event_id: str = "e1", **payload_and_fields: Any) -> dict[str, Any]:
    event = {
        "event_id": event_id,
        "time": T0,
        "trace_id": TRACE,
        "span_id": SPAN,
        "parent_span_id": "00f067aa0ba902b7",
        "service": "trainer",
        "service_version": "1.2.0",
        "environment": "prod",
        "host": "gpu-7",
        "pid": 4242,
        "run_id": "run-7",
        "sampled": True,
        "labels": {"team": "nlp"},
    }
    event.update(payload_and_fields)
    return event


PAYLOADS: dict[str, dict[str, Any]] = {
    "aitrace.TrainingMetric": {"step": 120, "epoch": 3, "split": "train", "metrics": {"loss": 0.31, "grad_norm": 4.2}},
    "aitrace.RunLifecycle": {
        "status": "FAILED",
        "config": {"lr": "0.001"},
        "seed": 7,
        "code_version": "abc123",
        "library_versions": {"torch": "2.13"},
        "message": "diverged",
    },
    "aitrace.DataStats": {
        "stage": "clean",
        "dataset": "clicks",
        "batch": "b-9",
        "row_count": 1000,
        "rows_dropped": 12,
        "features": [
            {
                "name": "age",
                "dtype": "numeric",
                "count": 988,
                "missing": 3,
                "mean": 41.5,
                "variance": float("nan"),
                "min": 18.0,
                "max": 90.0,
                "quantiles": {"0.5": 40.0},
                "histogram_edges": [0.0, 50.0, 100.0],
                "histogram_counts": [600, 388],
                "categories": {},
            }
        ],
        "label": "clicked",
        "class_counts": {"yes": 100, "no": 888},
        "ingest_delay_ms": 12.5,
    },
    "aitrace.InferenceRecord": {
        "request_id": "req-1",
        "model_name": "ranker",
        "model_version": "v3",
        "feature_version": "fv-2",
        "latency_ms": 12.5,
        "status": "error",
        "error": "timeout calling feature store",
        "features": {"age": 41.0},
        "categorical_features": {"country": "fr"},
        "inputs_summary": "1 row",
        "prediction": "click",
        "confidence": 0.91,
    },
    "aitrace.GroundTruth": {"request_id": "req-1", "model_name": "ranker", "label": "no_click"},
    "aitrace.LogRecord": {
        "level": "error",
        "message": "CUDA OOM in batch 17",
        "logger": "train",
        "attributes": {"batch": "17"},
        "error_type": "torch.cuda.OutOfMemoryError",
        "error_message": "CUDA out of memory",
        "stack_trace": "Traceback ...",
    },
    "aitrace.ResourceSample": {
        "cpu_percent": 87.5,
        "memory_rss_bytes": 2_000_000,
        "memory_percent": 12.0,
        "gpus": [
            {
                "index": 0,
                "name": "H100",
                "utilization_percent": 80.0,
                "memory_used_bytes": 10,
                "memory_total_bytes": 80,
            },
            {
                "index": 1,
                "name": "H100",
                "utilization_percent": 95.0,
                "memory_used_bytes": 30,
                "memory_total_bytes": 80,
            },
        ],
    },
    "aitrace.Span": {
        "name": "preprocess",
        "kind": "internal",
        "start_time": T0 - 1500,
        "duration_us": 1500,
        "status": "error",
        "error_type": "ValueError",
        "error_message": "bad row",
        "attributes": {"rows": "10"},
    },
}

TRACE_RECORD = {
    "trace_id": TRACE,
    "root_span_id": SPAN,
    "root_name": "POST /predict",
    "services": ["gateway", "ranker"],
    "start_time": T0,
    "end_time": T0 + 25_000,
    "duration_us": 25_000,
    "span_count": 2,
    "event_count": 5,
    "complete": False,
    "has_error": True,
    "first_error": "timeout calling feature store",
    "critical_path": [SPAN, "1111111111111111"],
    "spans": [
        {"span_id": SPAN, "parent_span_id": None, "service": "gateway", "name": "POST /predict",
         "start_time": T0, "duration_us": 25_000, "status": "error"},
        {"span_id": "1111111111111111", "parent_span_id": SPAN, "service": "ranker", "name": "score",
         "start_time": T0 + 100, "duration_us": 20_000, "status": "ok"},
    ],
}  # fmt: skip

ALERT_RECORD = {
    "alert_id": "drift:ranker:age",
    "version": 3,
    "kind": "drift",
    "detector": "ks",
    "severity": "critical",
    "state": "open",
    "title": "Feature age drifted (KS 0.41)",
    "series": "ranker/age",
    "service": "ranker",
    "run_id": None,
    "model": "ranker",
    "feature": "age",
    "trace_id": None,
    "step": None,
    "first_seen": T0,
    "last_seen": T0 + 60_000_000,
    "score": 0.97,
    "statistic": 0.41,
    "threshold": 0.2,
    "pvalue": float("nan"),
    "evidence": [0.1, float("inf")],
    "details": {"window": "1000"},
}


def flat_paths(doc: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(flat_paths(value, path + "."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                out.extend(flat_paths(item, path + "."))
        else:
            out.append(path)
    return out


def assert_mapped(doc: dict[str, Any], family: str) -> None:
    """Every leaf is mapped, or under an enabled:false object, or a label."""
    types = templates.field_types(family)
    source_only = {p for p, t in types.items() if t == "object" and _disabled(family, p)}
    for path in flat_paths(doc):
        if path.startswith("labels."):
            continue
        if any(path.startswith(s + ".") for s in source_only):
            continue
        assert path in types, f"{family}: {path} is not mapped"
        assert types[path] != "object", f"{family}: {path} is an object in the mapping but a leaf in the doc"


def _disabled(family: str, path: str) -> bool:
    node: dict[str, Any] = {"properties": templates.mappings(family)["properties"]}
    for part in path.split("."):
        node = node["properties"][part]
    return node.get("enabled") is False


def test_envelope_fields_follow_ecs() -> None:
    [(doc_id, doc)] = d.event_documents(envelope(payload=("aitrace.LogRecord", PAYLOADS["aitrace.LogRecord"])))
    assert doc_id == "e1"
    assert doc["@timestamp"] == "2026-11-26T10:00:00.000000Z"
    assert doc["trace"]["id"] == TRACE and doc["span"]["id"] == SPAN
    assert doc["parent"]["id"] == "00f067aa0ba902b7"
    assert doc["service"] == {"name": "trainer", "version": "1.2.0", "environment": "prod"}
    assert doc["host"]["name"] == "gpu-7" and doc["process"]["pid"] == 4242
    assert doc["labels"] == {"team": "nlp"}
    assert doc["log"] == {"level": "error", "logger": "train"}
    assert doc["message"] == "CUDA OOM in batch 17"
    assert doc["error"]["type"] == "torch.cuda.OutOfMemoryError"
    assert doc["event"]["dataset"] == "aitrace.log" and doc["event"]["id"] == "e1"
    assert doc["aitrace"]["run_id"] == "run-7"


def test_label_keys_lose_their_dots() -> None:
    event = envelope(payload=("aitrace.LogRecord", PAYLOADS["aitrace.LogRecord"]), labels={"k8s.pod": "p", "k8s": "x"})
    [(_, doc)] = d.event_documents(event)
    assert doc["labels"] == {"k8s_pod": "p", "k8s": "x"}


@pytest.mark.parametrize("record_name", sorted(PAYLOADS))
def test_every_payload_maps_only_declared_fields(record_name: str) -> None:
    actions = d.event_actions(envelope(payload=(record_name, PAYLOADS[record_name])))
    assert actions
    for action in actions:
        assert action["_index"] == "aitrace-events-2026.11.26"
        assert_mapped(action["_source"], "events")


def test_metric_event_uses_name_value_layout_with_stable_ids() -> None:
    actions = d.event_actions(envelope(payload=("aitrace.TrainingMetric", PAYLOADS["aitrace.TrainingMetric"])))
    by_id = {a["_id"]: a["_source"]["aitrace"]["metric"] for a in actions}
    assert by_id == {
        "e1:loss": {"name": "loss", "value": 0.31, "step": 120, "epoch": 3, "split": "train"},
        "e1:grad_norm": {"name": "grad_norm", "value": 4.2, "step": 120, "epoch": 3, "split": "train"},
    }
    assert all(a["_source"]["event"]["kind"] == "metric" for a in actions)


@pytest.mark.parametrize("name", ["x" * 600, "指标" * 100])
def test_a_long_metric_name_keeps_its_documents_ids_within_elasticsearchs_512_bytes(name: str) -> None:
    """A point's id is <block>:<i>:<name> and a window's holds the name too: Elasticsearch refuses an id past 512
    bytes, and every document of such a series was a rejection (dead-lettered, never indexed)."""
    from aitrace.sinks.metric_documents import rollup_action

    raw = S.metric_block(trace="a" * 32, run_id="r", start_step=0, series={name: np.arange(3.0)})
    points = d.metric_block_actions(MetricBlock.from_record(raw))
    ctx = {"trace_id": "a" * 32, "span_id": "b" * 16, "service": "trainer", "run_id": "r"}
    window = rollup_action(ctx, name=name, split="train", window_start_us=0, window_us=10**7, count=1,
                           minimum=1.0, maximum=1.0, mean=1.0, last=1.0, first_step=0, last_step=0)  # fmt: skip
    ids = [a["_id"] for a in [*points, window]]
    assert all(len(i.encode()) <= 512 for i in ids) and len(set(ids)) == 4
    again = d.metric_block_actions(MetricBlock.from_record(raw))
    assert [a["_id"] for a in again] == ids[:3]  # a redelivery overwrites the same documents
    assert (
        d.metric_block_actions(
            MetricBlock.from_record(
                S.metric_block(
                    trace="a" * 32, run_id="r", start_step=0, series={"loss": np.arange(3.0)}, block_id="blk"
                )
            )
        )[0]["_id"]
        == "blk:0:loss"
    )


@pytest.mark.parametrize(("raw", "word"), [(float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf")])
def test_nonfinite_metric_is_kept_as_data(raw: float, word: str) -> None:
    payload = {"step": 5, "metrics": {"loss": raw}}
    [(_, doc)] = d.event_documents(envelope(payload=("aitrace.TrainingMetric", payload)))
    assert "value" not in doc["aitrace"]["metric"]
    assert doc["aitrace"]["metric"]["nonfinite"] == word


def test_inference_duration_outcome_and_error() -> None:
    [(_, doc)] = d.event_documents(envelope(payload=("aitrace.InferenceRecord", PAYLOADS["aitrace.InferenceRecord"])))
    assert doc["event"]["duration"] == 12_500_000  # ns
    assert doc["event"]["outcome"] == "failure"
    assert doc["error"]["message"] == "timeout calling feature store"
    assert doc["aitrace"]["inference"]["model"] == "ranker"
    assert doc["event"]["dataset"] == "aitrace.inference"


def test_every_document_the_processors_write_is_mapped() -> None:
    """Documents as the worker builds them, fields the processors add included (a label joined
    to its prediction, rollups with non-finite counts, alerts): every field is mapped."""
    pipe = Pipeline(WorkerOptions(max_raw_rate=2.0))
    table: dict[str, Any] = {}
    tr = S.trace_id()
    loss = np.r_[np.linspace(1.0, 0.5, 100), np.nan]
    records = [
        S.encode(
            S.batch(
                [S.event(S.inference("q1", "m", 5.0, prediction="dog"), trace=tr, time_us=T0)],
                [S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": loss}, start_us=T0)],
            )
        ),
        S.encode(S.batch([S.event(S.ground_truth("q1", "m", "cat"), trace=tr, time_us=T0 + 2_000_000)])),
    ]
    actions = []
    for offset, record in enumerate(records):
        out = pipe.process_record(record, key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0)
        actions += out.actions
        for _, chunk in out.chunks:
            actions += pipe.series(chunk, table)[1]
    [truth] = [a["_source"]["aitrace"]["ground_truth"] for a in actions if "ground_truth" in a["_source"]["aitrace"]]
    assert truth.keys() == {"label", "prediction", "correct", "prediction_event_id", "prediction_trace_id", "delay_ms"}
    assert (truth["correct"], truth["delay_ms"]) == (False, 2000.0)
    assert any(a["_id"].startswith("rollup:") for a in actions) and any("-alerts-" in a["_index"] for a in actions)
    for a in actions:
        assert_mapped(a["_source"], a["_index"].split("-")[1])
    assert templates.field_types("events")["aitrace.ground_truth.correct"] == "boolean"


def test_data_stats_nan_moment_is_dropped_not_sent() -> None:
    [(_, doc)] = d.event_documents(envelope(payload=("aitrace.DataStats", PAYLOADS["aitrace.DataStats"])))
    feature = doc["aitrace"]["data"]["features"][0]
    assert "variance" not in feature and feature["mean"] == 41.5
    assert {c["name"] for c in doc["aitrace"]["data"]["class_counts"]} == {"yes", "no"}


def test_resources_summaries() -> None:
    [(_, doc)] = d.event_documents(envelope(payload=("aitrace.ResourceSample", PAYLOADS["aitrace.ResourceSample"])))
    res = doc["aitrace"]["resources"]
    assert res["gpu_memory_used_bytes"] == 40 and res["gpu_utilization_max"] == 95.0


def test_host_resource_figures_are_indexed_and_a_missing_rate_is_left_out() -> None:
    payload = {
        **PAYLOADS["aitrace.ResourceSample"],
        "host_cpu_percent": 37.5,
        "host_memory_used_bytes": 6 << 30,
        "host_net_recv_bytes_per_s": 1250.0,
        "disk_read_bytes_per_s": float("nan"),
    }
    [(_, doc)] = d.event_documents(envelope(payload=("aitrace.ResourceSample", payload)))
    res = doc["aitrace"]["resources"]
    assert (res["host_cpu_percent"], res["host_memory_used_bytes"], res["host_net_recv_bytes_per_s"]) == (
        37.5,
        6 << 30,
        1250.0,
    )
    assert res.get("disk_read_bytes_per_s") is None


def test_span_duration_in_nanoseconds() -> None:
    [(_, doc)] = d.event_documents(envelope(payload=("aitrace.Span", PAYLOADS["aitrace.Span"])))
    assert doc["event"]["duration"] == 1_500_000 and doc["event"]["outcome"] == "failure"
    assert doc["aitrace"]["span"]["name"] == "preprocess"


def test_trace_document_and_action() -> None:
    action = d.trace_action(TRACE_RECORD, context=envelope())
    assert action["_id"] == TRACE and action["_index"] == "aitrace-traces-2026.11.26"
    doc = action["_source"]
    assert doc["service"]["name"] == "gateway"  # the root span's service
    assert doc["aitrace"]["trace"]["complete"] is False
    assert doc["aitrace"]["trace"]["span_names"] == ["POST /predict", "score"]
    assert doc["event"]["duration"] == 25_000_000
    assert doc["aitrace"]["run_id"] == "run-7"
    assert_mapped(doc, "traces")


def test_alert_document_and_action() -> None:
    action = d.alert_action(ALERT_RECORD, prefix="ml")
    assert action["_id"] == "drift:ranker:age" and action["_index"] == "ml-alerts-2026.11.26"
    doc = action["_source"]
    alert = doc["aitrace"]["alert"]
    assert "pvalue" not in alert and alert["evidence"] == [0.1, None]
    assert doc["event"]["severity"] == 3 and doc["event"]["kind"] == "alert"
    assert doc["@timestamp"] == "2026-11-26T10:00:00.000000Z"
    assert_mapped(doc, "alerts")


def test_alert_update_lands_in_the_index_of_first_seen() -> None:
    """A version seen the next day must overwrite the same document, not create a second one."""
    later = {**ALERT_RECORD, "version": 9, "last_seen": T0 + 86_400_000_000}
    assert d.alert_action(later)["_index"] == d.alert_action(ALERT_RECORD)["_index"]


def test_trace_and_alert_payloads_in_an_envelope_route_to_their_index() -> None:
    [trace] = d.event_actions(envelope(payload=("aitrace.Trace", TRACE_RECORD)))
    [alert] = d.event_actions(envelope(payload=("aitrace.Alert", ALERT_RECORD)))
    assert trace["_index"].startswith("aitrace-traces-") and alert["_index"].startswith("aitrace-alerts-")


def test_index_name_uses_utc_day() -> None:
    assert d.index_name("aitrace", "events", T0) == "aitrace-events-2026.11.26"
    midnight = 1_795_737_600_000_000  # 2026-11-27T00:00:00Z
    assert d.index_name("aitrace", "events", midnight - 1) == "aitrace-events-2026.11.26"
    assert d.index_name("aitrace", "events", midnight) == "aitrace-events-2026.11.27"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (envelope(payload={"level": "x"}), "payload must be"),
        (envelope(payload=("aitrace.Nope", {})), "no event document"),
        ({**envelope(payload=("aitrace.LogRecord", {"level": "x", "message": "y"})), "trace_id": None}, "trace_id"),
        (envelope(payload=("aitrace.TrainingMetric", {"metrics": {}})), "step"),
        (envelope(payload=("aitrace.Span", {"name": "x", "start_time": "yesterday"})), "malformed"),
    ],
)
def test_malformed_records_raise_document_error(event: dict[str, Any], message: str) -> None:
    with pytest.raises(d.DocumentError, match=message):
        d.event_actions(event)


@pytest.mark.parametrize("bad_time", ["2026-11-26", 1.5e15, True, 10**20, -(10**20)])
def test_bad_event_time_is_a_document_error(bad_time: Any) -> None:
    event = envelope(payload=("aitrace.LogRecord", PAYLOADS["aitrace.LogRecord"]), time=bad_time)
    with pytest.raises(d.DocumentError, match="time"):
        d.event_actions(event)
    with pytest.raises(d.DocumentError, match="time"):
        d.alert_action({**ALERT_RECORD, "first_seen": bad_time})


def test_alert_without_required_fields_is_a_document_error() -> None:
    with pytest.raises(d.DocumentError, match="first_seen"):
        d.alert_action({k: v for k, v in ALERT_RECORD.items() if k != "first_seen"})


def block(n: int, *, step_us: int, start: int = T0, block_id: str = "blk") -> dict[str, Any]:
    values = np.linspace(1.0, 0.0, n)
    values[3] = np.nan  # a diverged value the caller sent: data, like any other cell
    values[4] = -np.inf
    return {
        "block_id": block_id,
        "trace_id": TRACE,
        "span_id": SPAN,
        "service": "trainer",
        "run_id": "run-7",
        "split": "train",
        "steps": list(range(n)),
        "times": [start + i * step_us for i in range(n)],
        "epochs": [0] * n,
        "series": [{"name": "loss", "values": values.tolist()}, {"name": "lr", "values": [0.1] * n}],
    }


def test_metric_block_nonfinite_cells_are_indexed_as_data() -> None:
    actions = d.metric_block_actions(MetricBlock.from_record(block(10, step_us=1_000_000)))
    by_id = {a["_id"]: a["_source"]["aitrace"]["metric"] for a in actions}
    assert len(actions) == 20  # 10 lr + 10 loss: every cell of a block is a point
    assert ("value" not in by_id["blk:3:loss"], by_id["blk:3:loss"]["nonfinite"]) == (True, "nan")
    assert ("value" not in by_id["blk:4:loss"], by_id["blk:4:loss"]["nonfinite"]) == (True, "-inf")
    assert by_id["blk:5:loss"]["value"] == np.linspace(1.0, 0.0, 10)[5] and "nonfinite" not in by_id["blk:5:loss"]
    assert all(a["_source"]["aitrace"]["metric"]["epoch"] == 0 for a in actions)
    for a in actions:
        assert_mapped(a["_source"], "events")


def test_block_and_event_index_a_nan_loss_alike() -> None:
    """The same NaN sent as a TrainingMetric or inside a block gives the same metric fields."""
    one = block(10, step_us=1_000_000)
    from_block = d.metric_block_actions(MetricBlock.from_record(one), series={"loss"})[3]["_source"]["aitrace"][
        "metric"
    ]
    event = envelope(
        payload=("aitrace.TrainingMetric", {"step": 3, "epoch": 0, "split": "train", "metrics": {"loss": math.nan}})
    )
    [from_event] = d.event_actions(event)
    assert from_block == from_event["_source"]["aitrace"]["metric"]


def test_rollup_document_counts_nonfinite_points_and_is_mapped() -> None:
    ctx = d.block_context(MetricBlock.from_record(block(10, step_us=1000)))
    common = {"name": "loss", "split": "train", "window_us": 10_000_000, "first_step": 0, "last_step": 9}
    [mixed, only_nan] = [
        d.rollup_action(
            ctx, window_start_us=T0, count=8, minimum=0.1, maximum=0.9, mean=0.5, last=0.2, nonfinite=2, **common
        ),
        d.rollup_action(
            ctx,
            window_start_us=T0 + 10_000_000,
            count=0,
            minimum=None,
            maximum=None,
            mean=None,
            last=None,
            nonfinite=5,
            **common,
        ),
    ]
    m = mixed["_source"]["aitrace"]["metric"]
    assert (m["count"], m["nonfinite_count"], m["value"], m["rollup"]) == (8, 2, 0.5, True)
    n = only_nan["_source"]["aitrace"]["metric"]
    assert (n["count"], n["nonfinite_count"]) == (0, 5) and not {"value", "min", "max", "last"} & n.keys()
    for a in (mixed, only_nan):
        assert_mapped(a["_source"], "events")


def test_the_windows_of_two_runs_in_one_trace_are_two_documents() -> None:
    """The runs of a sweep logged inside one driver's span share its trace: each run's window had the same ``_id``
    and the last run's overwrote the others' (/work/rev-ae D3)."""
    base = d.block_context(MetricBlock.from_record(block(10, step_us=1000)))
    common = {"name": "loss", "split": "train", "window_us": 10_000_000, "first_step": 0, "last_step": 9}
    ids = {
        d.rollup_action({**base, "run_id": run}, window_start_us=T0, count=1, minimum=1.0, maximum=1.0, mean=1.0,
                        last=1.0, **common)["_id"]
        for run in ("trial-0", "trial-1")
    }  # fmt: skip
    assert len(ids) == 2


def test_metric_block_length_mismatch_is_a_document_error() -> None:
    bad = block(10, step_us=1000)
    bad["series"][0]["values"] = [1.0]
    with pytest.raises(d.DocumentError, match="values"):
        d.metric_block_actions(MetricBlock.from_record(bad))


@settings(max_examples=60, deadline=None)
@given(
    metrics=st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.floats(allow_nan=True, allow_infinity=True),
        min_size=1,
        max_size=6,
    ),
    labels=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.text(max_size=8), max_size=4),
    step=st.integers(min_value=0, max_value=2**40),
)
def test_any_metric_event_gives_mapped_json_safe_documents(
    metrics: dict[str, float], labels: dict[str, str], step: int
) -> None:
    event = envelope(payload=("aitrace.TrainingMetric", {"step": step, "metrics": metrics}), labels=labels)
    actions = d.event_actions(event)
    assert len(actions) == len(metrics)
    assert len({a["_id"] for a in actions}) == len(metrics)
    for a in actions:
        metric = a["_source"]["aitrace"]["metric"]
        assert "value" not in metric or math.isfinite(metric["value"])
        assert_mapped(a["_source"], "events")
