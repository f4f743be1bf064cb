"""Inference blocks: a trace's inference records leave as one ``aitrace.InferenceBlock`` and read back
as the events they would have been one at a time (redaction, sampling, splitting, the DLQ)."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
import numpy as np
import orjson
import pytest
from aitrace.producers import events as ev
from aitrace.producers import inference_blocks
from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.schemas.codec import AvroSerializer
from test_e2e_processors import Worker, worker_factory
from test_exporter import _ENVELOPE, Running, start
from test_log_blocks import (
    _CHILD,
    _TRACE,
    DECODER,
    _PerEvent,
    _sent,
    _without_ids,
    check_bad_shape,
    check_bit_flips,
    indexed_once,
    sending_client,
    spooled,
)

__all__ = ["start", "worker_factory"]  # the fixtures, imported


def _fields(i: int, *, odd: bool, secret: bool) -> dict[str, Any]:
    features: dict[Any, Any] = {"age": 30.0 + i, "income": 1000.5 * i, "country": ("uk", "fr")[i % 2]}
    if i % 3:
        features["api_token"] = 0.25 * i  # a secret-named number: NaN, as in a single event
        features["password"] = f"pw-{i}-x9" if i % 2 else "ok"  # blanked, the status word kept
    if odd:
        features.update({"count": i, "flag": bool(i % 2), "np": np.float32(i), 7: "seven", "obj": {"a": i}})
        if i % 4 == 1:
            features["mixed"] = "text" if i % 8 == 1 else i
    if secret:
        features["note"] = f"mail bob{i}@example.com"
    return {
        "request_id": f"req-{i}",
        "model_name": ("churn", "fraud")[i % 2],
        "model_version": f"v{i % 3}" if i % 4 else None,
        "latency_ms": 3.5 + i if not odd or i % 5 else i,
        "status": "error" if i % 10 == 7 else "ok",
        "features": features,
        "prediction": (i % 2 if odd else f"class {i % 3}") if i % 6 else None,
        "confidence": (0.5 + i / 100 if not odd or i % 3 else 1) if i % 7 else None,
        "error": RuntimeError(f"boom {i}") if odd and secret and i == 9 else None,  # an error: built per record
        "inputs_summary": f"{i} rows" if i % 5 == 0 else None,
        "feature_version": "fv1" if i % 2 else None,
    }


def _queue(running: Running, n: int, *, odd: bool = False, secret: bool = False) -> None:
    for i in range(n):
        fields = _fields(i, odd=odd, secret=secret)
        ctx = _CHILD if i % 2 else _TRACE
        running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, ctx, fields, False))
    running.exporter.wake.set()


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal events (NaN equal to NaN, map order ignored)."""
    return orjson.dumps(_without_ids(a), option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        _without_ids(b), option=orjson.OPT_SORT_KEYS
    )


@pytest.mark.parametrize(("odd", "secret"), [(False, False), (False, True), (True, False), (True, True)])
def test_a_block_reads_back_as_the_events_sent_one_at_a_time(
    start: Callable[..., Running], odd: bool, secret: bool
) -> None:
    redactor, single_redactor = Redactor(hash_key="k"), Redactor(hash_key="k")
    blocks = start([TraceSampler(1.0), redactor])
    single = start([TraceSampler(1.0), single_redactor, _PerEvent()])
    for running in (blocks, single):
        _queue(running, 40, odd=odd, secret=secret)
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert [DECODER.decode(r.value).schema for r in blocks.transport.records] == ["aitrace.InferenceBlock"]
    assert {DECODER.decode(r.value).schema for r in single.transport.records} == {"aitrace.Batch"}
    assert _same(from_blocks, from_events)  # envelope, payload, redaction alike
    block_id = from_blocks[0]["event_id"].rsplit(":", 1)[0]
    assert [e["event_id"] for e in from_blocks] == [f"{block_id}:{i}" for i in range(40)]
    payloads = [e["payload"][1] for e in from_blocks]
    assert math.isnan(payloads[1]["features"]["api_token"])
    assert payloads[1]["categorical_features"]["password"] == "[REDACTED]"
    assert payloads[2]["categorical_features"]["password"] == "ok" and "api_token" not in payloads[3]["features"]
    assert [p["status"] for p in payloads].count("error") == (5 if odd and secret else 4)
    text = repr(from_blocks)
    assert "pw-" not in text and ("example.com" not in text) and (not secret or redactor.counts["email"] == 40)
    assert redactor.counts == single_redactor.counts
    assert blocks.stats["sent"] == single.stats["sent"] == 40


@pytest.mark.parametrize("patterns", [None, [("custom", r"\breq-13\b")]])
def test_a_secret_in_one_id_of_a_long_column_is_still_found(
    start: Callable[..., Running], patterns: list[tuple[str, str]] | None
) -> None:
    """Long text columns are scanned whole first; one id holding a secret (or a user's pattern that runs
    on every text) sends the column through the redactor text by text, as single events go."""
    redactor, single_redactor = Redactor(patterns=patterns, hash_key="k"), Redactor(patterns=patterns, hash_key="k")
    blocks = start([redactor])
    single = start([single_redactor, _PerEvent()])
    for running in (blocks, single):
        for i in range(40):
            fields = {**_fields(i, odd=False, secret=False), "request_id": f"req-{i}"}
            if i == 21:
                fields["request_id"] = "req-21 bob@example.com"
            running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert _same(from_blocks, from_events)
    assert ("example.com" in repr(from_blocks)) == (patterns is not None)  # a user's list replaces the defaults
    ids = [e["payload"][1]["request_id"] for e in from_blocks]
    assert (ids[13] != "req-13") == (patterns is not None) and ids[12] == "req-12"
    assert redactor.counts == single_redactor.counts


def test_a_missing_input_is_nan_and_an_absent_feature_stays_absent(start: Callable[..., Running]) -> None:
    running = start([Redactor()])
    for i, features in enumerate([{"a": None, "b": 1.0}, {"b": 2.0}, {"a": 3.0, "c": "x"}]):
        fields = {**_fields(0, odd=False, secret=False), "features": features}
        running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    payloads = [e["payload"][1] for e in _sent(running)]
    assert math.isnan(payloads[0]["features"]["a"]) and payloads[0]["categorical_features"] == {}
    assert payloads[1]["features"] == {"b": 2.0} and payloads[2]["categorical_features"] == {"c": "x"}


def test_an_unsampled_trace_keeps_its_errors_marked_unsampled(start: Callable[..., Running]) -> None:
    running = start([TraceSampler(0.0), Redactor()])
    _queue(running, 40)
    events = _sent(running)
    assert b"req-0" not in running.transport.records[0].value  # what was sampled out does not travel
    assert [e["payload"][1]["request_id"] for e in events] == ["req-7", "req-17", "req-27", "req-37"]
    assert {e["sampled"] for e in events} == {False} and {e["payload"][1]["status"] for e in events} == {"error"}
    assert running.stats["sampled_out"] == 36 and running.stats["sent"] == 4


def test_a_block_above_max_record_bytes_is_split_with_unique_ids(start: Callable[..., Running]) -> None:
    running = start(max_record_bytes=3000)
    _queue(running, 200)
    events = _sent(running)
    assert [e["payload"][1]["request_id"] for e in events] == [f"req-{i}" for i in range(200)]
    assert len({e["event_id"] for e in events}) == 200
    assert len(running.transport.records) > 4 and all(len(r.value) <= 3000 for r in running.transport.records)


MODEL_NAMES = ["ranker", " ranker\n", "Ranker", "", " \t"]  # as the caller gave them
MODEL_KEYS = ["ranker", "ranker", "Ranker", "unknown", "unknown"]  # as they leave


@pytest.mark.parametrize("per_event", [False, True])
def test_model_names_lose_surrounding_whitespace_and_no_name_is_unknown(
    start: Callable[..., Running], per_event: bool
) -> None:
    """`"ranker\\n"` (read from a file) keyed a series beside "ranker"; an empty name was refused by the
    worker (the record dead-lettered), a blank one keyed a series without a name. Case stays: a name is
    an identity. Predictions and labels alike, in blocks and one event at a time."""
    running = start([TraceSampler(1.0), *([_PerEvent()] if per_event else [])])
    for i, name in enumerate(MODEL_NAMES):
        fields = {**_fields(i, odd=False, secret=False), "model_name": name}
        running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
        label = {"request_id": f"req-{i}", "model_name": name, "label": 1}
        running.queue.append((ev.GROUND_TRUTH, 1_700_000_000_000_000 + i, _TRACE, label, False))
    running.exporter.wake.set()
    payloads = sorted((e["payload"] for e in _sent(running)), key=lambda kp: kp[1]["request_id"])
    for kind in ("aitrace.InferenceRecord", "aitrace.GroundTruth"):
        assert [p["model_name"] for k, p in payloads if k == kind] == MODEL_KEYS, kind
    assert running.stats["unnamed_model"] == 4


def test_unbuildable_records_are_left_out_and_counted() -> None:
    stats: Counter[str] = Counter()
    good = _fields(1, odd=True, secret=False)
    rows = [(ev.INFERENCE, 1, _TRACE, good, False), (ev.INFERENCE, 2, _TRACE, {"model_name": "m"}, False),
            (ev.INFERENCE, 3, _TRACE, {**good, "latency_ms": "slow"}, False)]  # fmt: skip
    columns = inference_blocks.inference_columns(rows, stats)
    assert columns["time"] == [1, 3] and stats["rejected_bad_event"] == 1
    assert stats["rejected_bad_latency"] == 2  # as events.inference_payload counts: the unbuildable one's too
    assert math.isnan(columns["latency_ms"][1]) and columns["features"]["np"] == [1.0, 1.0]


def test_the_default_chain_reads_blocks() -> None:
    processors, _ = default_processors(Settings(service="s"))
    assert inference_blocks.block_chain(processors) is not None
    assert inference_blocks.block_chain([*processors, _PerEvent()]) is None


# ---------------------------------------------------------------- the worker side


def _block(**changes: Any) -> dict[str, Any]:
    columns = {
        "time": [1_700_000_000_000_000, 1_700_000_000_000_001], "span_id": [_TRACE.span_id], "parent_span_id": [],
        "span_index": [0, 0], "request_id": ["r1", "r2"], "latency_ms": [1.0, 2.0], "model_name": ["m"],
        "model_name_index": [0, 0], "status": ["ok"], "status_index": [0, 0], "model_version": [],
        "model_version_index": [], "prediction": ["1"], "prediction_index": [0, -1], "feature_version": [],
        "feature_version_index": [], "confidence": [], "error": [], "inputs_summary": [],
        "features": {"x": [1.0, None]}, "categorical_features": {},
    }  # fmt: skip
    block = inference_blocks.blocks.new_block("b1", _TRACE.trace_id, _ENVELOPE, columns)
    block.update(changes)
    return block


def _encoded(block: dict[str, Any]) -> bytes:
    return AvroSerializer("aitrace.InferenceBlock")(block)


def test_a_well_formed_block_decodes_to_its_records() -> None:
    decoded = DECODER.decode(_encoded(_block()))
    assert [e["event_id"] for e in decoded.events] == ["b1:0", "b1:1"] and not decoded.rejected
    first, second = (e["payload"][1] for e in decoded.events)
    assert (first["prediction"], second["prediction"]) == ("1", None)
    assert first["features"] == {"x": 1.0} and second["features"] == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"request_id": ["r1"]},
        {"latency_ms": [1.0, 2.0, 3.0]},
        {"model_name_index": [0, 1]},
        {"status_index": [0, -1]},
        {"prediction_index": [0]},
        {"model_version": ["v"], "model_version_index": [0, 1]},
        {"features": {"x": [1.0]}},
        {"categorical_features": {"c": ["a", "b", "c"]}},
        {"confidence": [0.5]},
    ],
)
def test_a_block_whose_columns_do_not_line_up_is_rejected_whole(changes: dict[str, Any]) -> None:
    check_bad_shape(_encoded(_block(**changes)))


def test_bit_flips_of_a_block_decode_or_reject_with_a_reason() -> None:
    check_bit_flips(_encoded(_block()), 12)


def test_the_spool_carries_blocks(tmp_path: Path) -> None:
    """A client whose broker is down spools its inference block; the bytes read back as every record."""

    def send(client: aitrace.Client) -> None:
        for i in range(30):
            client.inference(f"r{i}", "m", 2.0 + i, features={"x": float(i)})

    events, schemas = spooled(tmp_path, send, 30)
    # in whatever order the records failed (the first one alone may spill after the block behind it)
    assert sorted((e["payload"][1]["request_id"] for e in events), key=lambda r: int(r[1:])) == [
        f"r{i}" for i in range(30)
    ]
    assert schemas == {"aitrace.InferenceBlock"}


def test_inference_blocks_through_the_worker_are_indexed_once_and_a_bad_one_dead_lettered(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker],
    tmp_path: Path,
) -> None:  # fmt: skip
    prefix = unique_name("infblk")
    client = sending_client(kafka, prefix, tmp_path)
    for trace in range(3):
        with client.span(f"request {trace}"):
            for i in range(50):
                features = {"age": float(i), "plan": "pro"}
                client.inference(f"t{trace}-r{i}", "churn", 2.0 + i, model_version="v1", features=features,
                                 prediction=i % 2, confidence=0.9)  # fmt: skip
    n = 150
    assert client.flush(60)
    client.close(10)
    bad = _encoded(_block(request_id=["r1"], block_id=f"bad-{os.urandom(4).hex()}"))
    indexed_once(kafka, search, worker_factory, prefix, ("aitrace.InferenceRecord", n), ("events.inference", bad))


def test_a_number_under_a_secret_name_is_nan_in_a_block_as_in_an_event(start: Callable[..., Running]) -> None:
    """A features map holds doubles: ``{"ssn": 123456789}`` was indexed as the number itself."""
    redactor, single_redactor = Redactor(hash_key="k"), Redactor(hash_key="k")
    blocks = start([redactor])
    single = start([single_redactor, _PerEvent()])
    for running in (blocks, single):
        for i in range(40):
            features = {"ssn": 123456789.0 + i, "amount": 12.5} if i % 4 else {"amount": 1.0, "password": 4242.0}
            fields = {**_fields(i, odd=False, secret=False), "features": features}
            running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert _same(from_blocks, from_events)
    features = [e["payload"][1]["features"] for e in from_blocks]
    assert all(math.isnan(f["ssn"]) and f["amount"] == 12.5 for f in features[1:4])
    assert math.isnan(features[0]["password"]) and "ssn" not in features[0]
    assert redactor.counts["field"] == single_redactor.counts["field"] == 40


def test_a_str_subclass_is_redacted_and_sent_as_a_plain_str(start: Callable[..., Running]) -> None:
    """``clf.predict(X)[0]`` is a ``numpy.str_``: the redactor scanned only ``type(v) is str``, so an e-mail or a
    key in a prediction, a request id or a categorical feature of that type went out as it was."""
    redactor = Redactor(hash_key="k")
    running = start([redactor])
    for i in range(40):
        fields = {**_fields(i, odd=False, secret=False), "prediction": np.str_(f"bob{i}@example.com")}
        fields["features"] = {"who": np.str_(f"alice{i}@example.org")}
        if i == 5:
            fields["request_id"] = np.str_("ghp_abcdefghijklmnopqrstuvwxyz0123456789")
        running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    text = repr(_sent(running))
    assert "example.com" not in text and "example.org" not in text and "ghp_abc" not in text
    assert redactor.counts["email"] == 80 and redactor.counts["github_token"] == 1


def test_a_lone_surrogate_in_a_secret_of_an_identifier_costs_no_record(start: Callable[..., Running]) -> None:
    """``os.fsdecode`` of a name that is not UTF-8 leaves a lone surrogate; inside a secret of an identifier field
    the redactor hashed ``secret.encode()``, raised UnicodeEncodeError, and the whole block was dropped."""
    bad = os.fsdecode(b"token=abc\xffdef")
    redactor = Redactor(hash_key="k")
    assert redactor.scrub(bad, True).startswith("[REDACTED:secret_assignment#")
    running = start([redactor])
    for i in range(40):
        fields = {**_fields(i, odd=False, secret=False), "request_id": bad if i == 7 else f"req-{i}"}
        running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    sent = _sent(running)
    assert len(sent) == 40 and "abc" not in repr(sent) and running.stats["dropped_processor_error"] == 0


def test_two_keys_that_redact_to_one_name_keep_the_block(start: Callable[..., Running]) -> None:
    """``bob@example.com`` and ``bob%40example.com`` redact to one name: the block's number columns were named by a
    strict zip of the scrubbed names, which raised, and every record of the block was dropped."""
    redactor = Redactor(hash_key="k")
    running = start([redactor])
    for i in range(40):
        fields = {**_fields(i, odd=False, secret=False), "features": {"bob@example.com": 1.0, "bob%40example.com": 0.0}}
        running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    sent = _sent(running)
    assert len(sent) == 40 and running.stats["dropped_processor_error"] == 0 and "bob" not in repr(sent)
    assert all(list(e["payload"][1]["features"]) == [redactor.scrub("bob@example.com", True)] for e in sent)


def test_a_record_with_only_one_of_two_keys_that_redact_to_one_name_keeps_its_value(
    start: Callable[..., Running],
) -> None:
    """Shown by a review: the block kept the later column of the two, so a record that had only the earlier key
    lost its value (NaN in a block, kept as a single event)."""
    redactor = Redactor(hash_key="k")
    running = start([redactor])
    for i in range(40):
        features = {"bob%40example.com": 2.0} if i == 0 else {"bob@example.com": 1.0} if i == 1 else {"z": 9.0}
        fields = {**_fields(i, odd=False, secret=False), "features": features}
        running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    sent = {e["payload"][1]["request_id"]: e["payload"][1]["features"] for e in _sent(running)}
    name = redactor.scrub("bob@example.com", True)
    assert sent["req-0"][name] == 2.0 and sent["req-1"][name] == 1.0 and len(sent) == 40


def test_an_int_past_a_double_costs_no_other_record(start: Callable[..., Running]) -> None:
    """``10**400`` in one record's latency, features or confidence raised OverflowError in the block builder
    (``float(10**400)``, ``events.as_float`` converting ints outside its try) and the whole block was dropped."""
    assert ev.as_float(10**400) is None
    running = start([Redactor()])
    for i in range(40):
        fields = {**_fields(i, odd=False, secret=False), "features": {"x": 10**400 if i == 3 else i}}
        fields["latency_ms"] = 10**400 if i == 5 else 2
        fields["confidence"] = 10**400 if i == 6 else 0.5
        running.queue.append((ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, fields, False))
    sent = {e["payload"][1]["request_id"]: e["payload"][1] for e in _sent(running)}
    # the latency is NaN, counted as rejected_bad_latency, and a worker refuses that record alone (as a single event)
    assert (
        sorted(sent) == sorted(f"req-{i}" for i in range(40) if i != 5) and running.stats["rejected_bad_latency"] == 1
    )
    assert sent["req-3"]["categorical_features"] == {"x": repr(10**400)} and sent["req-4"]["features"] == {"x": 4.0}
    assert sent["req-6"]["confidence"] is None and running.stats["dropped_exporter_error"] == 0


def test_a_denied_number_field_is_nan_in_a_block_as_in_an_event(start: Callable[..., Running]) -> None:
    """``init(deny=["confidence"])``: the redactor blanked the block's confidence column to ``[REDACTED]`` texts,
    which no double array takes, and every block of inference records was rejected (shown by a review: 0 of 5
    arrived; a single event has NaN). ``deny=["index"]`` blanked the index columns the same way."""
    for deny in (["confidence"], ["latency"], ["index"]):
        redactor, single_redactor = Redactor(deny=deny), Redactor(deny=deny)
        blocks = start([redactor])
        single = start([single_redactor, _PerEvent()])
        for running in (blocks, single):
            for i in range(40):
                running.queue.append(
                    (ev.INFERENCE, 1_700_000_000_000_000 + i, _TRACE, _fields(i, odd=True, secret=False), False)
                )
        from_blocks, from_events = _sent(blocks), _sent(single)
        assert len(from_blocks) == 40 and _same(from_blocks, from_events) and blocks.stats["rejected_schema"] == 0
        assert redactor.counts["field"] == single_redactor.counts["field"]
        if deny == ["confidence"]:
            confidences = [e["payload"][1]["confidence"] for e in from_blocks]
            assert all(c is None or math.isnan(c) for c in confidences) and any(c is not None for c in confidences)


def test_a_list_of_numbers_in_a_free_value_is_still_blanked() -> None:
    """Only a block's typed number columns get the number rule: a secret-named list of numbers in a body or an
    attribute (``"pin": [4, 3, 2, 1]``) is a free value and stays blanked (a fix that applied the rule to every list
    of numbers sent it in clear)."""
    redactor = Redactor(deny=["confidence"])
    body = redactor.value({"user": "bob", "pin": [4, 3, 2, 1], "confidence": [0.5, 0.7], "secret": [0.25, 7]})
    assert body["pin"] == ["[REDACTED]"] * 4 and body["confidence"] == ["[REDACTED]"] * 2
    assert body["secret"] == ["[REDACTED]"] * 2
