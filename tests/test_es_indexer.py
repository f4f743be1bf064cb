"""The bulk indexer: nothing dropped, per-document rejections, retries, backpressure.

Against a real osmem-server: indexing, a mapping rejection among good documents,
and the server going down for a while (killed, restarted on the same port).
The 429 / whole-request 400 / 413 paths use a small local HTTP server that
answers ``_bulk`` as scripted: a real server cannot be made to say those on demand.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aitrace.infra.stack import OsmemProcess, free_port
from aitrace.producers.config import SearchConfig
from aitrace.sinks import es
from aitrace.sinks.indexer import BulkIndexer, IndexerClosed, IndexerConfig, Rejection, RetriesExhausted
from elasticsearch import AsyncElasticsearch

OPENSEARCH = es.Capabilities("opensearch", "3.8.0", False)
FAST = IndexerConfig(initial_backoff_s=0.02, max_backoff_s=0.2, request_timeout_s=5.0)


def docs(index: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"_index": index, "_id": f"d{i}", "_source": {"@timestamp": "2026-11-26T10:00:00Z", "n": i}}
        for i in range(start, start + n)
    ]


def run_with_client(url: str, body: Callable[[AsyncElasticsearch], Any], caps: es.Capabilities | None = None) -> Any:
    async def main() -> Any:
        client = es.make_client(SearchConfig(es_url=url), caps or OPENSEARCH)
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


def count(url: str, index: str) -> int:
    client = es.make_sync_client(SearchConfig(es_url=url), OPENSEARCH)
    try:
        client.indices.refresh(index=index)
        return int(client.count(index=index)["count"])
    finally:
        client.close()


# ------------------------------------------------------------------ real osmem-server


def test_indexes_everything_in_adaptive_chunks(search: OsmemProcess, unique_name: Callable[[str], str]) -> None:
    index = unique_name("idx")
    cfg = IndexerConfig(initial_chunk_docs=50, grow_after=2, initial_concurrency=1)

    async def body(client: AsyncElasticsearch) -> BulkIndexer:
        indexer = BulkIndexer(client, config=cfg)
        result = await indexer.index(docs(index, 2_000))
        assert result.indexed == 2_000 and result.rejected == []
        return indexer

    indexer = run_with_client(search.url, body)
    assert count(search.url, index) == 2_000
    assert indexer.counters["indexed"] == 2_000
    assert indexer.chunk_docs > 50 and indexer.concurrency > 1  # clean chunks grew both
    assert indexer.healthy


def test_actions_named_under_the_canonical_prefix_are_written_under_the_indexers(
    search: OsmemProcess, unique_name: Callable[[str], str]
) -> None:
    """The processors name no prefix: the indexer, made with the configured one, resolves it at write time."""
    prefix = unique_name("pre")
    batch = docs("aitrace-events-2026.11.26", 20)
    batch[3]["_source"]["@timestamp"] = "not a date"
    given = list(batch)

    async def body(client: AsyncElasticsearch) -> Any:
        index = f"{prefix}-events-2026.11.26"
        await client.indices.create(index=index, mappings={"properties": {"@timestamp": {"type": "date"}}})
        return await BulkIndexer(client, config=FAST, index_prefix=prefix).index(batch)

    result = run_with_client(search.url, body)
    assert result.indexed == 19 and count(search.url, f"{prefix}-events-2026.11.26") == 19
    [rejected] = result.rejected
    # the caller's own action object (what the worker's dead letters look up), and where it went
    assert rejected.action is given[3] and rejected.action["_index"] == "aitrace-events-2026.11.26"
    assert rejected.index == f"{prefix}-events-2026.11.26"
    assert [a["_index"] for a in batch] == ["aitrace-events-2026.11.26"] * 20  # the actions are left as given


def test_mapping_rejection_is_per_document(search: OsmemProcess, unique_name: Callable[[str], str]) -> None:
    index = unique_name("rej")
    batch = docs(index, 300)
    batch[7]["_source"]["@timestamp"] = "not a date"
    batch[150]["_source"]["@timestamp"] = {"also": "wrong"}
    batch.append({"_index": index, "_id": "bad", "_source": {"x": object()}})  # not even serializable
    seen: list[Rejection] = []

    async def on_reject(rejection: Rejection) -> None:
        await asyncio.sleep(0)
        seen.append(rejection)

    async def body(client: AsyncElasticsearch) -> Any:
        # create the index first so @timestamp is a date before any document arrives
        await client.indices.create(index=index, mappings={"properties": {"@timestamp": {"type": "date"}}})
        indexer = BulkIndexer(client, on_reject=on_reject, config=FAST)
        return indexer, await indexer.index(batch)

    indexer, result = run_with_client(search.url, body)
    assert result.indexed == 298
    assert sorted(r.action["_id"] for r in result.rejected) == ["bad", "d150", "d7"]
    assert sorted(r.action["_id"] for r in seen) == ["bad", "d150", "d7"]
    by_id = {r.action["_id"]: r for r in seen}
    assert by_id["d7"].status == 400 and "date" in by_id["d7"].reason
    assert by_id["bad"].error_type == "invalid_action"
    assert indexer.rejected_by_reason["invalid_action"] == 1
    assert sum(indexer.rejected_by_reason.values()) == 3
    assert count(search.url, index) == 298


def test_server_down_for_a_while_loses_nothing(fresh_search: OsmemProcess) -> None:
    """Kill the server, index, restart it on the same port: index() returns only once all are in.

    osmem-server keeps data in memory, so the documents of this test are all sent
    while it is down; whatever was acknowledged before a restart is gone with it.
    """
    index = "down-while-indexing"
    url = fresh_search.url

    async def body(client: AsyncElasticsearch) -> tuple[BulkIndexer, Any, bool]:
        indexer = BulkIndexer(client, config=IndexerConfig(initial_backoff_s=0.05, max_backoff_s=0.5))
        first = await indexer.index(docs(index, 100))
        assert first.indexed == 100
        await asyncio.to_thread(fresh_search.kill)
        task = asyncio.create_task(indexer.index(docs(index, 1_000, start=100)))
        while indexer.healthy:  # the first failed request flips it
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # down for a while: retries keep failing
        assert not task.done(), "index() must not return while the cluster is down"
        was_healthy_while_down = indexer.healthy
        await asyncio.to_thread(lambda: fresh_search.start().wait_ready(60))
        result = await asyncio.wait_for(task, 120)
        assert await indexer.wait_healthy(1)
        return indexer, result, was_healthy_while_down

    indexer, result, was_healthy = run_with_client(url, body)
    assert not was_healthy
    assert result.indexed == 1_000 and result.rejected == []
    assert indexer.retried_by_reason["connection"] > 0
    assert count(url, index) == 1_000  # the restarted server holds every document sent while it was down


def test_the_reconnect_hook_runs_before_the_first_request_after_the_cluster_was_unreachable() -> None:
    """The worker puts its index templates again there (a search server restarted empty had lost them); the hook
    failing is one more failed attempt, retried. Here the server never comes back."""
    url = f"http://127.0.0.1:{free_port()}"
    calls: list[int] = []

    async def reconnect() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("still down")

    cfg = IndexerConfig(initial_backoff_s=0.01, max_backoff_s=0.02, max_attempts=6)

    async def body(client: AsyncElasticsearch) -> BulkIndexer:
        indexer = BulkIndexer(client, config=cfg, on_reconnect=reconnect)
        with pytest.raises(RetriesExhausted):
            await indexer.index(docs("never", 5))
        return indexer

    indexer = run_with_client(url, body)
    # attempt 1 is refused (the server is down), attempts 2-3 stop at the hook, 4-6 send and are refused again
    assert len(calls) == 5 and indexer.counters["requests"] == 6


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a server restarting, or hung."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_the_reconnect_hook_runs_after_a_request_timed_out(silent_port: int) -> None:
    """A cluster that answers nothing (requests time out) may come back empty as one that refused connections."""
    calls: list[int] = []

    async def reconnect() -> None:
        calls.append(1)
        raise ConnectionError("still silent")

    cfg = IndexerConfig(initial_backoff_s=0.01, max_backoff_s=0.02, max_attempts=3, request_timeout_s=0.3)

    async def body(client: AsyncElasticsearch) -> BulkIndexer:
        indexer = BulkIndexer(client, config=cfg, on_reconnect=reconnect)
        with pytest.raises(RetriesExhausted):
            await indexer.index(docs("never", 5))
        return indexer

    indexer = run_with_client(f"http://127.0.0.1:{silent_port}", body)
    # attempt 1 times out; attempts 2 and 3 stop at the hook, which fails as the cluster is still silent
    assert indexer.retried_by_reason["timeout"] == 5 and len(calls) == 2


def test_close_while_the_cluster_is_down_raises_instead_of_acknowledging() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def body(client: AsyncElasticsearch) -> None:
        indexer = BulkIndexer(client, config=FAST)
        task = asyncio.create_task(indexer.index(docs("never", 10)))
        await asyncio.sleep(0.3)
        await indexer.close()
        with pytest.raises(IndexerClosed):
            await task

    run_with_client(url, body)


def test_max_attempts_turns_endless_retry_into_an_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    cfg = IndexerConfig(initial_backoff_s=0.01, max_backoff_s=0.02, max_attempts=3)

    async def body(client: AsyncElasticsearch) -> BulkIndexer:
        indexer = BulkIndexer(client, config=cfg)
        with pytest.raises(RetriesExhausted, match="3 attempts"):
            await indexer.index(docs("never", 5))
        return indexer

    indexer = run_with_client(url, body)
    assert indexer.counters["requests"] == 3 and not indexer.healthy


def test_cancelling_index_stops_its_retries() -> None:
    """A worker shutting down cancels index(): no chunk goes on retrying in the background."""
    url = f"http://127.0.0.1:{free_port()}"
    cfg = IndexerConfig(initial_backoff_s=0.01, max_backoff_s=0.02, initial_chunk_docs=5, initial_concurrency=4)

    async def body(client: AsyncElasticsearch) -> tuple[int, int]:
        indexer = BulkIndexer(client, config=cfg)
        task = asyncio.create_task(indexer.index(docs("never", 40)))
        while indexer.counters["requests"] < 8:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after_cancel = indexer.counters["requests"]
        await asyncio.sleep(0.3)
        return after_cancel, indexer.counters["requests"]

    after_cancel, later = run_with_client(url, body)
    assert later == after_cancel


# ------------------------------------------------------------------ scripted _bulk server


class ScriptedBulk:
    """Answers ``POST /_bulk`` with what ``decide(request_no, ids)`` returns: (status, per-id item status)."""

    def __init__(self, decide: Callable[[int, list[str]], tuple[int, dict[str, int]]]) -> None:
        self.decide = decide
        self.requests: list[list[str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
                ids = [line["index"]["_id"] for line in lines[::2]]
                with outer.lock:
                    outer.requests.append(ids)
                    status, items = outer.decide(len(outer.requests), ids)
                if status != 200:
                    body = {"error": {"type": "scripted", "reason": f"scripted {status}"}, "status": status}
                else:
                    body = {
                        "took": 1,
                        "errors": any(s >= 300 for s in items.values()),
                        "items": [_item(i, items[i]) for i in ids],
                    }
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("x-elastic-product", "Elasticsearch")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_PUT = do_POST

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _item(doc_id: str, status: int) -> dict[str, Any]:
    item: dict[str, Any] = {"_index": "x", "_id": doc_id, "status": status}
    if status >= 300:
        kind = "es_rejected_execution_exception" if status == 429 else "mapper_parsing_exception"
        item["error"] = {"type": kind, "reason": f"scripted {status}"}
    else:
        item["result"] = "created"
    return {"index": item}


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[int, list[str]], tuple[int, dict[str, int]]]], ScriptedBulk]]:
    servers: list[ScriptedBulk] = []

    def make(decide: Callable[[int, list[str]], tuple[int, dict[str, int]]]) -> ScriptedBulk:
        servers.append(ScriptedBulk(decide))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_429_then_ok_retries_without_dropping(scripted: Callable[..., ScriptedBulk]) -> None:
    acked: set[str] = set()

    def decide(n: int, ids: list[str]) -> tuple[int, dict[str, int]]:
        if n <= 2:
            return 429, {}  # whole request: too many requests
        # afterwards every other fresh document is pushed back once with an item-level 429
        out = {}
        for i in ids:
            out[i] = 201 if (i in acked or int(i[1:]) % 2) else 429
            acked.add(i)
        return 200, out

    server = scripted(decide)

    async def body(client: AsyncElasticsearch) -> tuple[BulkIndexer, Any]:
        indexer = BulkIndexer(client, config=FAST)
        return indexer, await indexer.index(docs("x", 200))

    indexer, result = run_with_client(server.url, body)
    assert result.indexed == 200 and result.rejected == []
    assert indexer.retried_by_reason["429"] == 2 * 200 + 100  # two whole-request 429s, then 100 item-level
    sent = [i for request in server.requests[2:] for i in request]
    assert set(sent) == {f"d{i}" for i in range(200)}
    assert indexer.healthy


def test_429_shrinks_concurrency_and_chunks(scripted: Callable[..., ScriptedBulk]) -> None:
    server = scripted(lambda n, ids: (429, {}) if n == 1 else (200, dict.fromkeys(ids, 201)))
    cfg = IndexerConfig(initial_chunk_docs=400, initial_concurrency=4, grow_after=1000, initial_backoff_s=0.01)

    async def body(client: AsyncElasticsearch) -> BulkIndexer:
        indexer = BulkIndexer(client, config=cfg)
        await indexer.index(docs("x", 400))
        return indexer

    indexer = run_with_client(server.url, body)
    assert indexer.concurrency == 2 and indexer.chunk_docs == 200


def test_slow_clean_requests_shrink_the_chunk(scripted: Callable[..., ScriptedBulk]) -> None:
    def slow(n: int, ids: list[str]) -> tuple[int, dict[str, int]]:
        time.sleep(0.15)
        return 200, dict.fromkeys(ids, 201)

    server = scripted(slow)
    cfg = IndexerConfig(initial_chunk_docs=100, slow_request_s=0.1, grow_after=1, initial_concurrency=1)

    async def body(client: AsyncElasticsearch) -> tuple[BulkIndexer, Any]:
        indexer = BulkIndexer(client, config=cfg)
        return indexer, await indexer.index(docs("x", 100))

    indexer, result = run_with_client(server.url, body)
    assert result.indexed == 100
    assert indexer.chunk_docs == 50 and indexer.concurrency == 1 and indexer.counters["slow_requests"] == 1


def test_whole_request_400_is_bisected_to_the_poisoned_document(scripted: Callable[..., ScriptedBulk]) -> None:
    server = scripted(lambda n, ids: (400, {}) if "d37" in ids else (200, dict.fromkeys(ids, 201)))
    rejected: list[Rejection] = []

    async def body(client: AsyncElasticsearch) -> Any:
        return await BulkIndexer(client, on_reject=rejected.append, config=FAST).index(docs("x", 100))

    result = run_with_client(server.url, body)
    assert result.indexed == 99
    assert [r.action["_id"] for r in rejected] == ["d37"] and rejected[0].status == 400


def test_413_splits_the_chunk(scripted: Callable[..., ScriptedBulk]) -> None:
    server = scripted(lambda n, ids: (413, {}) if len(ids) > 30 else (200, dict.fromkeys(ids, 201)))

    async def body(client: AsyncElasticsearch) -> tuple[BulkIndexer, Any]:
        indexer = BulkIndexer(client, config=IndexerConfig(initial_chunk_docs=120, min_chunk_docs=5))
        return indexer, await indexer.index(docs("x", 120))

    indexer, result = run_with_client(server.url, body)
    assert result.indexed == 120 and result.rejected == []
    assert max(len(r) for r in server.requests if len(r) <= 30) <= 30
    assert indexer.chunk_docs < 120


def test_retry_after_429_resends_in_smaller_chunks(scripted: Callable[..., ScriptedBulk]) -> None:
    server = scripted(lambda n, ids: (429, {}) if n == 1 else (200, dict.fromkeys(ids, 201)))
    cfg = IndexerConfig(initial_chunk_docs=400, initial_concurrency=1, grow_after=1000, initial_backoff_s=0.01)

    async def body(client: AsyncElasticsearch) -> Any:
        return await BulkIndexer(client, config=cfg).index(docs("x", 400))

    assert run_with_client(server.url, body).indexed == 400
    assert [len(r) for r in server.requests] == [400, 200, 200]


def test_whole_request_404_waits_instead_of_rejecting(scripted: Callable[..., ScriptedBulk]) -> None:
    """A wrong path (proxy, URL prefix) answers 404 to every _bulk: retry, never dead-letter everything."""
    server = scripted(lambda n, ids: (404, {}) if n <= 2 else (200, dict.fromkeys(ids, 201)))

    async def body(client: AsyncElasticsearch) -> tuple[BulkIndexer, Any]:
        indexer = BulkIndexer(client, config=FAST)
        return indexer, await indexer.index(docs("x", 30))

    indexer, result = run_with_client(server.url, body)
    assert result.indexed == 30 and result.rejected == []
    assert indexer.retried_by_reason["404"] >= 30


def test_503_items_are_retried_and_auth_failure_waits(scripted: Callable[..., ScriptedBulk]) -> None:
    def decide(n: int, ids: list[str]) -> tuple[int, dict[str, int]]:
        if n == 1:
            return 401, {}
        if n == 2:
            return 200, {i: 503 for i in ids}
        return 200, dict.fromkeys(ids, 201)

    server = scripted(decide)

    async def body(client: AsyncElasticsearch) -> tuple[BulkIndexer, Any]:
        indexer = BulkIndexer(client, config=FAST)
        return indexer, await indexer.index(docs("x", 10))

    indexer, result = run_with_client(server.url, body)
    assert result.indexed == 10
    assert indexer.retried_by_reason["401"] == 10 and indexer.retried_by_reason["503"] == 10


def test_giving_up_on_one_chunk_stops_the_others(scripted: Callable[..., ScriptedBulk]) -> None:
    """RetriesExhausted from one chunk cancels its siblings instead of leaving them retrying unseen."""
    server = scripted(lambda n, ids: (503, {}))
    cfg = IndexerConfig(
        initial_backoff_s=0.01, max_backoff_s=0.02, max_attempts=2, initial_chunk_docs=5, initial_concurrency=1
    )

    async def body(client: AsyncElasticsearch) -> int:
        with pytest.raises(RetriesExhausted):
            await BulkIndexer(client, config=cfg).index(docs("x", 40))
        await asyncio.sleep(0.1)  # a request already on the wire when the siblings were cancelled lands now
        sent = len(server.requests)
        await asyncio.sleep(0.3)
        return sent

    sent = run_with_client(server.url, body)
    assert len(server.requests) == sent < 16  # 8 chunks x 2 attempts would be 16


def test_bytes_bound_the_chunks(scripted: Callable[..., ScriptedBulk]) -> None:
    server = scripted(lambda n, ids: (200, dict.fromkeys(ids, 201)))
    big = [{"_index": "x", "_id": f"d{i}", "_source": {"blob": "x" * 10_000}} for i in range(50)]

    async def body(client: AsyncElasticsearch) -> Any:
        cfg = IndexerConfig(max_chunk_bytes=45_000, initial_chunk_docs=1_000)
        return await BulkIndexer(client, config=cfg).index(big)

    assert run_with_client(server.url, body).indexed == 50
    assert max(len(r) for r in server.requests) == 4  # 4 x ~10 KB fit in 45 KB, 5 do not


def test_a_long_metric_names_documents_are_indexed(search: OsmemProcess, unique_name: Callable[[str], str]) -> None:
    """A point's id holds the metric's name, and the server refuses an id past 512 bytes (osmem-server as
    Elasticsearch: "id ... is too long"): every point of a metric named with 600 characters was rejected."""
    import numpy as np
    import synth as S
    from aitrace.schemas.metric_block import MetricBlock
    from aitrace.sinks.metric_documents import metric_block_actions

    prefix = unique_name("long")
    block = S.metric_block(trace="a" * 32, run_id="r", start_step=0, series={"x" * 600: np.arange(5.0)})
    actions = metric_block_actions(MetricBlock.from_record(block), prefix=prefix)

    async def body(client: AsyncElasticsearch) -> Any:
        return await BulkIndexer(client, config=FAST, index_prefix=prefix).index(actions)

    result = run_with_client(search.url, body)
    assert (result.indexed, result.rejected) == (5, [])
