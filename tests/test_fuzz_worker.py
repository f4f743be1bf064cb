"""Record-level fuzz through a running worker: malformed records mixed with valid ones.

Malformed: random bytes, truncations, bit flips and absurd counts spliced into valid
records, tombstones, empty and huge values, event times far in the past or future. They are
made from their own seed batches, never from the valid ones (a flipped copy of a valid record
keeping its event id in another day's index would look like a duplicate).

Accounting, per record, by the (partition, offset) its delivery report gave:

* valid: every event id indexed exactly once;
* malformed: in the DLQ (original bytes, source position, a reason), or decodable, in which
  case the events a local :class:`RecordDecoder` accepts from it are indexed;
* the worker never stops: it keeps running, and a tail of valid records sent after all the
  malformed ones is indexed too.

Bounded by default (300 malformed, 100 valid); ``AITRACE_FULL_TESTS=1`` sends ten times more.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import synth as S
from aitrace.processors.decode import RecordDecoder
from aitrace.processors.dlq import parse_headers
from aitrace.schemas.codec import DecodeError
from confluent_kafka import Consumer, Producer, TopicPartition
from test_e2e_processors import Worker, _count, _search, _trace_batch, _wait, worker_factory
from test_fuzz_decoders import _zigzag

__all__ = ["worker_factory"]

FULL = os.environ.get("AITRACE_FULL_TESTS") == "1"
N_BAD = 3000 if FULL else 300
N_GOOD = 1000 if FULL else 100
DAY_US = 86_400_000_000

Rec = tuple[bytes | None, bytes | None]  # key, value


def _seed(rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        block = S.metric_block(trace=S.trace_id(), run_id="fz", start_step=0, series={"loss": np.ones(4)})
        return S.encode(S.batch([], [block]))
    return S.encode(_trace_batch(rng.randint(1, 4))[1])


def _skewed(rng: random.Random) -> bytes:
    tr = S.trace_id()
    shift = rng.choice([-400 * DAY_US, -30 * DAY_US, 30 * DAY_US, 3 * DAY_US])
    return S.encode(S.batch([S.event(S.log("info", "skewed"), trace=tr, time_us=S.now_us() + shift)]))


def _malformed(rng: random.Random, i: int) -> Rec:
    kind = i % 9
    seed = _seed(rng)
    if kind == 0:
        return None, None  # tombstone
    if kind == 1:
        return rng.choice([None, b"k"]), rng.choice([b"", os.urandom(rng.randint(1, 200))])
    if kind == 2:
        return b"k", seed[: rng.randint(0, len(seed) - 1)]
    if kind in (3, 4):
        buf = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            bit = rng.randrange(80, len(buf) * 8)
            buf[bit // 8] ^= 1 << (bit % 8)
        return b"k", bytes(buf)
    if kind == 5:
        at = rng.randrange(10, len(seed))
        return b"k", seed[:at] + _zigzag(rng.choice([2**40, -(2**40), 2**31, 2**62])) + seed[at + 1 :]
    if kind == 6:
        return b"k", _skewed(rng)
    if kind == 7 and i % 63 == 7:
        return b"k", seed[:10] + os.urandom(900_000)  # huge, under the broker's 1 MB default
    return b"k", seed[:10] + os.urandom(rng.randint(0, 300))


def _accepted_ids(value: bytes | None) -> set[str] | None:
    """Event ids a local decoder accepts from ``value``; None if it rejects the record whole."""
    try:
        decoded = RecordDecoder().decode(value)
    except DecodeError:
        return None
    ids = {e["event_id"] for e in decoded.events if e["payload"][0] != "aitrace.GroundTruth"}
    return ids  # metric block points are rolled up (no raw document per point): not counted here


class Sent:
    """Delivery reports: (partition, offset) of each produced record."""

    def __init__(self) -> None:
        self.where: dict[int, tuple[int, int]] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def callback(self, n: int) -> Callable[[Any, Any], None]:
        def done(err: Any, msg: Any) -> None:
            with self._lock:
                if err:
                    self.errors.append(str(err))
                else:
                    self.where[n] = (msg.partition(), msg.offset())

        return done


def _produce(bootstrap: str, topic: str, records: list[Rec], sent: Sent, start: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 1_000_000})
    for n, (key, value) in enumerate(records, start):
        producer.produce(topic, key=key, value=value, on_delivery=sent.callback(n))
        producer.poll(0)
    assert producer.flush(60) == 0 and not sent.errors, sent.errors


def _dead_letters(
    bootstrap: str, topic: str, expect: set[tuple[int, int]], worker: Worker, timeout: float = 180.0
) -> dict[tuple[int, int], Any]:
    """DLQ records by source (partition, offset), read until ``expect`` is covered or ``timeout``."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{os.urandom(4).hex()}", "fetch.queue.backoff.ms": 1}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: dict[tuple[int, int], Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while not expect <= out.keys() and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                meta = parse_headers(msg.headers())
                out[(int(meta["partition"]), int(meta["offset"]))] = (msg, meta)
            assert worker.running(), worker.tail()
        time.sleep(2.0)  # letters of partly valid records may trail: read what is there
        while (msg := consumer.poll(0.5)) is not None:
            if not msg.error():
                meta = parse_headers(msg.headers())
                out[(int(meta["partition"]), int(meta["offset"]))] = (msg, meta)
    finally:
        consumer.close()
    return out


def _indexed(url: str, index: str, ids: list[str]) -> int:
    total = 0
    for i in range(0, len(ids), 500):
        total += _count(url, index, {"terms": {"event.id": ids[i : i + 500]}})
    return total


def test_malformed_records_never_stop_the_worker_and_are_all_accounted_for(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker]
) -> None:
    rng = random.Random(8)
    prefix = unique_name("fuzzw")
    system = f"{prefix}.events.system"
    index = f"{prefix}-events-*"
    good = [_trace_batch(2) for _ in range(N_GOOD)]
    good_ids = [e["event_id"] for _, b in good for e in b["events"]]
    mixed: list[tuple[str, Rec]] = [("bad", _malformed(rng, i)) for i in range(N_BAD)]
    mixed += [("good", (tr.encode(), S.encode(b))) for tr, b in good[:-10]]
    rng.shuffle(mixed)
    mixed += [("good", (tr.encode(), S.encode(b))) for tr, b in good[-10:]]  # after every malformed one
    worker = worker_factory(kafka.bootstrap, search.url, prefix)
    worker.start()
    sent = Sent()
    _produce(kafka.bootstrap, system, [r for _, r in mixed], sent, 0)

    bad = [(n, rec) for n, (what, rec) in enumerate(mixed) if what == "bad"]
    expect_dlq = {sent.where[n] for n, (_, value) in bad if _accepted_ids(value) is None}
    _wait("every valid event indexed", lambda: _indexed(search.url, index, good_ids) == len(good_ids), worker)
    letters = _dead_letters(kafka.bootstrap, f"{prefix}.dlq", expect_dlq, worker)
    for _msg, meta in letters.values():
        assert meta["reason"] and meta["topic"] == system, meta
    assert expect_dlq <= letters.keys(), f"{len(expect_dlq - letters.keys())} malformed records unaccounted for"
    by_position = {sent.where[n]: rec for n, rec in bad}
    for pos, (msg, _meta) in letters.items():
        assert msg.value() == by_position[pos][1]  # the original bytes, whatever they were
    # decodable malformed records not dead-lettered: the events the decoder accepts of them are indexed
    accepted = sorted({i for n, (_, v) in bad if sent.where[n] not in letters for i in _accepted_ids(v) or ()})
    _wait("accepted malformed events indexed", lambda: _indexed(search.url, index, accepted) >= len(accepted), worker)
    # valid events: each exactly once
    hits = _search(search.url, index, {"terms": {"event.id": good_ids[:500]}}, size=1000)["hits"]["hits"]
    seen = [h["_source"]["event"]["id"] for h in hits]
    assert len(seen) == len(set(seen)) == min(500, len(good_ids))
    assert _indexed(search.url, index, good_ids) == len(good_ids)
    assert worker.running(), worker.tail()
    worker.stop()
    reasons: dict[str, int] = {}
    for _, meta in letters.values():
        reasons[meta["reason"]] = reasons.get(meta["reason"], 0) + 1
    print(
        f"sent {len(bad)} malformed + {len(good)} valid records; DLQ {len(letters)} ({reasons}); "
        f"expected in DLQ {len(expect_dlq)}; events of accepted malformed records indexed {len(accepted)}; "
        f"valid events {len(good_ids)} indexed once each"
    )
