"""The PII and secrets corpus through every producer entry point: nothing of it leaves the process.

``tests/corpus/secrets.py`` generates 300+ secrets of 25+ kinds and 200+ lines of benign ML text.
Each secret is pushed through every place user text enters an event (metric names, log message,
attributes and their keys, span names, attributes and errors, inference ids, inputs, features
and predictions, ground truth, data stats names, category values and class labels, run config,
service name, run id, labels, the stdlib logging handler); the events leave the client's
processor chain, are Avro-encoded and decoded back, and no secret may appear in the bytes or in
any decoded string. The benign corpus goes the same way and must arrive unchanged, unredacted.
The last test runs a subset through the real worker into the index and scans every document.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aitrace
import numpy as np
import pytest
from aitrace.infra.stack import free_port
from aitrace.producers.redact import Redactor
from aitrace.schemas.codec import AvroDeserializer, AvroSerializer, SerializationContext
from corpus.secrets import benign, secrets
from test_e2e_processors import Worker

SECRETS = secrets()
BENIGN = benign()


class Capture:
    """Last processor of the chain: keeps what would have been encoded, sends nothing."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, item: dict[str, Any]) -> None:
        self.items.append(item)
        return None


def _offline(tmp_path: Path, redactor: Redactor, capture: Capture, **settings: Any) -> aitrace.Client:
    """A client whose chain ends in ``capture`` (the broker address is never reached)."""
    settings.setdefault("service", "corpus")
    return aitrace.init(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        spool_dir=str(tmp_path / "spool"),
        processors=[redactor, capture],
        **settings,
    )


def _encoded(items: list[dict[str, Any]]) -> tuple[bytes, str]:
    """The items as one Avro ``aitrace.Batch`` and every string (keys too) of it decoded back."""
    events = [i for i in items if "payload" in i]
    blocks = [i for i in items if "payload" not in i]
    value = AvroSerializer("aitrace.Batch")({"batch_id": "b", "events": events, "metric_blocks": blocks},
                                            SerializationContext("t"))  # fmt: skip
    decoded = AvroDeserializer()(value)
    return value, "\x00".join(_strings(decoded))


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def _push(client: aitrace.Client, text: str, i: int) -> None:
    """``text`` into every entry point of the client."""
    client.metric({text: 1.0, "loss": 0.5}, step=i)
    client.log("info", text, note=text, **{text: "v"})
    client.log("error", "step failed", exc_info=ValueError(text))
    with client.span(text, attr=text, **{text: 1}):
        pass
    try:
        with client.span("op"):
            raise RuntimeError(text)
    except RuntimeError:
        pass
    client.inference(
        request_id=text,
        model_name="fraud-v3",
        latency_ms=1.5,
        features={"merchant": text, text: 0.5},
        prediction=text,
        inputs_summary=text,
        error=text if i % 2 else None,
    )
    client.ground_truth(text, "fraud-v3", text)
    columns = {"city": np.array([text, "berlin", text], dtype=object), text: np.array([1.0, 2.0, 3.0])}
    client.data_stats(
        stage=text,
        dataset=text,
        features=aitrace.summarize(columns, categorical=["city"]),
        class_counts={text: 3, "ok": 1},
        label=text,
        batch=text,
        row_count=3,
    )
    client.run_started(config={"db": {"url": text}, text: 1}, code_version=text)
    client.run_finished("FAILED", message=text)


def _leaks(value: bytes, strings: str, items: list[tuple[str, str, str]]) -> list[str]:
    return [f"{kind}: {secret!r}" for kind, secret, _ in items if secret.encode() in value or secret in strings]


def test_corpus_is_big_and_varied() -> None:
    assert len(SECRETS) >= 300
    assert len({kind for kind, _, _ in SECRETS}) >= 25
    assert len(BENIGN) >= 200
    assert all(secret in text for _, secret, text in SECRETS)


@pytest.mark.parametrize(("kind", "secret", "text"), SECRETS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SECRETS)])
def test_every_secret_is_redacted_as_text_and_as_identifier(kind: str, secret: str, text: str) -> None:
    redactor = Redactor()
    for ident in (False, True):
        out = redactor.scrub(text, ident)
        assert secret not in out, out
        assert redactor.scrub(out, ident) == out  # idempotent: its own tokens never match again
    assert redactor.total >= 2


@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_is_left_alone(text: str) -> None:
    redactor = Redactor()
    assert redactor.scrub(text) == text
    assert redactor.scrub(text, ident=True) == text
    assert redactor.total == 0


def test_every_entry_point_leaks_nothing(tmp_path: Path) -> None:
    redactor, capture = Redactor(), Capture()
    client = _offline(tmp_path, redactor, capture, run_id="run-corpus")
    for i, (_, _, text) in enumerate(SECRETS):
        _push(client, text, i)
    client.flush(timeout=30)
    client.close(timeout=5)
    value, strings = _encoded(capture.items)
    assert not _leaks(value, strings, SECRETS)
    stats = client.stats()
    assert stats["redacted"] >= len(SECRETS) * 10
    assert stats.get("rejected_schema", 0) == 0 and stats.get("rejected_bad_event", 0) == 0
    n_events = sum(1 for item in capture.items if "payload" in item)
    assert n_events == len(SECRETS) * 9  # every event travelled: redaction never drops one


def test_service_run_id_and_labels_leak_nothing(tmp_path: Path) -> None:
    """One client per item: the item is its service name, run id, a label value and a label key."""
    capture = Capture()
    for i, (_, _, text) in enumerate(SECRETS):
        redactor = Redactor()
        client = _offline(tmp_path, redactor, capture, service=text, run_id=text, labels={"team": text, text: "x"})
        client.log("info", "hello")
        client.metric({"loss": 0.1}, step=i)
        client.flush(timeout=10)
        client.close(timeout=2)
        assert client.stats()["redacted"] >= 1
    value, strings = _encoded(capture.items)
    assert not _leaks(value, strings, SECRETS)
    assert len(capture.items) == 2 * len(SECRETS)


def test_stdlib_logging_handler_leaks_nothing(tmp_path: Path) -> None:
    redactor, capture = Redactor(), Capture()
    client = _offline(tmp_path, redactor, capture)
    logger = logging.getLogger("corpus.handler")
    logger.propagate = False
    handler = aitrace.AitraceHandler(client)
    logger.addHandler(handler)
    try:
        for _, _, text in SECRETS:
            logger.warning("user said %s", text, extra={"user_note": text})
            try:
                raise KeyError(text)
            except KeyError:
                logger.exception("lookup failed")
            logging.getLogger(f"corpus.{len(text)}").handlers = []
    finally:
        logger.removeHandler(handler)
    client.flush(timeout=30)
    client.close(timeout=5)
    value, strings = _encoded(capture.items)
    assert not _leaks(value, strings, SECRETS)
    assert len(capture.items) == 2 * len(SECRETS)


def test_benign_text_arrives_unchanged_through_every_entry_point(tmp_path: Path) -> None:
    redactor, capture = Redactor(), Capture()
    client = _offline(tmp_path, redactor, capture, run_id="fraud-v3-2024-06-01", labels={"model": "bert-base-uncased"})
    for i, text in enumerate(BENIGN):
        client.metric({text: 1.0}, step=i)
        client.log("info", text, note=text)
        with client.span(text, attr=text):
            pass
        client.inference(request_id=text, model_name="fraud-v3", latency_ms=1.0, inputs_summary=text)
        client.data_stats(stage="ingest", dataset="tx", class_counts={text: 1}, label=text)
    client.flush(timeout=30)
    client.close(timeout=5)
    _, strings = _encoded(capture.items)
    assert "[REDACTED" not in strings
    assert redactor.total == 0, dict(redactor.counts)
    present = set(strings.split("\x00"))
    assert [t for t in BENIGN if t not in present] == []


def test_identifiers_keep_grouping_with_stable_distinct_tokens(tmp_path: Path) -> None:
    redactor, capture = Redactor(hash_key="k"), Capture()
    client = _offline(tmp_path, redactor, capture)
    for rid in ("req/jane@example.com", "req/bob@example.com", "req/jane@example.com"):
        client.inference(request_id=rid, model_name="m", latency_ms=1.0)
    client.data_stats(stage="s", dataset="d", class_counts={"jane@example.com": 2, "bob@example.com": 5})
    client.flush(timeout=10)
    client.close(timeout=5)
    payloads = [item["payload"][1] for item in capture.items]
    ids = [p["request_id"] for p in payloads if "request_id" in p]
    assert ids[0] == ids[2] != ids[1]
    assert all(re.fullmatch(r"req/\[REDACTED:email#[a-p]{8}\]", i) for i in ids)
    counts = next(p["class_counts"] for p in payloads if "class_counts" in p)
    assert sorted(counts.values()) == [2, 5]  # two labels stay two: no merged counts
    assert client.stats()["redacted_email"] == 5
    assert Redactor(hash_key="k").scrub("req/bob@example.com", ident=True) == ids[1]  # same key, same token


# ---------------------------------------------------------------- end to end


def _all_documents(url: str, pattern: str) -> list[dict[str, Any]]:
    body = json.dumps({"query": {"match_all": {}}, "size": 10_000}).encode()
    req = urllib.request.Request(f"{url}/{pattern}/_search", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["hits"]["hits"]


@pytest.fixture
def pii_worker(kafka: Any, search: Any, unique_name: Callable[[str], str], tmp_path: Path) -> Iterator[Worker]:
    """`aitrace worker` on its own topic and index prefix (``worker.prefix``); killed afterwards."""
    worker = Worker(kafka.bootstrap, search.url, unique_name("pii"), tmp_path, "--idle-timeout-s", "2")
    worker.start()
    yield worker
    worker.kill()


def test_corpus_through_the_worker_leaves_no_trace_in_the_index(
    kafka: Any, search: Any, pii_worker: Worker, tmp_path: Path
) -> None:
    """A subset of every kind through every entry point, the real worker, the index: zero hits."""
    prefix, worker = pii_worker.prefix, pii_worker
    by_kind: dict[str, tuple[str, str, str]] = {}
    for item in SECRETS:
        by_kind.setdefault(item[0], item)
    subset = list(by_kind.values())
    sent = 0
    for i, (_, _, text) in enumerate(subset[:8]):
        client = aitrace.init(
            service=text,
            run_id=text,
            labels={"team": text},
            kafka_bootstrap=kafka.bootstrap,
            topic_prefix=prefix,
            spool_dir=str(tmp_path / f"spool{i}"),
        )
        client.log("info", "service check")
        assert client.flush(timeout=30)
        sent += 1
        client.close(timeout=5)
    client = aitrace.init(
        service="pii-e2e", run_id=f"run-{prefix}", kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix,
        spool_dir=str(tmp_path / "spool"),
    )  # fmt: skip
    handler = aitrace.AitraceHandler(client)
    logger = logging.getLogger("corpus.e2e")
    logger.propagate = False
    logger.addHandler(handler)
    for i, (_, _, text) in enumerate(subset):
        _push(client, text, i)
        logger.warning("user said %s", text, extra={"user_note": text})
    logger.removeHandler(handler)
    assert client.flush(timeout=60)
    client.close(timeout=5)
    events_pattern = f"{prefix}-events-*"
    deadline = time.monotonic() + 120
    docs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        assert worker.running(), worker.tail()
        try:
            docs = _all_documents(search.url, events_pattern)
        except OSError:
            docs = []
        if len(docs) >= len(subset) * 9 + sent:
            break
        time.sleep(1.0)
    assert len(docs) >= len(subset) * 9 + sent, (len(docs), worker.tail())
    everything: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # traces are written once idle for 2 s: wait for them too
        everything = _all_documents(search.url, f"{prefix}-*")
        if any("-traces-" in d["_index"] for d in everything):
            break
        time.sleep(1.0)
    indices = {d["_index"].split("-")[-2] for d in everything}
    assert {"events", "traces"} <= indices, indices
    text = json.dumps(everything, ensure_ascii=False)
    leaks = [f"{kind}: {secret!r}" for kind, secret, _ in subset if secret in text or json.dumps(secret)[1:-1] in text]
    assert leaks == []
    assert "[REDACTED" in text
    print(f"scanned {len(everything)} documents of {sorted(indices)}: 0 of {len(subset)} secrets found")
