"""A small HTTP load generator that traces what it sends.

Worker threads take requests from a shared queue and POST them with ``http.client`` (one
keep-alive connection per thread). Each request runs inside a producer span of the load
generator's own service, whose W3C ``traceparent`` travels in the request headers, so the
servers' spans join the caller's trace. An optional pacing rate spreads the requests over
time the way real traffic arrives, so windows over time have something to show.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit


class TracingClient(Protocol):
    """The part of the producer client a caller that propagates context uses."""

    def span(self, name: str, kind: str = ..., **attributes: Any) -> AbstractContextManager[Any]: ...

    def inject(self, headers: dict[str, str]) -> Any: ...


@dataclass(frozen=True)
class Request:
    """One request to send; ``tag`` is free for the caller (a phase name, an expected outcome)."""

    path: str
    body: bytes
    tag: str = ""
    content_type: str = "application/json"
    context: Any = None


@dataclass(frozen=True)
class Response:
    request: Request
    status: int
    body: bytes
    latency_ms: float
    error: str | None = None


@dataclass
class LoadResult:
    """Every response, in completion order."""

    responses: list[Response] = field(default_factory=list)

    def by_status(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for r in self.responses:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def latencies(self, tag: str | None = None) -> list[float]:
        return [r.latency_ms for r in self.responses if tag is None or r.request.tag == tag]


OnResponse = Callable[[Response], None]


class LoadGenerator:
    """POSTs requests to ``base_url`` from ``threads`` threads, at most ``rate`` per second overall.

    ``on_response`` runs in the sending thread inside the request's span, so the events it emits
    (a ground-truth label, say) join that request's trace.
    """

    def __init__(
        self,
        base_url: str,
        client: TracingClient,
        *,
        threads: int = 4,
        rate: float | None = None,
        timeout: float = 10.0,
        on_response: OnResponse | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"base_url must look like http://HOST:PORT, got {base_url!r}")
        self.host, self.port = parts.hostname, parts.port
        self.client = client
        self.threads = threads
        self.rate = rate
        self.timeout = timeout
        self.on_response = on_response
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def run(self, requests: Iterable[Request]) -> LoadResult:
        """Send every request; returns when all have an answer (or a transport error)."""
        work: queue.Queue[Request | None] = queue.Queue()
        for request in requests:
            work.put(request)
        for _ in range(self.threads):
            work.put(None)
        result = LoadResult()
        self._next_slot = time.monotonic()
        workers = [threading.Thread(target=self._worker, args=(work, result), daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return result

    def _pace(self) -> None:
        """Reserve the next send slot so the overall rate stays at ``self.rate``."""
        if not self.rate:
            return
        with self._lock:
            slot = max(self._next_slot, time.monotonic())
            self._next_slot = slot + 1.0 / self.rate
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _worker(self, work: queue.Queue[Request | None], result: LoadResult) -> None:
        conn: http.client.HTTPConnection | None = None
        try:
            while (request := work.get()) is not None:
                self._pace()
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                response = self._send(conn, request)
                if response.error is not None:
                    conn.close()
                    conn = None  # a broken keep-alive connection is replaced, not reused
                with self._lock:
                    result.responses.append(response)
        finally:
            if conn is not None:
                conn.close()

    def _send(self, conn: http.client.HTTPConnection, request: Request) -> Response:
        with self.client.span("http.request", kind="client", path=request.path, tag=request.tag):
            headers = {"Content-Type": request.content_type}
            self.client.inject(headers)
            start = time.perf_counter()
            try:
                conn.request("POST", request.path, body=request.body, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                elapsed = (time.perf_counter() - start) * 1000
                response = Response(request, 0, b"", elapsed, f"{type(exc).__name__}: {exc}")
            else:
                response = Response(request, resp.status, body, (time.perf_counter() - start) * 1000)
            if self.on_response is not None:
                self.on_response(response)  # inside the span: what it emits belongs to this request's trace
            return response
