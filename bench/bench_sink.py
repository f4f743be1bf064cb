"""Sink throughput and latency on osmem-server: the BulkIndexer next to a raw ``_bulk`` baseline.

Both paths send the same documents (a realistic mix built by
:mod:`aitrace.sinks.documents`: logs, metric points, inference records, spans,
resource samples, traces, alerts) over the same async client to the same server,
into fresh indices under the installed templates, alternating rounds so that
drift of a shared machine hits both alike. Reported: median docs/s of each and
their ratio.

Then a paced run at ``--rate`` docs/s in small batches (what a worker does):
latency from ``index()`` call to acknowledgement, and to searchable (a term
query on the last document of the batch finds it), p50/p99.

    .venv/bin/python bench/bench_sink.py                    # starts its own osmem-server
    .venv/bin/python bench/bench_sink.py --es-url http://127.0.0.1:9200 --docs 20000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

import orjson
from aitrace.infra.stack import OsmemProcess, start_service
from aitrace.producers.config import SearchConfig
from aitrace.sinks import documents as d
from aitrace.sinks import es, templates
from aitrace.sinks.indexer import BulkIndexer, IndexerConfig
from elasticsearch import AsyncElasticsearch

T0 = 1_795_687_200_000_000
KINDS = ("log", "metric", "inference", "span", "resource")


def make_actions(n: int, prefix: str, seed: int) -> list[dict[str, Any]]:
    """``n`` bulk actions, mostly events plus a few traces and alerts, with unique ids."""
    actions: list[dict[str, Any]] = []
    i = 0
    while len(actions) < n:
        kind = KINDS[i % len(KINDS)]
        event = {
            "event_id": f"{seed}-{i}",
            "time": T0 + i * 1000,
            "trace_id": f"{i // 20:032x}",
            "span_id": f"{i:016x}",
            "parent_span_id": None,
            "service": ("trainer", "ranker", "etl")[i % 3],
            "environment": "bench",
            "host": "bench-host",
            "pid": 1234,
            "run_id": f"run-{i % 4}",
            "labels": {"team": "bench"},
            "payload": _payload(kind, i),
        }
        actions += d.event_actions(event, prefix=prefix)
        if i % 50 == 0:
            actions.append(d.trace_action(_trace(i), prefix=prefix))
        if i % 200 == 0:
            actions.append(d.alert_action(_alert(seed, i), prefix=prefix))
        i += 1
    return actions[:n]


def _payload(kind: str, i: int) -> tuple[str, dict[str, Any]]:
    if kind == "log":
        return "aitrace.LogRecord", {"level": "info" if i % 7 else "error", "message": f"batch {i} done", "logger": "b"}
    if kind == "metric":
        return "aitrace.TrainingMetric", {
            "step": i,
            "epoch": i // 1000,
            "split": "train",
            "metrics": {"loss": 1 / (i + 1)},
        }
    if kind == "inference":
        return "aitrace.InferenceRecord", {
            "request_id": f"r{i}",
            "model_name": "ranker",
            "latency_ms": 3.0 + i % 17,
            "status": "ok" if i % 23 else "error",
            "prediction": "click",
            "confidence": (i % 100) / 100,
        }
    if kind == "span":
        return "aitrace.Span", {"name": "score", "start_time": T0 + i * 1000, "duration_us": 900, "status": "ok"}
    return "aitrace.ResourceSample", {"cpu_percent": float(i % 100), "memory_rss_bytes": 10_000_000, "gpus": []}


def _trace(i: int) -> dict[str, Any]:
    return {
        "trace_id": f"{i // 20:032x}",
        "root_span_id": f"{i:016x}",
        "root_name": "POST /predict",
        "services": ["gateway", "ranker"],
        "start_time": T0 + i * 1000,
        "end_time": T0 + i * 1000 + 5000,
        "duration_us": 5000,
        "span_count": 3,
        "event_count": 20,
        "complete": True,
    }


def _alert(seed: int, i: int) -> dict[str, Any]:
    return {
        "alert_id": f"a-{seed}-{i}",
        "kind": "drift",
        "detector": "ks",
        "severity": "warning",
        "title": "drift",
        "series": "ranker/age",
        "feature": "age",
        "first_seen": T0 + i * 1000,
        "last_seen": T0 + i * 1000,
        "statistic": 0.3,
    }


def raw_bodies(actions: list[dict[str, Any]], max_bytes: int, max_docs: int) -> list[bytes]:
    """The baseline's ``_bulk`` bodies: serialized once up front, same size limits as the indexer."""
    bodies, current, size, count = [], [], 0, 0
    for a in actions:
        line = (
            orjson.dumps({"index": {"_index": a["_index"], "_id": a["_id"]}})
            + b"\n"
            + orjson.dumps(a["_source"])
            + b"\n"
        )
        if current and (size + len(line) > max_bytes or count >= max_docs):
            bodies.append(b"".join(current))
            current, size, count = [], 0, 0
        current.append(line)
        size += len(line)
        count += 1
    if current:
        bodies.append(b"".join(current))
    return bodies


async def run_raw(client: AsyncElasticsearch, actions: list[dict[str, Any]], cfg: IndexerConfig) -> float:
    bodies = raw_bodies(actions, cfg.max_chunk_bytes, cfg.initial_chunk_docs)
    start = time.perf_counter()
    for body in bodies:
        resp = await client.bulk(operations=body)
        if resp["errors"]:
            raise RuntimeError("raw _bulk reported item errors")
    return len(actions) / (time.perf_counter() - start)


async def run_indexer(client: AsyncElasticsearch, actions: list[dict[str, Any]], cfg: IndexerConfig) -> float:
    indexer = BulkIndexer(client, config=cfg)
    start = time.perf_counter()
    result = await indexer.index(actions)
    elapsed = time.perf_counter() - start
    if result.rejected or result.indexed != len(actions):
        raise RuntimeError(f"indexer: {result.indexed} indexed, {len(result.rejected)} rejected")
    return len(actions) / elapsed


async def paced(client: AsyncElasticsearch, prefix: str, rate: int, seconds: float, batch: int) -> dict[str, Any]:
    """Index at ``rate`` docs/s in batches; latency to ack and to searchable per batch."""
    indexer = BulkIndexer(client)
    n_batches = int(rate * seconds / batch)
    actions = make_actions(n_batches * batch, prefix, seed=999)
    ack, visible = [], []
    period = batch / rate
    start = time.perf_counter()
    for b in range(n_batches):
        due = start + b * period
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        chunk = actions[b * batch : (b + 1) * batch]
        t = time.perf_counter()
        await indexer.index(chunk)
        ack.append(time.perf_counter() - t)
        last = chunk[-1]
        while not (await client.search(index=last["_index"], query={"ids": {"values": [last["_id"]]}}, size=0))["hits"][
            "total"
        ]["value"]:
            await asyncio.sleep(0.005)
        visible.append(time.perf_counter() - t)
    achieved = n_batches * batch / (time.perf_counter() - start)
    return {"achieved": achieved, "ack": ack, "visible": visible, "stats": indexer.stats()}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(args: argparse.Namespace, url: str) -> None:
    client = await es.connect(SearchConfig(es_url=url))
    caps = es.capabilities_of(client)
    cfg = IndexerConfig()
    try:
        raw_rates, idx_rates = [], []
        for r in range(args.rounds):
            for name, fn, rates in (("raw", run_raw, raw_rates), ("indexer", run_indexer, idx_rates)):
                prefix = f"bench{r}{name}"
                await templates.install_templates_async(client, caps, prefix=prefix)
                actions = make_actions(args.docs, prefix, seed=r)
                rates.append(await fn(client, actions, cfg))
                await client.options(ignore_status=404).indices.delete(index=f"{prefix}-*")
                print(f"round {r} {name:8s} {rates[-1]:9.0f} docs/s", flush=True)
        if args.rounds:
            raw_med, idx_med = statistics.median(raw_rates), statistics.median(idx_rates)
            print(f"\n{args.docs} docs x {args.rounds} rounds on {caps.distribution} {caps.version} at {url}")
            print(f"raw _bulk (pre-serialized, sequential): median {raw_med:8.0f} docs/s")
            print(f"BulkIndexer:                            median {idx_med:8.0f} docs/s")
            print(f"indexer / raw: {idx_med / raw_med:.2f}")
        if args.rate:
            await templates.install_templates_async(client, caps, prefix="benchpaced")
            res = await paced(client, "benchpaced", args.rate, args.seconds, args.batch)
            await client.options(ignore_status=404).indices.delete(index="benchpaced-*")
            print(f"\npaced at {args.rate} docs/s in batches of {args.batch} for {args.seconds:g} s:")
            print(f"  achieved {res['achieved']:.0f} docs/s")
            slow = sum(1 for v in res["ack"] if v > args.batch / args.rate)
            print(f"  batches slower than their period: {slow} of {len(res['ack'])}; indexer: {res['stats']}")
            print(
                f"  call -> acknowledged   p50 {pct(res['ack'], 0.5) * 1e3:7.1f} ms  "
                f"p99 {pct(res['ack'], 0.99) * 1e3:7.1f} ms"
            )
            print(
                f"  call -> searchable     p50 {pct(res['visible'], 0.5) * 1e3:7.1f} ms  "
                f"p99 {pct(res['visible'], 0.99) * 1e3:7.1f} ms"
            )
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--es-url", default=None, help="use this server instead of starting osmem-server")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1_000, help="paced run docs/s (0: skip)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    if args.es_url:
        asyncio.run(main_async(args, args.es_url))
        return
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as logs:
        server = start_service(OsmemProcess, logs, timeout=60)
        try:
            asyncio.run(main_async(args, server.url))
        finally:
            server.kill()


if __name__ == "__main__":
    main()
