"""aitrace.asgi.AitraceMiddleware and aitrace.inference.traced, on real frameworks and a real broker.

Starlette and FastAPI apps run in-process (starlette's TestClient) under the middleware, with a
real ``aitrace.Client`` on the session's Tansu; what reaches Kafka is read back and checked: one
inference record per request (route, method, status, latency, sizes, model fields), the server
span it belongs to, and the caller's trace continued and handed back in ``traceparent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aitrace
import pytest
from aitrace.infra.stack import free_port
from aitrace.producers.asgi import AitraceMiddleware, annotate
from aitrace.producers.inference import traced
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from test_producer import events_of, read

__all__ = ["INCOMING", "PNG", "delivered", "summary"]

TRACE_ID, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
INCOMING = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)
Event = dict[str, Any]


def delivered(client: aitrace.Client, records: int) -> tuple[list[Event], dict[str, Event]]:
    """The inference records the client delivered (``records`` of them) and its spans by span id."""
    assert client.flush(timeout=30)
    got = read(client, lambda r: len(events_of(r, "aitrace.InferenceRecord")) >= records)
    spans = {e["span_id"]: e for e in events_of(got, "aitrace.Span")}
    found = events_of(got, "aitrace.InferenceRecord")
    assert len(found) == records, [e["payload"][1] for e in found]
    return found, spans


def summary(event: Event) -> dict[str, Any]:
    """The HTTP facts the middleware puts in a record's ``inputs_summary``."""
    return json.loads(event["payload"][1]["inputs_summary"])


def by_route(records: list[Event]) -> dict[str, Event]:
    return {f"{summary(e)['method']} {summary(e)['route']}": e for e in records}


# --------------------------------------------------------------------------- Starlette


async def predict(request: Request) -> JSONResponse:
    features = await request.json()
    annotate(prediction="churn", confidence=0.83, request_id=features.pop("id", None), features=features)
    return JSONResponse({"prediction": "churn"})


async def classify(request: Request) -> PlainTextResponse:
    await request.body()
    annotate(prediction="cat", model="vision", version="7")
    return PlainTextResponse("cat")


def item(request: Request) -> JSONResponse:  # a sync endpoint: starlette runs it in a thread pool
    annotate(prediction=str(request.path_params["item_id"]))
    return JSONResponse({"id": request.path_params["item_id"]})


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/classify", classify, methods=["POST"]),
            Mount("/v1", routes=[Route("/items/{item_id:int}", item)]),
        ]
    )


def test_one_record_per_request_continues_the_callers_trace(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(service="churn-api")
    app = AitraceMiddleware(starlette_app(), client, model="churn", version="3", inputs={"/predict": "json"})
    body = json.dumps({"id": "req-1", "tenure_months": 3, "plan": "basic"}).encode()
    with TestClient(app) as http:
        answer = http.post(
            "/predict", content=body, headers={"traceparent": INCOMING, "content-type": "application/json"}
        )
        fresh = http.get("/v1/items/42")
    assert answer.status_code == 200 and fresh.status_code == 200
    version, trace_id, span_id, flags = answer.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01") and span_id != CALLER_SPAN

    records, spans = delivered(client, 2)
    first, second = by_route(records)["POST /predict"], by_route(records)["GET /v1/items/{item_id:int}"]
    assert (first["trace_id"], first["span_id"]) == (TRACE_ID, span_id)  # the record is the server span's
    record = first["payload"][1]
    assert record["request_id"] == "req-1" and record["status"] == "ok" and record["error"] is None
    assert (record["model_name"], record["model_version"]) == ("churn", "3")
    assert (record["prediction"], record["confidence"]) == ("churn", 0.83)
    assert record["features"] == {"tenure_months": 3.0} and record["categorical_features"] == {"plan": "basic"}
    assert 0 < record["latency_ms"] < 5000
    assert summary(first) == {
        "method": "POST",
        "route": "/predict",
        "status_code": 200,
        "request_bytes": len(body),
        "response_bytes": len(answer.content),
        "content_type": "application/json",
    }
    span = spans[span_id]
    assert span["parent_span_id"] == CALLER_SPAN and span["payload"][1]["kind"] == "server"
    assert span["payload"][1]["name"] == "POST /predict"
    assert span["payload"][1]["attributes"]["http.response.status_code"] == "200"

    # no traceparent in: a trace of its own, handed back; the route is the Mount's prefix + the template
    assert second["trace_id"] == fresh.headers["traceparent"].split("-")[1] != TRACE_ID
    assert second["payload"][1]["prediction"] == "42" and second["payload"][1]["model_name"] == "churn"


def test_unexpected_inputs_are_input_errors_and_the_app_still_answers(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(service="churn-api")
    checks = {"/predict": "json", "/classify": "image"}
    app = AitraceMiddleware(starlette_app(), client, model="churn", inputs=checks)
    sent = {
        "not json": ("/predict", {"content": b"tenure=3", "headers": {"content-type": "application/json"}}),
        "array": ("/predict", {"json": [1, 2, 3]}),
        "text as image": ("/classify", {"content": b"GIF? no, a text file", "headers": {"content-type": "image/png"}}),
        "png": ("/classify", {"content": PNG, "headers": {"content-type": "image/png"}}),
        "png upload": ("/classify", {"files": {"file": ("cat.png", PNG, "image/png")}}),
        "text upload": ("/classify", {"files": {"file": ("cat.png", b"plain words", "image/png")}}),
    }
    with TestClient(app, raise_server_exceptions=False) as http:
        statuses = {name: http.post(path, **kwargs).status_code for name, (path, kwargs) in sent.items()}
    # the app answered every request its own way: 500 (its handler choked on the text), 200 otherwise
    assert statuses == {"not json": 500, "array": 500, **dict.fromkeys(list(sent)[2:], 200)}

    records, _ = delivered(client, len(sent))
    errors = sorted(e["payload"][1]["error"] or "" for e in records)
    assert errors == [
        "",
        "",
        "invalid_input: JSON body is an array, expected an object",
        "invalid_input: body is not JSON",
        "invalid_input: body is not an image (no PNG, JPEG, GIF, WebP, TIFF or BMP signature)",
        "invalid_input: body is not an image (no PNG, JPEG, GIF, WebP, TIFF or BMP signature)",
    ]
    assert sorted(e["payload"][1]["status"] for e in records) == ["error"] * 4 + ["ok"] * 2
    vision = [e["payload"][1] for e in records if e["payload"][1]["model_name"] == "vision"]
    assert len(vision) == 4 and {r["model_version"] for r in vision} == {"7"}  # annotate() beat model="churn"


def test_payloads_stay_out_unless_asked_and_then_are_redacted(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(service="churn-api")
    quiet = AitraceMiddleware(starlette_app(), client, model="churn")
    loud = AitraceMiddleware(starlette_app(), client, model="churn", log_payloads=True)
    body = {"id": "req-2", "tenure_months": 3, "password": "hunter2", "note": "mail me at jane.doe@example.com"}
    for app in (quiet, loud):
        with TestClient(app) as http:
            assert http.post("/predict", json=body).status_code == 200

    records, _ = delivered(client, 2)
    texts = [e["payload"][1]["inputs_summary"] for e in records]
    assert all("hunter2" not in t and "jane.doe" not in t for t in texts)
    logged = [summary(e) for e in records if "request_body" in summary(e)]
    assert len(logged) == 1
    request_body = json.loads(logged[0]["request_body"])
    assert request_body["password"] == "[REDACTED]" and request_body["tenure_months"] == 3
    assert "[REDACTED:email" in request_body["note"]
    assert json.loads(logged[0]["response_body"]) == {"prediction": "churn"}


# --------------------------------------------------------------------------- FastAPI


class Customer(BaseModel):
    tenure_months: int
    plan: str


def fastapi_app(client: aitrace.Client) -> FastAPI:
    api = FastAPI()
    api.add_middleware(AitraceMiddleware, client=client, model="churn", version="4")

    @api.post("/predict")
    def predict_customer(customer: Customer) -> dict[str, Any]:
        annotate(prediction="stay", confidence=0.6)
        return {"prediction": "stay"}

    @api.post("/strict")
    def strict(payload: dict[str, Any]) -> dict[str, Any]:
        Customer.model_validate(payload)  # raises pydantic's ValidationError into the framework
        return {}

    @api.get("/customers/{customer_id}")
    def customer(customer_id: int) -> dict[str, Any]:
        return {"id": customer_id}

    return api


def test_fastapi_route_templates_and_validation_failures(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(service="churn-api")
    with TestClient(fastapi_app(client), raise_server_exceptions=False) as http:
        ok = http.post("/predict", json={"tenure_months": 3, "plan": "basic"}, headers={"traceparent": INCOMING})
        wrong_type = http.post("/predict", json={"tenure_months": "secret-7731", "plan": "basic"})
        not_json = http.post("/predict", content=b"{tenure", headers={"content-type": "application/json"})
        raised = http.post("/strict", json={"tenure_months": "secret-7731"})
        path = http.get("/customers/17")
    assert [r.status_code for r in (ok, wrong_type, not_json, raised, path)] == [200, 422, 422, 500, 200]
    assert ok.headers["traceparent"].split("-")[1] == TRACE_ID

    records, _ = delivered(client, 5)
    by_error = {e["payload"][1]["error"]: e for e in records}
    assert set(by_error) == {
        None,
        "schema_validation: body.tenure_months: Input should be a valid integer, unable to parse string as an integer",
        "schema_validation: body.1: JSON decode error",
        "schema_validation: tenure_months: Input should be a valid integer, unable to parse string as an integer; "
        "plan: Field required",
    }
    assert all("secret-7731" not in e["payload"][1]["inputs_summary"] for e in records)
    routes = {(summary(e)["route"], summary(e)["status_code"]) for e in records}
    assert routes == {("/predict", 200), ("/predict", 422), ("/strict", 500), ("/customers/{customer_id}", 200)}
    (traced_ok,) = [e for e in records if e["trace_id"] == TRACE_ID]
    assert traced_ok["payload"][1]["prediction"] == "stay" and traced_ok["payload"][1]["model_version"] == "4"


# --------------------------------------------------------------------------- never in the way


class BrokenClient:
    """A client whose call named ``fail_at`` raises: the app must not notice."""

    def __init__(self, fail_at: str) -> None:
        self.fail_at = fail_at

    def _call(self, name: str) -> contextlib.nullcontext[None]:
        if name == self.fail_at:
            raise RuntimeError(f"tracing broke in {name}")
        return contextlib.nullcontext()

    def extract(self, headers: Any) -> contextlib.nullcontext[None]:
        return self._call("extract")

    def span(self, name: str, kind: str = "internal", **attributes: Any) -> contextlib.nullcontext[None]:
        return self._call("span")

    def inject(self, headers: dict[str, Any]) -> None:
        self._call("inject")

    def inference(self, **fields: Any) -> None:
        self._call("inference")


@pytest.mark.parametrize("fail_at", ["extract", "span", "inject", "inference"])
def test_a_failing_client_never_reaches_the_app(fail_at: str) -> None:
    app = AitraceMiddleware(starlette_app(), BrokenClient(fail_at), inputs={"/predict": "json"})
    with TestClient(app) as http:
        answer = http.post("/predict", json={"tenure_months": 3})
    assert answer.status_code == 200 and answer.json() == {"prediction": "churn"}


def test_a_dead_broker_never_slows_a_request(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(service="churn-api", kafka_bootstrap=f"127.0.0.1:{free_port()}")
    app = AitraceMiddleware(starlette_app(), client, model="churn")
    with TestClient(app) as http:
        http.post("/predict", json={"tenure_months": 3})  # warm-up: imports, the thread pool
        start = time.perf_counter()
        for _ in range(50):
            assert http.post("/predict", json={"tenure_months": 3}).status_code == 200
        per_request = (time.perf_counter() - start) / 50
    assert per_request < 0.1, per_request  # milliseconds each; a blocking send would wait seconds
    assert client.stats()["enqueued"] >= 51 * 2  # every record and span was handed over
    client.close(timeout=0.1)


def test_annotate_outside_a_request_does_nothing() -> None:
    assert annotate(prediction="x") is False


def test_lifespan_and_unknown_input_kinds() -> None:
    with pytest.raises(ValueError, match="inputs kinds"):
        AitraceMiddleware(starlette_app(), inputs={"/predict": "xml"})
    started: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append("up")
        yield

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"])], lifespan=lifespan)
    with TestClient(AitraceMiddleware(app, BrokenClient("span"))):
        pass
    assert started == ["up"]  # the lifespan scope went through untouched


# --------------------------------------------------------------------------- the decorator


def test_traced_handlers_are_spans_with_one_record_each(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(service="batch-scorer")

    @traced(model="batch-model", version="2", client=client)
    def score_batch(rows: list[float]) -> list[float]:
        annotate(prediction=f"{len(rows)} rows", confidence=0.7)
        return [r * 2 for r in rows]

    @traced(model="grpc-model", client=client, headers=lambda request, context: context)
    async def predict_rpc(request: dict[str, Any], context: list[tuple[str, str]]) -> str:
        annotate(prediction="yes", features=request)
        return "yes"

    @traced(model="batch-model", client=client, name="score-broken")
    def broken(rows: list[float]) -> None:
        raise ValueError("row 3 is not a number")

    assert score_batch([1.0, 2.0, 3.0]) == [2.0, 4.0, 6.0]
    assert asyncio.run(predict_rpc({"x": 1.5}, [("traceparent", INCOMING)])) == "yes"
    with pytest.raises(ValueError, match="row 3"):
        broken([1.0])

    records, spans = delivered(client, 3)
    got = {e["payload"][1]["model_name"] + "/" + spans[e["span_id"]]["payload"][1]["name"]: e for e in records}
    batch = got["batch-model/test_traced_handlers_are_spans_with_one_record_each.<locals>.score_batch"]
    assert batch["payload"][1]["prediction"] == "3 rows" and batch["payload"][1]["model_version"] == "2"
    assert batch["payload"][1]["status"] == "ok" and batch["payload"][1]["inputs_summary"] is None
    rpc = got["grpc-model/test_traced_handlers_are_spans_with_one_record_each.<locals>.predict_rpc"]
    assert rpc["trace_id"] == TRACE_ID and spans[rpc["span_id"]]["parent_span_id"] == CALLER_SPAN
    assert rpc["payload"][1]["features"] == {"x": 1.5}
    failed = got["batch-model/score-broken"]
    assert failed["payload"][1]["status"] == "error"
    assert failed["payload"][1]["error"] == "exception: ValueError: row 3 is not a number"
    assert spans[failed["span_id"]]["payload"][1]["status"] == "error"


def test_a_secret_the_body_limit_cuts_through_is_left_out() -> None:
    """A logged body cut at ``max_body_bytes`` kept the head of a key that straddled the cut (``ghp_`` and 19
    characters: too short for the key's pattern), and the redactor let it through."""
    from aitrace.producers.http_exchange import Body, _payload_text
    from aitrace.producers.redact import Redactor

    token = "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IiLCJhZG1pbiI6dHJ1ZX0.c2lnbmF0dXJlc2lnbmF0dXJl"
    for text in ("x" * 40 + " " + token, "y" * 20 + " " + jwt, "password=" + "s" * 80):
        body = Body(64)
        body.add(text.encode())
        out = _payload_text(body, "text/plain", False, len(text), Redactor())
        assert out.endswith(f"... ({len(text)} bytes)") and "ghp_" not in out and "eyJ" not in out and "sss" not in out
    whole = Body(64)
    whole.add(b"plain words")
    assert _payload_text(whole, "text/plain", True, 11, Redactor()) == "plain words"


@pytest.mark.parametrize("depth", [300, 1_000])
def test_a_json_body_nested_deeper_than_orjson_writes_is_logged_as_text(depth: int) -> None:
    """orjson reads 1,024 levels and writes 254: a body nested deeper raised TypeError (or the redactor's walk
    RecursionError) out of the payload's text, and the record was lost (a review)."""
    from aitrace.producers.http_exchange import Body, _payload_text
    from aitrace.producers.redact import Redactor

    data = ("[" * depth + '{"password": "Hunter2Secret"}' + "]" * depth).encode()
    body = Body(len(data))
    body.add(data)
    out = _payload_text(body, "application/json", True, len(data), Redactor())
    assert out.startswith("[[[") and "Hunter2Secret" not in out


@pytest.mark.parametrize("sized", [True, False])
def test_a_secret_where_the_app_stopped_reading_is_left_out(
    make_client: Callable[..., aitrace.Client], sized: bool
) -> None:
    """An app that read only part of the body (the first of two messages, ``more_body`` set) left the head of a
    key that straddled where it stopped in the logged payload (a cut at ``max_body_bytes`` backed up to the last
    separator; this one did not): ``ghp_`` and 19 characters, too short for the key's pattern."""
    token = "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    body = ("x" * 40 + " " + token + " tail").encode()
    parts = [
        {"type": "http.request", "body": body[:64], "more_body": True},
        {"type": "http.request", "body": body[64:]},
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the first part only
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return parts.pop(0)

    async def send(message: Any) -> None:
        pass

    client = make_client(service="churn-api")
    headers = [(b"content-type", b"text/plain")] + ([(b"content-length", str(len(body)).encode())] if sized else [])
    scope = {"type": "http", "method": "POST", "path": "/p", "headers": headers}
    asyncio.run(AitraceMiddleware(app, client, model="m", log_payloads=True)(scope, receive, send))
    records, _ = delivered(client, 1)
    assert summary(records[0])["request_body"] == "x" * 40 + f" ... ({len(body) if sized else 64} bytes)"
