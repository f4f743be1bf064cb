"""Async bulk indexer: adaptive, retrying, never dropping, with a per-document error path.

The processors call ``await indexer.index(actions)`` and commit their Kafka
offsets only after it returns: by then every document was either acknowledged
by the server or rejected for a reason of its own (a 4xx item such as a mapping
conflict), which went to ``on_reject`` so the caller can dead-letter it.
Everything else is retried with exponential backoff, without limit by default:
a cluster that is down or answering 429 makes ``index`` wait, which pauses
consumption (backpressure) instead of dropping or crashing.

Idea of the flow:

* actions are split into chunks by serialized bytes (a few MB at most:
  osmem-server swells on huge bodies) and by a document count that adapts;
* chunks go out through ``elasticsearch.helpers.async_streaming_bulk`` (one
  helper call per chunk), at most ``concurrency`` at a time;
* AIMD control: each clean chunk counts toward growing the chunk size and the
  concurrency; a 429, a timeout or a connection error halves them at once;
* per item: 2xx acknowledged; 429/5xx/connection retried; any other 4xx is a
  rejection of that document alone. A whole request answered 4xx (other than
  401/403/404/405/408/429/413, which wait or split) is bisected until the
  culprit stands alone, so one bad document never blocks the rest; 413 (body
  too large) splits the chunk; a retried chunk is resent at the current size.

Index names: the processors build every action under the canonical prefix ``aitrace``
(:data:`aitrace.sinks.documents.CANONICAL_PREFIX`: ``aitrace-events-2026.11.26``) and know no
other; an indexer made with ``index_prefix`` (the worker's ``SearchConfig.index_prefix``)
writes each document under that prefix instead (``ml-events-2026.11.26``), at write time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aitrace.sinks.documents import CANONICAL_PREFIX
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_streaming_bulk

log = logging.getLogger(__name__)

Action = dict[str, Any]

# Whole-request or per-item statuses that are the cluster's trouble, not the document's
# (every 5xx counts too, see _retryable).
RETRY_STATUSES = frozenset({408, 429})
# Auth problems (and a read-only index block, 403) are an operator's to fix; dropping data meanwhile would be worse.
WAIT_STATUSES = frozenset({401, 403})
# A whole ``_bulk`` answered 404/405 means a wrong URL or proxy path, never one bad document: wait, do not bisect.
WHOLE_REQUEST_WAIT = frozenset({404, 405})


@dataclass(frozen=True)
class IndexerConfig:
    """Tuning knobs; the defaults suit osmem-server on 2 cores and a small Elasticsearch."""

    max_chunk_bytes: int = 4 * 1024 * 1024
    max_chunk_docs: int = 2_000
    min_chunk_docs: int = 20
    initial_chunk_docs: int = 500
    max_concurrency: int = 4
    initial_concurrency: int = 2
    grow_after: int = 4  # clean chunks in a row before growing
    slow_request_s: float = 5.0  # a clean request slower than this shrinks the chunk (latency matters too)
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 10.0
    request_timeout_s: float = 30.0
    max_attempts: int | None = None  # None: retry retryable failures forever (never drop)


@dataclass(frozen=True)
class Rejection:
    """One document the server refused for a reason of its own (send it to the DLQ)."""

    action: Action  # the action as given (the same object), its ``_index`` canonical
    status: int
    error_type: str
    reason: str
    index: str = ""  # the index the document was written to (under the indexer's prefix)


@dataclass
class IndexResult:
    indexed: int = 0
    rejected: list[Rejection] = field(default_factory=list)


class IndexerClosed(RuntimeError):
    """The indexer was closed while documents were still unacknowledged (do not commit offsets)."""


class RetriesExhausted(RuntimeError):
    """``max_attempts`` was set and a retryable failure outlasted it."""


@dataclass
class _Doc:
    action: Action  # as given: rejections report this object
    wire: Action  # what is sent: ``action`` under the indexer's index prefix
    line: bytes  # header + source, newline-terminated
    attempts: int = 0


RejectCallback = Callable[[Rejection], Awaitable[None] | None]


class BulkIndexer:
    """Adaptive bulk indexer over an ``AsyncElasticsearch`` client (see module doc)."""

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        on_reject: RejectCallback | None = None,
        config: IndexerConfig | None = None,
        index_prefix: str | None = None,
        on_reconnect: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        """``index_prefix``: write actions named under the canonical prefix under this one (see the
        module doc); None writes every ``_index`` as given. ``on_reconnect``: awaited before the first
        request after the cluster could not be reached (the worker puts its index templates again: a
        search server restarted empty, as osmem-server does, had lost them, and the day's index was made
        with dynamic mappings, its run ids ``text``); it raising is one more failed attempt."""
        self.config = cfg = config or IndexerConfig()
        self._index_prefix = index_prefix
        # The indexer owns retries: no transport-level retry loops without backoff.
        self._client = client.options(
            max_retries=0, retry_on_status=(), retry_on_timeout=False, request_timeout=cfg.request_timeout_s
        )
        self._on_reject = on_reject
        self._on_reconnect = on_reconnect
        self._unreached = False  # the last attempt could not reach the cluster: on_reconnect before the next
        self.chunk_docs = cfg.initial_chunk_docs
        self.concurrency = cfg.initial_concurrency
        self._in_flight = 0
        self._slot = asyncio.Condition()
        self._clean_streak = 0
        self._failures_in_row = 0
        self._closed = False
        self._healthy = asyncio.Event()
        self._healthy.set()
        self.last_error: str | None = None
        self.counters: Counter[str] = Counter()
        self.retried_by_reason: Counter[str] = Counter()
        self.rejected_by_reason: Counter[str] = Counter()

    # ------------------------------------------------------------ public

    @property
    def healthy(self) -> bool:
        """False while the last request to the cluster failed (down, 429, timeouts)."""
        return self._healthy.is_set()

    async def wait_healthy(self, timeout: float | None = None) -> bool:
        """Wait until the cluster accepts requests again; True if it does within ``timeout``."""
        try:
            await asyncio.wait_for(self._healthy.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def stats(self) -> dict[str, Any]:
        """Counters and current control state, for logs and ``aitrace status``-like views."""
        return {
            **self.counters,
            "retried_by_reason": dict(self.retried_by_reason),
            "rejected_by_reason": dict(self.rejected_by_reason),
            "chunk_docs": self.chunk_docs,
            "concurrency": self.concurrency,
            "healthy": self.healthy,
            "last_error": self.last_error,
        }

    async def index(self, actions: Iterable[Action]) -> IndexResult:
        """Index ``actions``; return once each one is acknowledged or rejected.

        Raises :class:`IndexerClosed` if :meth:`close` is called meanwhile and
        :class:`RetriesExhausted` only when ``max_attempts`` is set. A malformed
        action (not serializable, no ``_index``) is a rejection, not an exception.
        """
        result = IndexResult()
        docs: list[_Doc] = []
        for action in actions:
            doc = self._prepare(action, result)
            if doc is not None:
                docs.append(doc)
        self.counters["submitted"] += len(docs)
        await _all_or_cancel([self._send(chunk, result) for chunk in self._chunks(docs)])
        for rejection in result.rejected:
            await self._report(rejection)
        return result

    async def close(self) -> None:
        """Stop: pending retries give up with :class:`IndexerClosed`. The client is not closed."""
        self._closed = True
        async with self._slot:
            self._slot.notify_all()

    # ------------------------------------------------------------ preparation

    def _prepare(self, action: Action, result: IndexResult) -> _Doc | None:
        try:
            index, source = action["_index"], action["_source"]
            index = self.index_of(index) if isinstance(index, str) else index
            header: dict[str, Any] = {"_index": index}
            if action.get("_id") is not None:
                header["_id"] = action["_id"]
            line = orjson.dumps({"index": header}) + b"\n" + orjson.dumps(source) + b"\n"
        except (KeyError, TypeError, orjson.JSONEncodeError) as exc:
            self._reject(result, action, 0, "invalid_action", f"cannot serialize action: {exc}")
            return None
        return _Doc(action, action if index == action["_index"] else {**action, "_index": index}, line)

    def index_of(self, name: str) -> str:
        """The index an action named ``name`` is written to: under ``index_prefix`` when it names one."""
        canonical = CANONICAL_PREFIX + "-"
        if self._index_prefix is None or not name.startswith(canonical):
            return name
        return f"{self._index_prefix}-{name[len(canonical) :]}"

    def _chunks(self, docs: list[_Doc]) -> Iterable[list[_Doc]]:
        """Split by document count (adaptive) and bytes; an oversized document goes alone."""
        chunk: list[_Doc] = []
        size = 0
        for doc in docs:
            if chunk and (len(chunk) >= self.chunk_docs or size + len(doc.line) > self.config.max_chunk_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(doc)
            size += len(doc.line)
        if chunk:
            yield chunk

    # ------------------------------------------------------------ sending

    async def _send(self, chunk: list[_Doc], result: IndexResult) -> None:
        """Send one chunk until each of its documents is acknowledged or rejected."""
        pending = chunk
        while pending:
            if self._closed:
                raise IndexerClosed(f"indexer closed with {len(pending)} document(s) unacknowledged")
            await self._acquire()
            try:
                retry, split = await self._attempt(pending, result)
            finally:
                await self._release()
            if split:
                # bisect: whole-request 4xx or 413; each half goes its own way
                await _all_or_cancel([self._send(part, result) for part in split])
                return
            if retry:
                self._check_attempts(retry)
                await self._backoff()
                if len(retry) > self.chunk_docs:
                    # the chunk size shrank meanwhile: resend in pieces of the new size
                    await _all_or_cancel([self._send(part, result) for part in self._chunks(retry)])
                    return
            pending = retry

    async def _attempt(self, docs: list[_Doc], result: IndexResult) -> tuple[list[_Doc], list[list[_Doc]]]:
        """One bulk request. Returns (documents to retry, sub-chunks to send instead)."""
        for doc in docs:
            doc.attempts += 1
        self.counters["requests"] += 1
        if self._unreached and self._on_reconnect is not None:
            try:
                await self._on_reconnect()
            except Exception as exc:  # (an answer of 5xx too: the cluster is not back yet)
                return self._trouble(docs, "connection", exc), []
        self._unreached = False
        try:
            started = time.monotonic()
            items = await self._bulk(docs)
            elapsed = time.monotonic() - started
        except ConnectionTimeout as exc:  # (a server restarting may answer nothing for a while)
            self._unreached = True
            return self._trouble(docs, "timeout", exc), []
        except TransportError as exc:
            self._unreached = True
            return self._trouble(docs, "connection", exc), []
        retry: list[_Doc] = []
        whole_request_status = _whole_request_status(items)
        if whole_request_status is not None:
            return self._whole_request_failure(docs, items, whole_request_status, result)
        for doc, (ok, item) in zip(docs, items, strict=True):
            status, error = _status(item)
            if ok:
                self.counters["indexed"] += 1
                result.indexed += 1
            elif _retryable(status):
                self.retried_by_reason[str(status)] += 1
                retry.append(doc)
            else:
                self._reject(result, doc.action, status, _error_type(error), _reason(error))
        if retry:
            statuses = sorted({_status(item)[0] for ok, item in items if not ok})
            self._on_trouble(f"{len(retry)} item(s) answered {statuses}")
            self.counters["retried"] += len(retry)
        else:
            self._on_clean(elapsed)
        return retry, []

    async def _bulk(self, docs: list[_Doc]) -> list[tuple[bool, dict[str, Any]]]:
        """One ``_bulk`` through the official helper; yields one (ok, item) per document, in order."""
        actions = [doc.wire for doc in docs]
        items = []
        async for ok, item in async_streaming_bulk(
            self._client,
            actions,
            chunk_size=len(actions),
            max_chunk_bytes=2**62,  # chunking is ours, by the serialized size
            raise_on_error=False,
            raise_on_exception=False,
            max_retries=0,
            yield_ok=True,
        ):
            items.append((ok, item))
        return items

    def _whole_request_failure(
        self, docs: list[_Doc], items: list[tuple[bool, dict[str, Any]]], status: int, result: IndexResult
    ) -> tuple[list[_Doc], list[list[_Doc]]]:
        reason = _reason(_status(items[0][1])[1])
        if _retryable(status) or status in WHOLE_REQUEST_WAIT:
            self.retried_by_reason[str(status)] += len(docs)
            self.counters["retried"] += len(docs)
            self._on_trouble(f"bulk request answered HTTP {status}: {reason}", shrink=True)
            return docs, []
        if status == 413 or len(docs) > 1:
            # too large, or one document poisons the request: bisect to isolate it
            if status == 413:
                self.chunk_docs = max(self.config.min_chunk_docs, len(docs) // 2)
            self.counters["bisected"] += 1
            if len(docs) == 1:
                self._reject(result, docs[0].action, status, "request_too_large", reason)
                return [], []
            half = len(docs) // 2
            return [], [docs[:half], docs[half:]]
        self._reject(result, docs[0].action, status, _error_type(_status(items[0][1])[1]), reason)
        return [], []

    # ------------------------------------------------------------ control

    def _trouble(self, docs: list[_Doc], reason: str, exc: Exception) -> list[_Doc]:
        self.retried_by_reason[reason] += len(docs)
        self.counters["retried"] += len(docs)
        self._on_trouble(f"{reason}: {exc}", shrink=True)
        return docs

    def _on_trouble(self, message: str, *, shrink: bool = True) -> None:
        """Multiplicative decrease: the cluster is struggling or gone."""
        self.last_error = message
        self._failures_in_row += 1
        self._clean_streak = 0
        self._healthy.clear()
        if shrink:
            self.concurrency = max(1, self.concurrency // 2)
            self.chunk_docs = max(self.config.min_chunk_docs, self.chunk_docs // 2)
        if self._failures_in_row in (1, 10) or self._failures_in_row % 100 == 0:
            log.warning("search cluster trouble (%d in a row): %s", self._failures_in_row, message)

    def _on_clean(self, elapsed: float) -> None:
        """Additive increase after a run of clean chunks; a slow clean request halves the chunk instead."""
        if self._failures_in_row:
            log.info("search cluster accepts again after %d failed attempt(s)", self._failures_in_row)
        self._failures_in_row = 0
        self._healthy.set()
        if elapsed > self.config.slow_request_s:
            # accepted, but slowly: smaller bodies keep latency (and the request timeout) in reach
            self._clean_streak = 0
            self.chunk_docs = max(self.config.min_chunk_docs, self.chunk_docs // 2)
            self.counters["slow_requests"] += 1
            return
        self._clean_streak += 1
        if self._clean_streak >= self.config.grow_after:
            self._clean_streak = 0
            self.concurrency = min(self.config.max_concurrency, self.concurrency + 1)
            self.chunk_docs = min(self.config.max_chunk_docs, int(self.chunk_docs * 1.25) + 1)

    def _check_attempts(self, docs: list[_Doc]) -> None:
        limit = self.config.max_attempts
        if limit is not None and any(doc.attempts >= limit for doc in docs):
            raise RetriesExhausted(f"{len(docs)} document(s) still failing after {limit} attempts: {self.last_error}")

    async def _backoff(self) -> None:
        """Full-jitter exponential backoff on the number of failures in a row."""
        cfg = self.config
        ceiling = min(cfg.max_backoff_s, cfg.initial_backoff_s * 2 ** min(self._failures_in_row, 30))
        delay = random.uniform(cfg.initial_backoff_s / 2, max(cfg.initial_backoff_s, ceiling))
        self.counters["backoff_ms"] += int(delay * 1000)
        deadline = time.monotonic() + delay
        while not self._closed and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, deadline - time.monotonic()))

    async def _acquire(self) -> None:
        async with self._slot:
            await self._slot.wait_for(lambda: self._closed or self._in_flight < self.concurrency)
            if self._closed:
                raise IndexerClosed("indexer closed")
            self._in_flight += 1

    async def _release(self) -> None:
        async with self._slot:
            self._in_flight -= 1
            self._slot.notify_all()

    # ------------------------------------------------------------ rejections

    def _reject(self, result: IndexResult, action: Action, status: int, error_type: str, reason: str) -> None:
        self.counters["rejected"] += 1
        self.rejected_by_reason[error_type] += 1
        index = action.get("_index")
        index = self.index_of(index) if isinstance(index, str) else ""
        result.rejected.append(Rejection(action, status, error_type, reason, index))

    async def _report(self, rejection: Rejection) -> None:
        if self._on_reject is None:
            log.warning("document %s rejected: %s", rejection.action.get("_id"), rejection.reason)
            return
        outcome = self._on_reject(rejection)
        if inspect.isawaitable(outcome):
            await outcome


async def _all_or_cancel(coros: list[Awaitable[None]]) -> None:
    """Run concurrently; on the first error, or if the caller is cancelled, cancel the rest and re-raise.

    So no chunk keeps retrying unseen after ``index()`` has given up or was cancelled.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return
    try:
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        pending = {t for t in tasks if not t.done()}
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        raise
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


# ---------------------------------------------------------------- item parsing


def _retryable(status: int) -> bool:
    """The cluster's trouble (429, 408, any 5xx) or an operator's (401/403): retry, never drop."""
    return status in RETRY_STATUSES or status in WAIT_STATUSES or status >= 500


def _status(item: dict[str, Any]) -> tuple[int, Any]:
    """(HTTP status, error) of one helper item ``{op_type: {...}}``."""
    info = next(iter(item.values()))
    status = info.get("status")
    return (int(status) if isinstance(status, int) else 0), info.get("error")


def _whole_request_status(items: list[tuple[bool, dict[str, Any]]]) -> int | None:
    """The status when the helper reported a failure of the whole request (an exception per item)."""
    if items and not items[0][0]:
        info = next(iter(items[0][1].values()))
        if "exception" in info:
            return _status(items[0][1])[0]
    return None


def _error_type(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("type") or "unknown")
    return "request_error"


def _reason(error: Any) -> str:
    if isinstance(error, dict):
        reason = str(error.get("reason") or error)
        caused = error.get("caused_by")
        if isinstance(caused, dict) and caused.get("reason"):
            reason += f" (caused by: {caused['reason']})"
        return reason
    return str(error)
