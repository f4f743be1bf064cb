"""Demo workload: two ASGI services answering predictions, traced across both, under load.

- ``model-server`` (public): ``POST /predict`` with ``{"request_id": ..., "inputs": {...}}``.
  It validates the request, asks the feature service for the model's input vector, predicts
  with a logistic regression trained on scikit-learn's breast-cancer table (shipped, no
  download) and records one ``client.inference`` per request, errors included.
- ``feature-service``: ``POST /features`` turns raw inputs into the scaled vector (the
  fitted scaler lives here, as in a feature store).

Both run under the packaged :class:`aitrace.producers.asgi.AitraceMiddleware`, which reads the caller's
``traceparent``, wraps the request in a server span of its own service and writes
``traceparent`` back on the response: one request from the load generator is one trace over
three services. On the model server it also sends the one inference record per request, with
what the handler attached through :func:`aitrace.producers.asgi.annotate`; the feature service serves no
model and is traced only.

The run has three phases: ``baseline``; ``drift`` (inputs of one feature shifted by a few
standard deviations, as if an upstream unit changed); ``slow`` (the feature service gains
latency, as when its backing store degrades, while the drift goes on). A few malformed
requests (bad JSON, missing fields) get 4xx answers and are logged as errors.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import uvicorn
from aitrace.infra.loadgen import LoadGenerator, LoadResult, Request, Response
from aitrace.producers.asgi import AitraceMiddleware, ASGIApp, annotate
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

MODEL_NAME = "cancer-classifier"
MODEL_VERSION = "1"
FEATURES = (
    "mean_radius",
    "mean_texture",
    "mean_smoothness",
    "mean_concave_points",
    "worst_area",
    "worst_symmetry",
)
CLASSES = ("malignant", "benign")


class ServiceClient(Protocol):
    """The part of the producer client a traced service uses."""

    def span(self, name: str, kind: str = ..., **attributes: Any) -> AbstractContextManager[Any]: ...

    def inject(self, headers: dict[str, str]) -> Any: ...

    def extract(self, headers: dict[str, str]) -> AbstractContextManager[Any]: ...

    def log(self, level: str, message: str, **attributes: Any) -> Any: ...

    def inference(self, **fields: Any) -> Any: ...

    def ground_truth(self, **fields: Any) -> Any: ...


# --------------------------------------------------------------------------- data and model


def load_table() -> tuple[np.ndarray, np.ndarray]:
    """The chosen breast-cancer columns (order of FEATURES) and labels 0/1."""
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    columns = [names.index(f) for f in FEATURES]
    return np.asarray(data.data[:, columns], dtype=np.float64), np.asarray(data.target)


@dataclass
class Model:
    """A fitted scaler (feature service) and classifier (model server)."""

    scaler: StandardScaler
    classifier: LogisticRegression
    feature_std: dict[str, float]

    @classmethod
    def train(cls, seed: int = 0) -> Model:
        x, y = load_table()
        scaler = StandardScaler().fit(x)
        classifier = LogisticRegression(max_iter=500, random_state=seed).fit(scaler.transform(x), y)
        return cls(scaler, classifier, {f: float(s) for f, s in zip(FEATURES, x.std(axis=0), strict=True)})


@dataclass
class Faults:
    """What the workload breaks on purpose; read by the services at request time."""

    feature_delay_s: float = 0.0


class BadRequest(Exception):
    """A request the service refuses, with the HTTP status it answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_inputs(body: bytes) -> tuple[str, dict[str, float]]:
    """``(request_id, inputs)`` of a predict request; raises BadRequest (400/422) with the reason."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise BadRequest(400, f"request body is not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), dict):
        raise BadRequest(422, "request must be an object with an 'inputs' object")
    inputs = payload["inputs"]
    missing = [f for f in FEATURES if f not in inputs]
    if missing:
        raise BadRequest(422, f"inputs lack field(s): {', '.join(missing)}")
    try:
        values = {f: float(inputs[f]) for f in FEATURES}
    except (TypeError, ValueError):
        raise BadRequest(422, "every input must be a number") from None
    request_id = str(payload.get("request_id") or uuid.uuid4().hex)
    return request_id, values


# --------------------------------------------------------------------------- services


def feature_app(client: ServiceClient, model: Model, faults: Faults) -> ASGIApp:
    """The feature service: raw inputs -> scaled vector."""

    async def features(request: StarletteRequest) -> JSONResponse:
        body = await request.body()
        try:
            _, values = parse_inputs(body)
        except BadRequest as exc:
            client.log("error", f"feature-service rejected a request: {exc}", status=exc.status)
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        with client.span("compute-features", features=len(values)):
            if faults.feature_delay_s:
                await asyncio.sleep(faults.feature_delay_s)  # the degraded backing store
            vector = model.scaler.transform(np.asarray([[values[f] for f in FEATURES]]))[0]
        return JSONResponse({"vector": vector.tolist()})

    app = Starlette(routes=[Route("/features", features, methods=["POST"])])
    return AitraceMiddleware(app, client, inference=False)


def model_app(client: ServiceClient, model: Model, feature_url: str) -> ASGIApp:
    """The model server: validate, fetch features, predict; the middleware records the inference."""

    async def predict(request: StarletteRequest) -> JSONResponse:
        body = await request.body()
        try:
            request_id, values = parse_inputs(body)
        except BadRequest as exc:
            return _refuse(client, exc)
        annotate(request_id=request_id, features=values)
        headers = {"Content-Type": "application/json"}
        with client.span("feature-service.call", kind="client", url=feature_url):
            client.inject(headers)
            status, answer = await asyncio.to_thread(_post_json, feature_url, body, headers)
        if status != 200:
            return _refuse(client, BadRequest(502, f"feature service answered {status}: {answer.get('error', '')}"))
        with client.span("model.predict", model=MODEL_NAME):
            proba = model.classifier.predict_proba(np.asarray([answer["vector"]]))[0]
        label = int(np.argmax(proba))
        annotate(prediction=CLASSES[label], confidence=float(proba[label]))
        return JSONResponse({"request_id": request_id, "prediction": CLASSES[label], "confidence": float(proba[label])})

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
    return AitraceMiddleware(app, client, model=MODEL_NAME, version=MODEL_VERSION, inputs={"/predict": "json"})


def _refuse(client: ServiceClient, exc: BadRequest) -> JSONResponse:
    """A refused request is an error log, and its record says why (status error: the error rate)."""
    client.log("error", f"predict failed ({exc.status}): {exc}", status=exc.status, model=MODEL_NAME)
    annotate(error=str(exc))
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


def _post_json(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError) as exc:
        return 503, {"error": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------- serving


class ServerThread:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this on Linux: without it, the response head and body leave in
        # two segments and Nagle + delayed ACK add ~40 ms to every keep-alive request.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the ASGI server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class InferenceConfig:
    """Phase sizes and faults; the defaults take about ten seconds."""

    baseline_requests: int = 300
    drift_requests: int = 200
    slow_requests: int = 160
    drifted_feature: str = "mean_radius"
    drift_in_std: float = 3.0
    slow_delay_ms: float = 150.0  # many times the baseline even on a loaded machine: a sharp rise
    bad_json_requests: int = 3
    missing_field_requests: int = 3
    threads: int = 4
    rate: float | None = 120.0
    seed: int = 3


@dataclass
class InferenceResult:
    phases: dict[str, LoadResult] = field(default_factory=dict)
    drifted_feature: str = ""
    malformed_sent: int = 0

    def status_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for result in self.phases.values():
            for status, n in result.by_status().items():
                counts[status] = counts.get(status, 0) + n
        return counts


def phase_requests(
    phase: str, count: int, config: InferenceConfig, model: Model, rng: np.random.Generator
) -> list[Request]:
    """``count`` predict requests sampled from the real rows; the label rides along for ground truth."""
    x, y = load_table()
    index = rng.integers(0, len(y), count)
    shift = config.drift_in_std * model.feature_std[config.drifted_feature] if phase != "baseline" else 0.0
    requests = []
    for i in index:
        inputs = {f: float(v) for f, v in zip(FEATURES, x[i], strict=True)}
        inputs[config.drifted_feature] += shift
        request_id = uuid.uuid4().hex
        body = json.dumps({"request_id": request_id, "inputs": inputs}).encode()
        requests.append(Request("/predict", body, tag=phase, context=(request_id, CLASSES[int(y[i])])))
    return requests


def malformed_requests(config: InferenceConfig) -> list[Request]:
    bad_json = [Request("/predict", b'{"inputs": {"mean_radius": 14.1,', tag="malformed")] * config.bad_json_requests
    missing = {"request_id": "x", "inputs": {"mean_radius": 14.1}}
    missing_fields = [Request("/predict", json.dumps(missing).encode(), tag="malformed")]
    missing_fields *= config.missing_field_requests
    return bad_json + missing_fields


def _interleave(requests: list[Request], extra: list[Request], rng: np.random.Generator) -> list[Request]:
    out = list(requests)
    for request in extra:
        out.insert(int(rng.integers(0, len(out) + 1)), request)
    return out


def run_inference(
    model_client: ServiceClient,
    feature_client: ServiceClient,
    loadgen_client: ServiceClient,
    config: InferenceConfig,
    *,
    on_phase: Callable[[str], None] | None = None,
) -> InferenceResult:
    """Start both services, drive the three phases through the load generator, stop the services."""
    model = Model.train(config.seed)
    faults = Faults()
    rng = np.random.default_rng(config.seed)
    result = InferenceResult(drifted_feature=config.drifted_feature)

    def ground_truth(response: Response) -> None:
        # The true label arrives after the answer, as a delayed label would.
        if response.status == 200 and response.request.context is not None:
            request_id, label = response.request.context
            loadgen_client.ground_truth(request_id=request_id, model_name=MODEL_NAME, label=label)

    with (
        ServerThread(feature_app(feature_client, model, faults)) as features,
        ServerThread(model_app(model_client, model, features.url + "/features")) as server,
    ):
        gen = LoadGenerator(
            server.url, loadgen_client, threads=config.threads, rate=config.rate, on_response=ground_truth
        )
        plan = [
            ("baseline", config.baseline_requests, 0.0, []),
            ("drift", config.drift_requests, 0.0, malformed_requests(config)),
            ("slow", config.slow_requests, config.slow_delay_ms / 1000, []),
        ]
        for phase, count, delay, extra in plan:
            if on_phase is not None:
                on_phase(phase)
            faults.feature_delay_s = delay
            requests = _interleave(phase_requests(phase, count, config, model, rng), extra, rng)
            result.phases[phase] = gen.run(requests)
            result.malformed_sent += len(extra)
    return result
