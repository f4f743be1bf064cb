"""The demo workloads, each driven against a recording client (the producer is isolated here).

The training run, the data pipeline and the two ASGI services are real (PyTorch, the
scikit-learn tables, uvicorn on 127.0.0.1 over real sockets); only the producer client is
replaced by :class:`Recorder`, which keeps every call and propagates a W3C trace context the
way the real one does, so the tests can check what each workload emits and that one request
is one trace across the load generator, the model server and the feature service.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import secrets
import statistics
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aitrace.infra import workload_inference as wi
from aitrace.infra.loadgen import LoadGenerator, Request
from aitrace.infra.stack import free_port
from aitrace.infra.workload_pipeline import PipelineConfig, run_pipeline
from aitrace.infra.workload_training import TrainingConfig, train
from aitrace.producers.summaries import summarize

_CURRENT: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("test_trace", default=None)


class Recorder:
    """Stands in for the producer client: records calls, carries (trace id, span id) in a contextvar."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.spans: list[dict[str, Any]] = []
        self.extracted: list[str | None] = []

    def _record(self, name: str, **fields: Any) -> None:
        current = _CURRENT.get()
        self.calls.append((name, {**fields, "_trace": current[0] if current else None}))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [fields for call, fields in self.calls if call == name]

    def run_started(self, **fields: Any) -> None:
        self._record("run_started", **fields)

    def run_finished(self, **fields: Any) -> None:
        self._record("run_finished", **fields)

    def metric(self, metrics: dict[str, float], step: int, epoch: int | None = None, split: str | None = None) -> None:
        self._record("metric", metrics=dict(metrics), step=step, epoch=epoch, split=split)

    def log(self, level: str, message: str, **attributes: Any) -> None:
        self._record("log", level=level, message=message, **attributes)

    def data_stats(self, **fields: Any) -> None:
        self._record("data_stats", **fields)

    def inference(self, **fields: Any) -> None:
        self._record("inference", **fields)

    def ground_truth(self, **fields: Any) -> None:
        self._record("ground_truth", **fields)

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[dict[str, Any]]:
        parent = _CURRENT.get()
        trace_id = parent[0] if parent else secrets.token_hex(16)
        span = {"name": name, "trace": trace_id, "parent": parent[1] if parent else None, **attributes}
        token = _CURRENT.set((trace_id, secrets.token_hex(8)))
        try:
            yield span
        finally:
            _CURRENT.reset(token)
            self.spans.append(span)

    def inject(self, headers: dict[str, str]) -> None:
        current = _CURRENT.get()
        if current:
            headers["traceparent"] = f"00-{current[0]}-{current[1]}-01"

    @contextlib.contextmanager
    def extract(self, headers: dict[str, str]) -> Iterator[None]:
        value = headers.get("traceparent")
        self.extracted.append(value)
        token = _CURRENT.set(tuple(value.split("-")[1:3]) if value else None)  # type: ignore[arg-type]
        try:
            yield
        finally:
            _CURRENT.reset(token)


# --------------------------------------------------------------------------- training


def test_diverging_run_explodes_after_the_lr_jump_and_fails() -> None:
    client = Recorder("trainer")
    config = TrainingConfig("run-diverge", diverge_at=150)
    result = train(client, config)
    assert result.status == "FAILED"
    assert result.first_nonfinite_step is not None and result.first_nonfinite_step > config.diverge_at
    before = statistics.median(result.grad_norms[100:150])
    finite_after = [g for g in result.grad_norms[150:] if math.isfinite(g)]
    assert max(finite_after) > 1e6 * before  # orders of magnitude, from real backward passes
    assert statistics.median(result.losses[:150]) < 0.2
    train_points = [m for m in client.of("metric") if m["split"] == "train"]
    assert len(train_points) == result.steps_run
    assert set(train_points[0]["metrics"]) == {"loss", "grad_norm", "lr", "accuracy"}
    assert train_points[config.diverge_at]["metrics"]["lr"] == pytest.approx(config.lr * config.diverge_factor)
    assert any(not math.isfinite(m["metrics"]["loss"]) for m in train_points)  # NaN/Inf are sent as data
    assert [e["level"] for e in client.of("log")] == ["error"] * config.max_nonfinite_steps
    assert [f["status"] for f in client.of("run_finished")] == ["FAILED"]
    # the whole run is one span, so every event of it shares that span's trace
    assert [s["name"] for s in client.spans] == ["train"] and client.spans[0]["new_trace"] is True
    assert {f["_trace"] for _, f in client.calls} == {client.spans[0]["trace"]}
    started = client.of("run_started")[0]
    assert started["seed"] == config.seed and started["config"]["diverge_at"] == 150


def test_healthy_run_learns_and_stays_finite() -> None:
    client = Recorder("trainer")
    result = train(client, TrainingConfig("run-healthy"))
    assert result.status == "FINISHED" and result.steps_run == 300
    assert all(math.isfinite(v) for v in result.losses + result.grad_norms)
    assert result.val_accuracy[-1][1] > 0.85
    val = [m for m in client.of("metric") if m["split"] == "val"]
    assert len(val) == 30 and set(val[0]["metrics"]) == {"loss", "accuracy"}
    assert client.of("log") == []


# --------------------------------------------------------------------------- data pipeline


def _stats(call: dict[str, Any], feature: str) -> dict[str, Any]:
    return next(f for f in call["features"] if f["name"] == feature)


def test_pipeline_emits_stats_per_stage_and_breaks_only_the_late_batches() -> None:
    client = Recorder("data-pipeline")
    config = PipelineConfig()
    result = run_pipeline(client, config, summarize=summarize)
    assert result.drifted_batches == ["b5", "b6"]
    calls = client.of("data_stats")
    assert [c["stage"] for c in calls[:3]] == ["ingest", "clean", "features"]
    assert len(calls) == 3 * config.batches
    ingest = {c["batch"]: c for c in calls if c["stage"] == "ingest"}
    reference = _stats(ingest["b0"], "alcohol")
    for name, call in ingest.items():
        alcohol = _stats(call, "alcohol")
        shift = (alcohol["mean"] - reference["mean"]) / math.sqrt(reference["variance"])
        drifted = name in result.drifted_batches
        assert (shift > 2.0) is drifted, (name, shift)
        assert (_stats(call, "magnesium")["missing"] > 0) is drifted
        assert ("3" in call["class_counts"]) is drifted
        # exact summaries (one bin per distinct value on small batches): every present value counted once
        assert sum(alcohol["histogram_counts"]) == alcohol["count"] - alcohol["missing"]
    clean = {c["batch"]: c for c in calls if c["stage"] == "clean"}
    assert clean["b6"]["rows_dropped"] == _stats(ingest["b6"], "magnesium")["missing"]
    assert "rows_dropped" not in clean["b0"]
    features = [c for c in calls if c["stage"] == "features"]
    assert "flavanoid_ratio" in {f["name"] for f in features[0]["features"]}
    # the run is one trace (one Kafka key: batches reach the detectors in order), a span per batch and stage
    assert {s["trace"] for s in client.spans} == {c["_trace"] for c in calls} and len({c["_trace"] for c in calls}) == 1
    names = [s["name"] for s in client.spans]
    assert names.count("pipeline.run") == 1 and names[-1] == "pipeline.run"
    assert all(names.count(stage) == config.batches for stage in ("pipeline.batch", "ingest", "clean", "features"))
    warnings = [e for e in client.of("log") if e["level"] == "warning"]
    assert [w["batch"] for w in warnings] == ["b5", "b6"]


def test_pipeline_refuses_an_unknown_feature() -> None:
    with pytest.raises(ValueError, match="unknown feature"):
        run_pipeline(Recorder("p"), PipelineConfig(shifted_feature="no_such_column"), summarize=summarize)


# --------------------------------------------------------------------------- inference


@pytest.fixture(scope="module")
def inference_run() -> tuple[wi.InferenceResult, Recorder, Recorder, Recorder]:
    model, features, loadgen = Recorder("model-server"), Recorder("feature-service"), Recorder("loadgen")
    config = wi.InferenceConfig(baseline_requests=60, drift_requests=40, slow_requests=20, rate=None)
    result = wi.run_inference(model, features, loadgen, config)
    return result, model, features, loadgen


def test_inference_answers_records_and_rejects_malformed_requests(inference_run: Any) -> None:
    result, model, _, loadgen = inference_run
    assert result.status_counts() == {200: 120, 400: 3, 422: 3}
    records = model.of("inference")
    assert len(records) == 126
    errors = [r for r in records if r["status"] == "error"]
    assert len(errors) == 6 and all(r["error"] for r in errors)
    assert len([e for e in model.of("log") if e["level"] == "error"]) == 6
    ok = [r for r in records if r["status"] == "ok"]
    assert set(ok[0]["features"]) == set(wi.FEATURES)
    assert {r["prediction"] for r in ok} <= set(wi.CLASSES)
    assert len(loadgen.of("ground_truth")) == 120


def test_inference_phases_carry_the_injected_faults(inference_run: Any) -> None:
    result, model, _, _ = inference_run
    slow = result.phases["slow"].latencies()
    # lower bound only: the feature service sleeps slow_delay_ms in this phase
    assert min(slow) >= wi.InferenceConfig().slow_delay_ms
    assert statistics.median(result.phases["baseline"].latencies()) < statistics.median(slow)
    radius = [r["features"]["mean_radius"] for r in model.of("inference") if r["status"] == "ok"]
    baseline, drifted = np.mean(radius[:60]), np.mean(radius[60:])
    assert drifted - baseline > 2 * wi.Model.train().feature_std["mean_radius"]


def test_one_request_is_one_trace_over_three_services(inference_run: Any) -> None:
    result, model, features, loadgen = inference_run
    client_traces = {s["trace"] for s in loadgen.spans}
    assert len(client_traces) == 126
    # every server span continued a caller's context: nothing started a trace of its own
    assert all(model.extracted) and all(features.extracted)
    model_traces = {s["trace"] for s in model.spans if s["name"] == "POST /predict"}
    feature_traces = {s["trace"] for s in features.spans if s["name"] == "POST /features"}
    assert model_traces == client_traces
    assert feature_traces < client_traces and len(feature_traces) == 120  # malformed ones stop at the model
    record = model.of("inference")[0]
    assert record["_trace"] in client_traces
    # each delayed label rides in its own request's trace (not in one endless trace of the load generator)
    labels = {g["_trace"] for g in loadgen.of("ground_truth")}
    assert len(labels) == 120 and labels < client_traces
    ok = next(r for p in result.phases.values() for r in p.responses if r.status == 200)
    assert json.loads(ok.body)["prediction"] in wi.CLASSES


def test_feature_service_down_gives_502_and_an_error_record() -> None:
    model = Recorder("model-server")
    dead = f"http://127.0.0.1:{free_port()}/features"
    with wi.ServerThread(wi.model_app(model, wi.Model.train(), dead)) as server:
        gen = LoadGenerator(server.url, Recorder("loadgen"), threads=1)
        body = json.dumps({"inputs": dict.fromkeys(wi.FEATURES, 1.0)}).encode()
        result = gen.run([Request("/predict", body)])
    assert result.by_status() == {502: 1}
    (record,) = model.of("inference")
    assert record["status"] == "error" and "feature service answered 503" in record["error"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 422, "'inputs' object"),
        (json.dumps({"inputs": {"mean_radius": 1}}).encode(), 422, "lack field(s): mean_texture"),
        (json.dumps({"inputs": {**dict.fromkeys(wi.FEATURES, 1.0), "worst_area": "big"}}).encode(), 422, "number"),
    ],
)
def test_parse_inputs_names_what_is_wrong(body: bytes, status: int, reason: str) -> None:
    with pytest.raises(wi.BadRequest, match=reason.replace("(", r"\(").replace(")", r"\)")) as info:
        wi.parse_inputs(body)
    assert info.value.status == status


# --------------------------------------------------------------------------- load generator


def test_loadgen_reports_transport_errors_instead_of_raising() -> None:
    gen = LoadGenerator(f"http://127.0.0.1:{free_port()}", Recorder("loadgen"), threads=2)
    result = gen.run([Request("/x", b"{}")] * 3)
    assert result.by_status() == {0: 3}
    assert all("ConnectionRefusedError" in (r.error or "") for r in result.responses)


def test_loadgen_refuses_a_base_url_it_cannot_use() -> None:
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        LoadGenerator("https://example.org", Recorder("loadgen"))
