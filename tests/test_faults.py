"""Faults under a steady producer: workers SIGKILLed, joining and leaving, the search server paused.

Every event the broker acknowledged must be searchable by its event id at the end, exactly
once (loss and duplicates both 0). Faults follow a randomized schedule; the seed is printed
(``AITRACE_FAULT_SEED`` replays one). Bounded by default (2 short schedules);
``AITRACE_FULL_TESTS=1`` runs 10 longer ones.

Not injected: a broker restart. The embedded broker (Tansu, memory storage) comes back empty
from a restart, so every record it had acknowledged (and the group's committed offsets) would
be gone: that is the broker's loss, which ``test_noloss`` already tells apart from the
producer's; here it would hide the worker's. A production Kafka keeps its log across restarts.

Also here: the regression test of issue 8 (a worker leaving while a batch was being indexed
committed that batch: its events were never indexed) and unit tests of the Faust overrides
in :mod:`aitrace.processors.faust_compat`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aitrace
import pytest
import synth as S
from aitrace.processors.faust_compat import log_ends
from confluent_kafka import Producer
from faust.types import TP
from test_noloss import DeliveryLog
from worker_log import log_digest

FULL = os.environ.get("AITRACE_FULL_TESTS") == "1"
PARTITIONS = 4


class Worker:
    """One ``aitrace worker`` subprocess of a consumer group, with its own log."""

    def __init__(self, name: str, kafka: str, es_url: str, prefix: str, workdir: Path, *extra: str) -> None:
        self.name, self.kafka, self.es_url, self.prefix, self.extra = name, kafka, es_url, prefix, extra
        self.workdir = workdir
        self.entry = ["-m", "aitrace.infra.cli"]  # or a test script that wraps the CLI
        self.env: dict[str, str] = {}
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        if self.running():  # (a restart scheduled twice: one process per Worker, never an orphan)
            return self
        env = {
            **os.environ,
            "AITRACE_KAFKA_BOOTSTRAP": self.kafka,
            "AITRACE_ES_URL": self.es_url,
            "AITRACE_TOPIC_PREFIX": self.prefix,
            "AITRACE_INDEX_PREFIX": self.prefix,
            **self.env,
        }
        argv = [sys.executable, *self.entry, "worker", "--app-id", f"{self.prefix}-app"]
        argv += ["--partitions", str(PARTITIONS), "--workers-dir", str(self.workdir / f"faust-{self.name}")]
        argv += ["--stats-interval-s", "5", *self.extra]
        with self.log.open("ab") as log:
            log.write(f"\n==== start {time.strftime('%H:%M:%S')}\n".encode())
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running() and self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (a graceful leave: Faust commits what was acknowledged); SIGKILL after ``timeout``."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def in_group(self) -> bool:
        """Whether this process's last join of the group finished (no rebalance under way for it)."""
        text = self.log.read_text(errors="replace").rpartition("==== start")[2] if self.log.exists() else ""
        return text.rfind("Successfully synced group") > text.rfind("(Re-)joining group")

    def settle(self, limit_s: float = 30.0) -> None:
        """Wait (up to ``limit_s``) until the worker is out of a rebalance: see ``_run_schedule``."""
        deadline = time.monotonic() + limit_s
        while self.running() and not self.in_group() and time.monotonic() < deadline:
            time.sleep(0.2)

    def tail(self, n: int = 3000) -> str:
        return log_digest(self.log, n)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(name: str, kafka: str, es_url: str, prefix: str, *extra: str) -> Worker:
        w = Worker(name, kafka, es_url, prefix, tmp_path, *extra)
        made.append(w)
        return w

    yield make
    for w in made:
        w.kill()


# ---------------------------------------------------------------- index and producer helpers


def _post(url: str, body: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


def indexed_ids(es_url: str, prefix: str, ids: list[str] | None = None) -> Counter[str]:
    """Event id -> number of documents that carry it, over every events index of ``prefix``.

    ``ids``: only those (a terms query, in chunks); None: every document (paged).
    """
    found: Counter[str] = Counter()
    url = f"{es_url}/{prefix}-events-*/_search"

    def run(query: dict[str, Any], size: int, start: int = 0) -> tuple[int, list[dict[str, Any]]]:
        body = {"query": query, "size": size, "from": start, "_source": ["event.id"], "track_total_hits": True}
        try:
            out = _post(url, body)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 0, []
            raise
        return int(out["hits"]["total"]["value"]), out["hits"]["hits"]

    def add(hits: list[dict[str, Any]]) -> None:
        for h in hits:
            found[(h.get("_source") or {}).get("event", {}).get("id") or h["_id"]] += 1

    if ids is None:
        start, page = 0, 5000
        while True:
            total, hits = run({"match_all": {}}, page, start)
            add(hits)
            start += len(hits)
            if not hits or start >= total:
                return found
    for i in range(0, len(ids), 1000):
        part = ids[i : i + 1000]
        _, hits = run({"terms": {"event.id": part}}, 2 * len(part))
        add(hits)
    return found


class SteadyProducer:
    """A thread logging ``rate`` events/s through the aitrace client; send times kept by event id."""

    def __init__(self, bootstrap: str, prefix: str, spool: Path, rate: float) -> None:
        self.listener = DeliveryLog()
        self.client = aitrace.init(
            service="faults",
            run_id=f"run-{prefix}",
            kafka_bootstrap=bootstrap,
            topic_prefix=prefix,
            spool_dir=str(spool),
            delivery_listener=self.listener,
            delivery_timeout_ms=8000,
            batch_linger_ms=5.0,
        )
        self.rate = rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="steady-producer")

    def _run(self) -> None:
        period = 1.0 / self.rate
        t0 = time.monotonic()
        while not self._stop.is_set():
            self.client.log("info", f"event {self.sent}", seq=self.sent)
            self.sent += 1
            delay = t0 + self.sent * period - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.client.flush(timeout=60), self.client.stats()

    def close(self) -> None:
        self._stop.set()
        self.client.close(timeout=5)

    def acked_ids(self) -> set[str]:
        return self.listener.acked()[0]

    def ack_times(self) -> dict[str, float]:
        """Event id -> monotonic time of its delivery report."""
        with self.listener._lock:
            return {i: t for t, ids, _, err in self.listener.reports if err is None for i in ids}


def wait_indexed(
    es_url: str, prefix: str, want: set[str], alive: Callable[[], list[Worker]], timeout: float
) -> Counter[str]:
    """Poll until every id of ``want`` is searchable (or ``timeout``); the last count."""
    deadline = time.monotonic() + timeout
    ids = sorted(want)
    while True:
        try:
            found = indexed_ids(es_url, prefix, ids)
        except (urllib.error.URLError, OSError):
            found = Counter()
        if want <= set(found) or time.monotonic() > deadline:
            return found
        for w in alive():
            assert w.running(), f"worker {w.name} exited:\n{w.tail()}"
        time.sleep(1.0)


def locate(bootstrap: str, prefix: str, group: str, ids: set[str]) -> tuple[int, int, list[str]]:
    """Where the events ``ids`` sit in the input topics, against the group's committed offsets.

    Returns (behind, skipped, lines): events at or after their partition's committed offset
    (not consumed yet: the group stopped reading), events before it (committed past: lost),
    and one line per partition and record for the report.
    """
    from aitrace.processors.decode import RecordDecoder
    from aitrace.processors.topics import INPUT_TOPICS
    from confluent_kafka import Consumer, TopicPartition

    decoder = RecordDecoder(max_future_us=1 << 60)
    conf = {"bootstrap.servers": bootstrap, "enable.auto.commit": False}
    reader = Consumer({**conf, "group.id": f"audit-{prefix}"})
    offsets = Consumer({**conf, "group.id": group})  # asks for the group's commits, never joins it
    lines: list[str] = []
    behind = skipped = 0
    try:
        for topic in (f"{prefix}.{name}" for name in INPUT_TOPICS):
            meta = reader.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or not meta.partitions:
                continue
            tps = [TopicPartition(topic, p) for p in meta.partitions]
            committed = {tp.partition: tp.offset for tp in offsets.committed(tps, timeout=10)}
            reader.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
            idle = 0
            while idle < 3:
                records = reader.consume(500, timeout=1.0)
                idle = 0 if records else idle + 1
                for r in records:
                    if r.error() or r.value() is None:
                        continue
                    try:
                        n = sum(e.get("event_id") in ids for e in decoder.decode(r.value()).events)
                    except Exception:
                        continue
                    if n:
                        head = committed[r.partition()]
                        past = r.offset() < head
                        skipped, behind = skipped + n * past, behind + n * (not past)
                        lines.append(f"{topic}[{r.partition()}]@{r.offset()}: {n} (committed {head})")
            reader.unassign()
    finally:
        reader.close()
        offsets.close()
    return behind, skipped, lines


def _report(label: str, acked: set[str], found: Counter[str], extra: str = "") -> tuple[set[str], list[str]]:
    lost = acked - set(found)
    dups = [i for i, n in found.items() if n > 1]
    indexed = len(set(found) & acked)
    print(f"[faults] {label}: acked {len(acked)} indexed {indexed} lost {len(lost)} duplicated {len(dups)} {extra}")
    return lost, dups


# ---------------------------------------------------------------- issue 8: a worker leaving mid-batch


@pytest.mark.slow
def test_worker_asked_to_leave_while_its_batch_waits_on_the_search_server_commits_nothing_of_it(
    kafka: Any, fresh_search: Any, unique_name: Callable[[str], str], workers: Callable[..., Worker], tmp_path: Path
) -> None:
    """A worker stopped (SIGTERM) while its batch waits on a down search server must not commit that batch.

    Faust's ``take_events`` acks a batch in a ``finally`` that also runs when the agent is
    cancelled or crashes (``SafeStream`` fixes that). At SIGTERM Faust first waits for the
    streams (``Consumer.wait_empty``, no time limit), so this worker cannot leave until the
    search server answers; the test gives up after 15 s (SIGKILL) and checks that a new
    worker indexes every event acknowledged after the search server went down.
    """
    prefix = unique_name("leave")
    w1 = workers("w1", kafka.bootstrap, fresh_search.url, prefix).start()
    producer = SteadyProducer(kafka.bootstrap, prefix, tmp_path / "spool", rate=50).start()
    try:
        time.sleep(2.0)
        first = producer.acked_ids()
        assert first
        found = wait_indexed(fresh_search.url, prefix, first, lambda: [w1], 240)
        assert first <= set(found), f"worker never indexed:\n{w1.tail()}"
        stop_at = time.monotonic()
        fresh_search.stop()  # the in-flight and next batches wait on the indexer (retrying)
        time.sleep(4.0)  # ~200 events fetched by the worker, in take_events' batch or its buffer
        producer.stop()
        w1.stop(15)  # a graceful leave, mid-batch (Faust waits for the batch: SIGKILL after 15 s)
        assert not w1.running()
        fresh_search.start()
        fresh_search.wait_ready(60)
        w2 = workers("w2", kafka.bootstrap, fresh_search.url, prefix).start()
        # the restarted search server is empty: count what the broker acknowledged after it went down
        must = {i for i, t in producer.ack_times().items() if t > stop_at}
        assert must
        found = wait_indexed(fresh_search.url, prefix, must, lambda: [w2], 120)
        lost, dups = _report("leave-mid-batch", must, found)
        assert not lost, f"{len(lost)} acknowledged events never indexed; w1 log:\n{w1.tail()}"
        assert not dups
    finally:
        producer.close()


# ---------------------------------------------------------------- a partition that stops delivering


@pytest.mark.slow
def test_a_partition_whose_fetched_records_are_never_delivered_is_read_again(
    kafka: Any, fresh_search: Any, unique_name: Callable[[str], str], workers: Callable[..., Worker], tmp_path: Path
) -> None:
    """The stall of a CI fault run: one partition's records fetched, never delivered, none after them.

    No record of that partition is acknowledged, so no hole is seen and the commit holds: the
    records wait for a restart. The worker here drops what it fetches from the partition until
    something seeks it (``tests/_undelivering_worker.py``); the stall watch must be that seek.
    """
    prefix = unique_name("stall")
    w = workers("w", kafka.bootstrap, fresh_search.url, prefix)
    w.entry = [str(Path(__file__).with_name("_undelivering_worker.py"))]
    w.env = {"UNDELIVERED_TOPIC": f"{prefix}.events.system"}
    w.start()
    producer = SteadyProducer(kafka.bootstrap, prefix, tmp_path / "spool", rate=50).start()
    try:
        time.sleep(3.0)  # a burst, then nothing more: no later record shows the partition's hole
        producer.stop()
        acked = producer.acked_ids()
        found = wait_indexed(fresh_search.url, prefix, acked, lambda: [w], 90)
        log = w.tail(20000)
        assert "[undelivering] dropping" in log, "the premise: no record of the partition was dropped"
        lost, dups = _report("stalled partition", acked, found)
        assert not dups
        assert not lost, f"{len(lost)} events of the stalled partition never indexed:\n{log[-3000:]}"
        assert "not delivered in" in log  # healed by the stall watch, not by something else
    finally:
        producer.close()


def _one_batch(bootstrap: str, topic: str, batches: list[dict[str, Any]]) -> None:
    """Each aitrace batch as a record of partition 0, all sent as one Kafka record batch."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 500, "batch.num.messages": 10_000})
    errors: list[str] = []
    for batch in batches:
        producer.produce(topic, S.encode(batch), partition=0, on_delivery=lambda e, _m: e and errors.append(str(e)))
    assert producer.flush(30) == 0 and not errors, errors


@pytest.mark.slow
def test_the_undelivered_rest_of_a_partitions_last_record_batch_is_read_again(
    kafka: Any, fresh_search: Any, unique_name: Callable[[str], str], workers: Callable[..., Worker]
) -> None:
    """The stall of CI on stop 17: records from the middle of a partition's last record batch on,
    fetched and never delivered. Tansu's end offset is one past that batch's *first* record, so
    the end the stall watch asked for said nothing lay past the commit; the fetch position does."""
    prefix = unique_name("tail")
    system = f"{prefix}.events.system"
    w = workers("w", kafka.bootstrap, fresh_search.url, prefix)
    w.entry = [str(Path(__file__).with_name("_undelivering_worker.py"))]
    w.env = {"UNDELIVERED_TOPIC": system, "UNDELIVERED_AFTER": "4"}  # the first record, then 3 of the batch
    w.start()
    batches = [S.batch([S.event(S.log("info", f"record {i}"), trace=S.trace_id())]) for i in range(31)]
    ids = [b["events"][0]["event_id"] for b in batches]
    _one_batch(kafka.bootstrap, system, batches[:1])
    assert set(wait_indexed(fresh_search.url, prefix, set(ids[:1]), lambda: [w], 240)), w.tail()
    _one_batch(kafka.bootstrap, system, batches[1:])
    found = wait_indexed(fresh_search.url, prefix, set(ids), lambda: [w], 90)
    log = w.tail(20000)
    assert "[undelivering] dropping" in log and "from offset 4" in log, "the premise: the batch's tail dropped"
    lost, dups = _report("the rest of a record batch", set(ids), found)
    assert not dups
    assert not lost, f"{len(lost)} events of the batch's tail never indexed:\n{log[-3000:]}"
    assert "not delivered in" in log  # healed by the stall watch, not by something else


# ---------------------------------------------------------------- randomized fault schedules


def _schedule(rng: random.Random, duration: float) -> list[tuple[float, str, float]]:
    """(start s, fault, length s), sorted: kill+restart, join+leave (1-2 extra workers), search pause."""
    faults: list[tuple[float, str, float]] = []
    faults.append((rng.uniform(0.15, 0.6) * duration, "kill", rng.uniform(0.0, 3.0)))
    for _ in range(rng.randint(1, 2)):
        # long enough to join (~6 s with a 10 s session timeout) and to own partitions a while
        faults.append((rng.uniform(0.05, 0.5) * duration, "join", max(12.0, rng.uniform(0.25, 0.45) * duration)))
    faults.append((rng.uniform(0.1, 0.6) * duration, "pause", rng.uniform(3.0, 30.0 if FULL else 8.0)))
    if rng.random() < 0.5:
        faults.append((rng.uniform(0.3, 0.8) * duration, "kill", rng.uniform(0.0, 3.0)))
    return sorted(faults)


def _run_schedule(
    seed: int,
    kafka: Any,
    search: Any,
    prefix: str,
    make: Callable[..., Worker],
    spool: Path,
    duration: float,
    rate: float,
) -> tuple[set[str], Counter[str], list[str]]:
    rng = random.Random(seed)
    plan = _schedule(rng, duration)
    print(f"[faults] seed {seed}: {[(round(t, 1), f, round(d, 1)) for t, f, d in plan]}")
    main = make("main", kafka.bootstrap, search.url, prefix).start()
    extras: list[Worker] = []
    producer = SteadyProducer(kafka.bootstrap, prefix, spool, rate).start()
    events: list[tuple[float, Callable[[], None], str]] = []
    log: list[str] = []
    paused = False
    # the clock starts once the main worker has joined and indexes: faults before that test the join only
    time.sleep(1.0)
    first = producer.acked_ids()
    assert first <= set(wait_indexed(search.url, prefix, first, lambda: [main], 240)), main.tail()

    # A worker is killed or leaves only once it is out of a rebalance: Tansu's coordinator sets
    # a forming group's leader once, and a leader gone while the group forms leaves it unable
    # to form for good (every member retries its join; README, "Known limit of the dev broker").
    # Apache Kafka expires the dead member; here the schedule waits, at most 30 s, for every worker.
    def settle_all() -> None:
        """Every running worker out of a rebalance, and still so a heartbeat later: a member that has
        just joined starts a rebalance the others hear of only at their next heartbeat (Faust: 3 s)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for w in (main, *extras):
                w.settle(max(0.0, deadline - time.monotonic()))
            time.sleep(3.5)
            if all(w.in_group() for w in (main, *extras) if w.running()):
                return

    def kill_restart(after: float) -> None:
        settle_all()
        main.kill()
        events.append((time.monotonic() + after, main.start, "restart main"))

    def join(length: float) -> None:
        w = make(f"extra{len(extras)}", kafka.bootstrap, search.url, prefix).start()
        extras.append(w)
        events.append((time.monotonic() + length, lambda: (settle_all(), w.stop()), f"leave {w.name}"))

    def pause(length: float) -> None:
        nonlocal paused
        os.kill(search.pid, signal.SIGSTOP)
        paused = True
        events.append((time.monotonic() + length, resume, "resume search"))

    def resume() -> None:
        nonlocal paused
        if paused:
            os.kill(search.pid, signal.SIGCONT)
            paused = False

    actions = {"kill": kill_restart, "join": join, "pause": pause}
    t0 = time.monotonic()
    for start, fault, length in plan:
        events.append((t0 + start, lambda f=fault, n=length: actions[f](n), fault))
    try:
        while time.monotonic() - t0 < duration or events:
            events.sort(key=lambda e: e[0])
            if events and events[0][0] <= time.monotonic():
                _, act, what = events.pop(0)
                log.append(f"{time.monotonic() - t0:.1f}s {what}")
                act()
                continue
            time.sleep(0.05)
        producer.stop()
        resume()
        if not main.running():
            main.start()
        acked = producer.acked_ids()
        found = wait_indexed(search.url, prefix, acked, lambda: [main], 180 if FULL else 90)
        return acked, found, log
    finally:
        resume()
        producer.close()
        for w in extras:
            w.kill()
        main.stop(20)


@pytest.mark.slow
@pytest.mark.timeout(3600 if FULL else 600)  # the full form runs 10 schedules of 90 s, each then waits for the index
def test_randomized_fault_schedules_lose_and_duplicate_nothing(
    kafka: Any, fresh_search: Any, unique_name: Callable[[str], str], workers: Callable[..., Worker], tmp_path: Path
) -> None:
    base = int(os.environ.get("AITRACE_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    n, duration, rate = (10, 90.0, 60.0) if FULL else (2, 30.0, 40.0)
    n = int(os.environ.get("AITRACE_FAULT_SCHEDULES") or n)
    print(f"[faults] base seed {base} (AITRACE_FAULT_SEED={base} replays it); {n} schedules of {duration:.0f} s")
    failures = []
    for k in range(n):
        seed = base + k
        prefix = unique_name(f"f{k}")
        acked, found, log = _run_schedule(
            seed, kafka, fresh_search, prefix, workers, tmp_path / f"spool{k}", duration, rate
        )
        lost, dups = _report(f"seed {seed}", acked, found, "; ".join(log))
        if lost:  # committed past (lost) or never consumed (the group stopped reading)?
            behind, skipped, where = locate(kafka.bootstrap, prefix, f"{prefix}-app", lost)
            print("\n".join(f"[faults]   {line}" for line in where[:20]))
            print(f"[faults]   not indexed: {skipped} committed past, {behind} at or after the committed offset")
        if lost or dups:
            failures.append(f"seed {seed}: lost {len(lost)} duplicated {len(dups)} ({'; '.join(log)})")
    assert not failures, failures


# ---------------------------------------------------------------- the Faust overrides, in isolation


TP0 = TP("events", 0)


class _FaustConsumerPart:
    """What the mixin calls on Faust's consumer: commit, assignment, seek, app.rebalancing."""

    class app:
        rebalancing = False

    def __init__(self) -> None:
        self.seeks: list[tuple[str, int]] = []

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def assignment(self) -> set[Any]:
        return {TP0}

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def _offsets(committed: int | None, acked: list[int]) -> Any:
    """An object holding the attributes ``_new_offset`` reads, as Faust's consumer keeps them."""
    from collections import defaultdict

    from aitrace.processors.faust_compat import SafeOffsetsConsumer
    from intervaltree import IntervalTree

    class Offsets(SafeOffsetsConsumer, _FaustConsumerPart):
        pass

    o = Offsets()
    o._acked = defaultdict(list, {TP0: list(acked)})
    o._acked_index = defaultdict(set, {TP0: set(acked)})
    o._gap = defaultdict(IntervalTree)
    o._committed_offset = defaultdict(lambda: None, {TP0: committed})
    return o


def _new_offset(committed: int | None, acked: list[int]) -> int | None:
    return _offsets(committed, acked)._new_offset(TP0)


def test_commit_waits_for_the_record_at_the_committed_offset() -> None:
    # Faust's check (min(acked) - committed > 1) let 11 through with 10 unacknowledged: offset 10 lost
    assert _new_offset(10, [11, 12]) is None
    assert _new_offset(10, [10, 11, 12]) == 13
    assert _new_offset(10, [10, 11, 13]) == 12
    assert _new_offset(10, [10, 10, 11]) == 12
    # nothing committed yet (or 0, which Faust keeps as None): the head is offset 0, so a record
    # lost there is read again too (a fresh-clone CI run: a restarted worker saw 119 of 120 records)
    assert _new_offset(None, [4, 5]) is None
    assert _new_offset(None, [0, 1]) == 2


def test_a_record_never_delivered_is_read_again_after_a_while() -> None:
    import asyncio

    o = _offsets(10, [11, 12])
    assert o._new_offset(TP0) is None
    asyncio.run(o.commit())
    assert o.seeks == []  # not at once: a hole may be a batch still in flight
    o._aitrace_holes[TP0] = (10, time.monotonic() - o.HOLE_RESEEK_S)
    asyncio.run(o.commit())
    assert o.seeks == [(TP0, 10)]
    o._acked[TP0] = [10, 11, 12]
    assert o._new_offset(TP0) == 13 and not o._aitrace_holes


def test_a_hole_that_never_fills_is_committed_past_after_a_few_re_reads() -> None:
    import asyncio

    o = _offsets(10, [11, 12])  # e.g. offset 10 deleted by retention: the fetcher resets past it
    for _ in range(o.HOLE_MAX_RESEEKS + 1):
        assert o._new_offset(TP0) is None
        o._aitrace_holes[TP0] = (10, time.monotonic() - o.HOLE_RESEEK_S)
        asyncio.run(o.commit())
    assert o.seeks == [(TP0, 10)] * o.HOLE_MAX_RESEEKS
    assert o._new_offset(TP0) == 13  # Faust's behaviour, after the re-reads


def test_offsets_the_fetcher_skipped_are_not_taken_as_processed() -> None:
    # Faust counts a gap (offsets between the read offset and a later record) as acknowledged;
    # after a seek, records still in flight from before it made such gaps out of records that
    # were then read again and dropped: 112 events committed past in a full fault run
    from faust.transport.consumer import Consumer

    ours, faust = _offsets(10, [10, 13, 14]), _offsets(10, [10, 13, 14])
    for o in (ours, faust):
        o._gap[TP0].addi(11, 13)  # 11 and 12 never fetched
    assert ours._new_offset(TP0) == 11
    assert Consumer._new_offset(faust, TP0) == 15


def test_read_offsets_are_off_so_every_fetched_record_is_delivered() -> None:
    from aitrace.processors.faust_compat import _NoReadOffsets

    offsets = _NoReadOffsets()
    offsets[TP0] = 500  # the drain loop, after delivering a record fetched before a seek
    offsets.update({TP0: 10})  # perform_seek
    # Faust drops a record when `offset < read_offset` and records a gap when `offset - read_offset > 1`
    assert offsets[TP0] is None


def test_faust_new_offset_jumps_a_one_record_hole() -> None:
    """Documents the Faust behaviour the override replaces (fails once Faust fixes it: drop the override)."""
    from faust.transport.consumer import Consumer

    assert Consumer._new_offset(_offsets(10, [11, 12]), TP0) == 13


class _Watched(_FaustConsumerPart):
    """What the stall watch reads beyond the commit: the app's state, in-flight messages, end offsets."""

    class _Thread:
        def __init__(self) -> None:
            self.ends: dict[Any, int] = {TP0: 40}
            self.asked: list[list[Any]] = []

        async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
            self.asked.append(tps)
            return {tp: self.ends[tp] for tp in tps if tp in self.ends}

    class _Flow:
        active = True

        def is_active(self) -> bool:
            return self.active

    class _Topics:
        def __init__(self) -> None:
            self.acking = {TP0.topic}

        def acks_enabled_for(self, topic: str) -> bool:
            return topic in self.acking

    should_stop = False

    def __init__(self) -> None:
        super().__init__()
        self.app = type("App", (), {"rebalancing": False, "in_recovery": False})()
        self.app.flow_control, self.app.topics = self._Flow(), self._Topics()
        self._thread = self._Thread()
        self._unacked_messages: set[Any] = set()
        self._buffered_partitions: set[Any] = set()
        self._paused_partitions: set[Any] = set()
        self.resumed: list[Any] = []

    def resume_partitions(self, tps: list[Any]) -> None:
        self.resumed += tps


def _watched(committed: int | None = 10) -> Any:
    """A consumer whose partition has had nothing delivered, acked or in flight for the stall time."""
    from collections import defaultdict

    from aitrace.processors.faust_compat import SafeOffsetsConsumer

    class Consumer(SafeOffsetsConsumer, _Watched):
        async def commit(self, *args: Any, **kwargs: Any) -> bool:  # Faust's commit: nothing to write
            await self._reseek_stalled()
            return True

    c = Consumer()
    c._acked, c._committed_offset = defaultdict(list), defaultdict(lambda: None, {TP0: committed})
    now = time.monotonic()
    c._aitrace_fetch_done = now
    c._aitrace_quiet_since = {TP0: now - c.STALL_RESEEK_S}
    return c


def test_a_partition_with_records_past_its_commit_and_none_delivered_is_read_again() -> None:
    import asyncio

    c = _watched()
    asyncio.run(c.commit())
    assert c._thread.asked == [[TP0]] and c.seeks == [(TP0, 10)]
    asyncio.run(c.commit())
    assert c.seeks == [(TP0, 10)]  # then not again before another quiet spell
    c._aitrace_quiet_since[TP0] = time.monotonic() - c.STALL_RESEEK_S
    c._aitrace_delivered = {TP0: time.monotonic()}  # delivered since: not stalled
    asyncio.run(c.commit())
    assert c.seeks == [(TP0, 10)]


def test_a_never_committed_partition_is_read_again_from_its_start() -> None:
    import asyncio

    c = _watched(committed=None)  # (auto_offset_reset=earliest: the group reads it from 0 anyway)
    asyncio.run(c.commit())
    assert c.seeks == [(TP0, 0)]


@pytest.mark.parametrize(
    "why",
    ["log-ends-at-commit", "in-flight", "acked", "buffer-full", "fetcher-held", "rebalancing", "flow-off", "changelog"],
)
def test_a_quiet_partition_that_is_not_stalled_is_left_alone(why: str) -> None:
    import asyncio

    c = _watched()
    if why == "log-ends-at-commit":
        c._thread.ends[TP0] = 10  # the usual quiet partition: nothing new
    elif why == "in-flight":
        c._unacked_messages.add(_Message(10, generation_id=0))  # a batch still being indexed
    elif why == "acked":
        c._acked[TP0] = [11]  # a hole: the hole's own re-read handles it
    elif why == "buffer-full":
        c._buffered_partitions.add(TP0)
    elif why == "fetcher-held":
        c._aitrace_fetch_done -= 10  # the fetcher waits on full stream buffers: no verdict
    elif why == "rebalancing":
        c.app.rebalancing = True
    elif why == "flow-off":
        c.app.flow_control.active = False
    else:
        c.app.topics.acking = set()  # a changelog, read only in recovery
    asyncio.run(c.commit())
    assert c.seeks == []


def test_a_message_below_the_commit_left_unacked_does_not_hide_a_stall() -> None:
    import asyncio

    c = _watched()
    c._unacked_messages.add(_Message(7, generation_id=0))  # a copy of a record the commit has passed
    asyncio.run(c.commit())
    assert c.seeks == [(TP0, 10)]


def test_a_paused_stalled_partition_is_resumed_then_read_again() -> None:
    import asyncio

    c = _watched()
    c._paused_partitions.add(TP0)
    asyncio.run(c.commit())
    assert c.resumed == [TP0] and c.seeks == [(TP0, 10)]


def test_a_stall_the_re_reads_do_not_clear_is_given_up_after_a_few(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    c = _watched()
    for _ in range(c.HOLE_MAX_RESEEKS + 2):
        c._aitrace_quiet_since[TP0] = time.monotonic() - c.STALL_RESEEK_S
        asyncio.run(c.commit())
    assert c.seeks == [(TP0, 10)] * c.HOLE_MAX_RESEEKS
    assert sum("never delivered after" in r.message for r in caplog.records) == 1


def test_the_end_the_watch_reads_is_the_fetch_position_where_it_is_past_the_brokers_end() -> None:
    import asyncio
    from types import SimpleNamespace

    from aiokafka.errors import IllegalStateError
    from aitrace.processors.faust_compat import _AIOKafkaConsumerThread

    tp1 = TP("events", 1)

    class Aio:  # Tansu's end: one past the first record of the last record batch
        _client = SimpleNamespace(cluster=SimpleNamespace(leader_for_partition=lambda tp: None))  # no Fetch

        async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
            return {TP0: 1, tp1: 9}

        async def position(self, tp: Any) -> int:
            if tp == tp1:
                raise IllegalStateError("no longer assigned")
            return 40

    thread = object.__new__(_AIOKafkaConsumerThread)
    thread._ensure_consumer = Aio  # type: ignore[method-assign]
    assert asyncio.run(thread._end_offsets([TP0, tp1])) == {TP0: 40, tp1: 9}


def test_tansus_end_offset_is_one_past_the_first_record_of_the_last_record_batch(kafka: Any) -> None:
    """Documents the broker behaviour the fetch position makes up for (fails once Tansu changes it)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    topic = f"ends-{os.urandom(4).hex()}"
    _one_batch(kafka.bootstrap, topic, [S.batch([]) for _ in range(7)])

    async def ends() -> tuple[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
        await consumer.start()
        try:
            listed = int((await consumer.end_offsets([TopicPartition(topic, 0)]))[TopicPartition(topic, 0)])
            return listed, (await log_ends(consumer, {TP(topic, 0): listed}))[TP(topic, 0)]
        finally:
            await consumer.stop()

    assert asyncio.run(ends()) == (1, 7)  # 7 records at offsets 0..6 in one record batch: listed 1, true 7


def test_log_ends_keep_the_brokers_ends_where_the_fetch_fails() -> None:
    import asyncio
    from types import SimpleNamespace

    from aiokafka.errors import KafkaConnectionError

    class Client:
        cluster = SimpleNamespace(leader_for_partition=lambda tp: 1)
        answer: Any = None

        async def send(self, node: int, request: Any) -> Any:
            if self.answer is None:
                raise KafkaConnectionError("broker gone")
            return self.answer

    client = Client()
    consumer = SimpleNamespace(_client=client)
    assert asyncio.run(log_ends(consumer, {TP0: 5, TP("events", 1): 0})) == {TP0: 5, TP("events", 1): 0}
    client.answer = SimpleNamespace(topics=[("events", [(0, 6, -1, b"")])])  # an error code for the partition
    assert asyncio.run(log_ends(consumer, {TP0: 5})) == {TP0: 5}


class _Message:
    """The fields Faust's ``Consumer.ack`` reads on a message."""

    def __init__(self, offset: int, generation_id: int) -> None:
        self.tp, self.topic, self.offset, self.generation_id = TP0, TP0.topic, offset, generation_id
        self.acked = False


def _acking_consumer(generation: int, flowing: bool) -> Any:
    """The mixin over Faust's own ``Consumer.ack``, with the state that method reads."""
    from collections import defaultdict

    from aitrace.processors.faust_compat import SafeOffsetsConsumer
    from faust.transport.consumer import Consumer
    from intervaltree import IntervalTree

    class Flow:
        def is_active(self) -> bool:
            return flowing

    class Topics:
        def acks_enabled_for(self, topic: str) -> bool:
            return True

    class App:
        consumer_generation_id = generation
        flow_control = Flow()
        topics = Topics()

    class Part:
        app = App()
        ack = Consumer.ack

    class Acking(SafeOffsetsConsumer, Part):
        pass

    c = Acking()
    c._committed_offset = defaultdict(lambda: None, {TP0: 10})
    c._acked, c._acked_index = defaultdict(list), defaultdict(set)
    c._gap = defaultdict(IntervalTree)
    c._unacked_messages, c._n_acked, c._waiting_for_ack = set(), 0, None
    return c


def test_an_event_of_the_current_generation_is_recorded_as_processed() -> None:
    c = _acking_consumer(generation=3, flowing=True)
    m = _Message(10, generation_id=3)
    c._unacked_messages.add(m)
    assert c.ack(m) and c._acked[TP0] == [10] and m.acked and not c._unacked_messages
    assert c._new_offset(TP0) == 11


@pytest.mark.parametrize(("generation", "flowing"), [(4, True), (3, False)], ids=["older-generation", "flow-suspended"])
def test_an_event_faust_skipped_is_released_but_not_committed(generation: int, flowing: bool) -> None:
    # Faust's Stream acks the events it skips in a rebalance or at shutdown; recorded, the final
    # commit of a worker leaving the group moved past records nobody indexed
    c = _acking_consumer(generation=generation, flowing=flowing)
    m = _Message(10, generation_id=3)
    c._unacked_messages.add(m)
    assert not c.ack(m)
    assert m.acked and not c._unacked_messages  # wait_empty does not wait on it
    assert c._acked[TP0] == [] and c._new_offset(TP0) is None and c.unrecorded_acks == 1
    assert not c.ack(m) and c.unrecorded_acks == 1  # a second ack of the same message counts once
