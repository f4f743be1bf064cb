"""What ``aitrace demo`` watches while it runs: the alert tail, the index counts, the progress line."""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from aitrace.infra.demo_findings import Alert, alert_from_document, describe
from aitrace.producers.config import SearchConfig, Settings
from aitrace.sinks.terminal import CLEAR_LINE
from elastic_transport import ApiError, TransportError


class AlertCollector:
    """Tails the alerts topic from the beginning in a thread; keeps the latest version per alert.

    Only alerts about events from ``since_us`` on count: on a stack kept from an earlier demo
    the topic still holds that run's alerts, which say nothing about this one.
    """

    def __init__(self, settings: Settings, on_new: Callable[[Alert], None], since_us: int = 0) -> None:
        from aitrace.sinks.alert_stream import AlertStream

        self.since_us = since_us
        self.alerts: dict[str, Alert] = {}
        self._lock = threading.Lock()
        self._on_new = on_new
        self._stream = AlertStream(settings.kafka, from_beginning=True, poll_timeout=0.2)
        self._thread = threading.Thread(target=self._run, name="demo-alerts", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> AlertCollector:
        self._thread.start()
        return self

    def snapshot(self) -> dict[str, Alert]:
        with self._lock:
            return dict(self.alerts)

    def _run(self) -> None:
        try:
            for alert in self._stream:
                if int(alert.get("last_seen") or 0) < self.since_us:
                    continue
                with self._lock:
                    new = alert["alert_id"] not in self.alerts
                    self.alerts[alert["alert_id"]] = alert
                if new:
                    self._on_new(alert)
        except Exception as exc:  # reported in the summary; the demo still ends cleanly
            self.error = exc

    def stop(self) -> None:
        self._stream.stop()
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._stream.close()


class IndexCounter:
    """Document counts of the three index families (what the worker has made searchable), from ``since`` on."""

    def __init__(self, search: SearchConfig, since: str | None = None) -> None:
        from aitrace.sinks.es import make_sync_client

        self.prefix = search.index_prefix
        self.es = make_sync_client(search)
        self.since = since

    def _query(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        filters = [{"range": {"@timestamp": {"gte": self.since}}}] if self.since else []
        filters += [extra] if extra else []
        return {"bool": {"filter": filters}} if filters else {"match_all": {}}

    def count(self, family: str, query: dict[str, Any] | None = None) -> int:
        try:
            answer = self.es.count(
                index=f"{self.prefix}-{family}-*",
                query=self._query(query),
                ignore_unavailable=True,
                allow_no_indices=True,
            )
            return int(answer["count"])
        except (ApiError, TransportError, OSError):  # a busy server must not kill the progress line
            return 0

    def alerts(self, limit: int = 1_000) -> dict[str, Alert]:
        """The indexed alerts, back in ``aitrace.Alert`` shape (a second view next to the topic tail)."""
        try:
            answer = self.es.search(
                index=f"{self.prefix}-alerts-*",
                size=limit,
                query=self._query(),
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        except (ApiError, TransportError, OSError):
            return {}
        out = {}
        for hit in answer["hits"]["hits"]:
            alert = alert_from_document(hit["_source"])
            if alert is not None:
                out[alert["alert_id"]] = alert
        return out

    def longest_trace(self) -> str | None:
        """Id of the slowest assembled trace (a good first ``aitrace trace``)."""
        try:
            answer = self.es.search(
                index=f"{self.prefix}-traces-*",
                size=1,
                sort=[{"aitrace.trace.duration_us": "desc"}],
                query=self._query({"term": {"aitrace.trace.services": "feature-service"}}),
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        except (ApiError, TransportError, OSError):
            return None
        hits = answer["hits"]["hits"]
        return str(hits[0]["_source"]["trace"]["id"]) if hits else None

    def close(self) -> None:
        self.es.close()


@dataclass
class Progress:
    """Prints what runs, events/s and alerts; a line per interval (rewritten in place on a TTY)."""

    counter: IndexCounter
    out: TextIO = sys.stdout
    interval: float = 2.0
    phase: str = "starting"
    alerts: int = 0
    started: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _last: tuple[float, int] = (0.0, 0)

    def start(self) -> Progress:
        self._thread = threading.Thread(target=self._run, name="demo-progress", daemon=True)
        self._thread.start()
        return self

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.say(f"> {phase}")

    def say(self, line: str) -> None:
        with self._lock:
            self.out.write((CLEAR_LINE if self.out.isatty() else "") + line + "\n")
            self.out.flush()

    def alert(self, alert: Alert) -> None:
        self.alerts += 1
        self.say(f"  ALERT {describe(alert)}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            events = self.counter.count("events")
            now = time.monotonic()
            then, before = self._last
            rate = (events - before) / (now - then) if then else 0.0
            self._last = (now, events)
            line = (
                f"[{now - self.started:5.0f}s] {self.phase:<34} indexed {events:>7,} events ({rate:,.0f}/s), "
                f"traces {self.counter.count('traces'):,}, alerts {self.alerts}"
            )
            with self._lock:
                if self.out.isatty():
                    # one screen line, or the carriage return cannot rewrite it
                    self.out.write(CLEAR_LINE + line[: shutil.get_terminal_size().columns - 1])
                else:
                    self.out.write(line + "\n")
                self.out.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.out.isatty():
            self.out.write(CLEAR_LINE)
