"""aitrace.wsgi.AitraceWSGIMiddleware on a real Flask app and a real broker.

Flask's test client drives the app in-process (``buffered=True`` reads the body and closes the
response, as a WSGI server does); a real ``aitrace.Client`` on the session's Tansu sends what is
read back and checked: one inference record per request, its server span, the caller's trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import aitrace
import pytest
from aitrace.producers.wsgi import AitraceWSGIMiddleware, annotate
from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ValidationError
from test_asgi import INCOMING, PNG, BrokenClient, delivered, summary

TRACE_ID, CALLER_SPAN = INCOMING.split("-")[1:3]


class Customer(BaseModel):
    tenure_months: int


def flask_app(client: Any, **options: Any) -> Flask:
    app = Flask("churn")

    @app.post("/predict")
    def predict() -> Response:
        features = request.get_json()
        annotate(prediction="churn", confidence=0.83, features=features, model="churn", version="5")
        return jsonify(prediction="churn")

    @app.post("/classify")
    def classify() -> str:
        request.get_data()
        return "cat"

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Response:
        return jsonify(id=item_id)

    @app.post("/strict")
    def strict() -> str:
        Customer.model_validate(request.get_json())
        return "ok"

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            yield from ("a" * 10, "b" * 20, "c" * 30)

        return Response(chunks(), mimetype="text/plain")

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> tuple[Response, int]:
        return jsonify(detail=exc.errors(include_input=False, include_url=False)), 422

    app.wsgi_app = AitraceWSGIMiddleware(app.wsgi_app, client, **options)  # type: ignore[method-assign]
    return app


def test_one_record_per_request_continues_the_callers_trace(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(service="churn-api")
    http = flask_app(client, model="default-model", inputs={"/predict": "json"}).test_client()
    body = json.dumps({"tenure_months": 3, "plan": "basic"}).encode()
    answer = http.post(
        "/predict", data=body, headers={"traceparent": INCOMING, "content-type": "application/json"}, buffered=True
    )
    fresh = http.get("/items/42", buffered=True)
    streamed = http.get("/stream", buffered=True)
    assert [r.status_code for r in (answer, fresh, streamed)] == [200, 200, 200]
    version, trace_id, span_id, flags = answer.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01") and span_id != CALLER_SPAN

    records, spans = delivered(client, 3)
    routes = {summary(e)["route"]: e for e in records}
    first = routes["/predict"]
    assert (first["trace_id"], first["span_id"]) == (TRACE_ID, span_id)
    record = first["payload"][1]
    assert (record["model_name"], record["model_version"]) == ("churn", "5")
    assert (record["prediction"], record["confidence"], record["status"]) == ("churn", 0.83, "ok")
    assert record["features"] == {"tenure_months": 3.0} and record["categorical_features"] == {"plan": "basic"}
    assert 0 < record["latency_ms"] < 5000
    assert summary(first) == {
        "method": "POST",
        "route": "/predict",
        "status_code": 200,
        "request_bytes": len(body),
        "response_bytes": len(answer.data),
        "content_type": "application/json",
    }
    span = spans[span_id]["payload"][1]
    assert spans[span_id]["parent_span_id"] == CALLER_SPAN and (span["name"], span["kind"]) == (
        "POST /predict",
        "server",
    )

    item = routes["/items/<int:item_id>"]  # Flask's rule, not the path
    assert item["trace_id"] == fresh.headers["traceparent"].split("-")[1] != TRACE_ID
    assert item["payload"][1]["model_name"] == "default-model"
    assert summary(routes["/stream"])["response_bytes"] == 60 == len(streamed.data)  # counted as it streamed


def test_unexpected_inputs_and_failures_are_recorded_and_the_app_answers(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(service="churn-api")
    http = flask_app(client, model="churn", inputs={"/predict": "json", "/classify": "image"}).test_client()
    sent = [
        ("/predict", {"data": b"tenure=3", "content_type": "application/json"}),
        ("/predict", {"json": "just a string"}),
        ("/classify", {"data": b"plain words", "content_type": "image/png"}),
        ("/classify", {"data": PNG, "content_type": "image/png"}),
        ("/strict", {"json": {"tenure_months": "secret-7731"}}),
    ]
    statuses = [http.post(path, buffered=True, **kwargs).status_code for path, kwargs in sent]
    assert statuses == [400, 200, 200, 200, 422]  # Flask's own answers: the middleware changed none

    records, _ = delivered(client, len(sent))
    errors = sorted(e["payload"][1]["error"] or "" for e in records)
    assert errors == [
        "",
        "invalid_input: JSON body is a string, expected an object",
        "invalid_input: body is not JSON",
        "invalid_input: body is not an image (no PNG, JPEG, GIF, WebP, TIFF or BMP signature)",
        "schema_validation: tenure_months: Input should be a valid integer, unable to parse string as an integer",
    ]
    assert all("secret-7731" not in e["payload"][1]["inputs_summary"] for e in records)


@pytest.mark.parametrize("fail_at", ["extract", "span", "inject", "inference"])
def test_a_failing_client_never_reaches_the_app(fail_at: str) -> None:
    http = flask_app(BrokenClient(fail_at), inputs={"/predict": "json"}).test_client()
    answer = http.post("/predict", json={"tenure_months": 3}, buffered=True)
    assert answer.status_code == 200 and answer.get_json() == {"prediction": "churn"}


def test_a_non_ascii_path_is_read_as_utf_8_and_redacted(make_client: Callable[..., aitrace.Client]) -> None:
    """PEP 3333 hands PATH_INFO over as the UTF-8 bytes decoded as latin-1: ``jöhn.dœ@exämple.com`` arrived as
    ``jÃ¶hn.dÅ\x93@exÃ¤mple.com``, which no pattern reads as an e-mail, and went out whole in the route and
    the span's name (so did ``contraseña=...``)."""
    client = make_client(service="churn-api")
    http = flask_app(client, model="churn").test_client()
    paths = ["/users/jöhn.dœ@exämple.com/profile", "/reset/contraseña=Secreto123x"]
    assert [http.get(path, buffered=True).status_code for path in paths] == [404, 404]
    records, spans = delivered(client, 2)
    text = json.dumps([records, list(spans.values())], ensure_ascii=False, default=repr)
    for secret in ("jöhn.dœ@exämple.com", "Secreto123x"):
        assert secret not in text and secret.encode().decode("latin-1") not in text
    assert sorted(summary(e)["route"] for e in records) == [
        "/reset/[REDACTED:secret_assignment]",
        "/users/[REDACTED:email]/profile",
    ]


def test_a_header_sent_in_latin_1_keeps_its_reading() -> None:
    """Shown by a review: http.client and werkzeug's test client send a str header as latin-1; re-read as UTF-8 it
    became U+FFFD, so X-Request-Id req-café and req-cafè were one id that no longer matched the app's."""
    from aitrace.producers.wsgi import _text

    assert _text("req-café-1") == "req-café-1" and _text("req-cafè-1") == "req-cafè-1"
    assert _text("/menu/café") == "/menu/café"  # a path a server already decoded
    assert _text("/users/jöhn".encode().decode("latin-1")) == "/users/jöhn"  # PEP 3333's latin-1 of UTF-8 bytes


def test_a_secret_where_the_app_stopped_reading_is_left_out(make_client: Callable[..., aitrace.Client]) -> None:
    """Shown by a review (log_payloads=True): an app that read only part of the body (``read(64)``) left the head of
    a key that straddled where it stopped (``ghp_`` and 19 characters, too short for the key's pattern) in the
    record: only a cut at ``max_body_bytes`` backed up to the last separator. With or without a Content-Length."""
    import io

    token = "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    body = ("x" * 40 + " " + token + " tail").encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read(64)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = make_client(service="churn-api")
    middleware = AitraceWSGIMiddleware(app, client, model="m", log_payloads=True)
    for sized in (True, False):
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/p", "SCRIPT_NAME": "", "CONTENT_TYPE": "text/plain"}
        environ.update({"CONTENT_LENGTH": str(len(body))} if sized else {"wsgi.input_terminated": True})
        environ["wsgi.input"] = io.BytesIO(body)
        answer = middleware(environ, lambda status, headers, *exc: None)
        assert list(answer) == [b"ok"]
        answer.close()  # type: ignore[attr-defined]
    records, _ = delivered(client, 2)
    logged = sorted(summary(e)["request_body"] for e in records)
    assert logged == ["x" * 40 + " ... (64 bytes)", "x" * 40 + f" ... ({len(body)} bytes)"]


def test_a_json_body_read_whole_goes_by_its_structure_however_it_was_read(
    make_client: Callable[..., aitrace.Client],
) -> None:
    """Shown by a review of the cut-back: a chunked JSON body (no Content-Length) that the app read in one
    ``read(n)`` or ``readline()`` counted as cut, so the key-by-key walk was skipped and a ``deny=`` field went out
    in clear. A body that parses is read by its structure, whole or not."""
    import io

    body = b'{"user": "bob", "account_no": "DE-ACCT-99887766", "note": "hello"}'

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].readline()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = make_client(service="churn-api", deny=["account_no"])
    middleware = AitraceWSGIMiddleware(app, client, model="m", log_payloads=True)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/p", "SCRIPT_NAME": "", "CONTENT_TYPE": "application/json"}
    environ.update({"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(body)})
    answer = middleware(environ, lambda status, headers, *exc: None)
    assert list(answer) == [b"ok"]
    answer.close()  # type: ignore[attr-defined]
    records, _ = delivered(client, 1)
    logged = summary(records[0])["request_body"]
    assert "99887766" not in logged and '"user":"bob"' in logged, logged
