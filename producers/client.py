"""The producer client: what user code calls. Every call only builds a tuple and enqueues it.

Every kind of event is queued in one shape, :data:`~aitrace.producers.events.Queued`:
``(kind, time_us, ctx, fields, urgent)``; a metric's fields are ``(values, step, epoch, split)``.

``ctx`` is the :class:`~aitrace.producers.tracecontext.SpanContext` the event belongs to: the current span,
else the current OpenTelemetry span, else the client's root (the run's trace when a run id is
set, so every process of a run shares it). Times are ``time.time_ns() // 1000`` (no datetime).

The queue is bounded by ``queue_size`` events. When it is full, ``full_policy="drop_newest"``
drops the new event (counted in ``dropped_queue_full``); ``"block"`` makes the caller wait up
to ``full_block_timeout_s`` for room, then drops and counts.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from numbers import Integral
from typing import Any

from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.client_events import ClientEvents
from aitrace.producers.config import COUNT_FIELDS, ProducerConfig, Settings
from aitrace.producers.exporter import Exporter, Processor
from aitrace.producers.kafka_transport import DeliveryListener, KafkaTransport
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler, trace_sampled
from aitrace.producers.spans import Span, Stage
from aitrace.producers.summaries import row_count
from aitrace.schemas.codec import compiled

log = logging.getLogger("aitrace")

_time_ns = time.time_ns
_get_ctx = tc._CURRENT.get
_METRIC = ev.METRIC
_modules = sys.modules
_OTEL = "opentelemetry.trace"
_new_tuple = tuple.__new__
_new_span_id = tc.new_span_id
_pop_span_id = tc.SPAN_IDS.pop
_NEW_TRACE_KINDS = frozenset(("server", "consumer"))  # a top-level span of these kinds starts a trace
FULL_POLICIES = ("drop_newest", "block")

_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_default: Client | None = None


class Client(ClientEvents):
    """The aitrace producer. Build it with :func:`aitrace.init`; see the module doc for the queue."""

    def __init__(
        self,
        settings: Settings,
        processors: list[Processor] | None = None,
        delivery_listener: DeliveryListener | None = None,
        producer_config: dict[str, Any] | None = None,
        labels: Mapping[str, Any] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        _validate(settings.producer)
        compiled("aitrace.Batch")  # a missing or broken schema fails here, at init, with its name
        self.settings = settings
        self.redactor = redactor
        self._processors = list(processors or ())
        self._listener = delivery_listener
        self._producer_config = producer_config
        self._labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self._qmax = settings.producer.queue_size
        self._run_id = settings.producer.run_id
        self._caller_stats: Counter[str] = Counter()
        self._caller_lock = threading.Lock()
        self._told: set[str] = set()  # the calls whose bad argument was told (_rejected)
        self._closed = False
        self._auto_step = 0
        self._resource_sampler: Any = None
        self._start_worker()
        _clients.add(self)

    # -- setup (also after fork)

    def _start_worker(self) -> None:
        producer = self.settings.producer
        trace_id = tc.trace_id_for(producer.run_id) if producer.run_id else tc.new_trace_id()
        self._root = tc.SpanContext(trace_id, tc.new_span_id())
        self._queue: deque = deque()
        self.stats_counter: Counter[str] = Counter()
        envelope = {
            "service": producer.service,
            "service_version": producer.service_version,
            "environment": producer.environment,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "run_id": producer.run_id,
            "sampled": True,
            "labels": self._labels,
        }
        if self.redactor is not None:
            # Scrubbed once here as well as per event: the service name also names the Kafka client (client.id).
            envelope = self.redactor.mapping(envelope, top=True)
        client_id = f"aitrace-{envelope['service']}"
        transport = KafkaTransport(self.settings, self.stats_counter, client_id, self._listener, self._producer_config)
        self._exporter = Exporter(
            self.settings, self._queue, envelope, self._processors, os.urandom(6).hex(), self.stats_counter, transport
        )
        self._exporter.start()

    def _after_fork_in_child(self) -> None:
        """A forked child gets its own queue, producer, spool and worker; the parent's stay the parent's."""
        self._exporter.abandon()
        self._caller_lock = threading.Lock()
        self._caller_stats = Counter()
        if self._closed:
            return
        self._start_worker()
        if self._resource_sampler is not None:
            interval = self._resource_sampler.interval_s
            self._resource_sampler = None
            self.start_resource_sampler(interval)

    # -- the hot path

    def metric(
        self, values: Mapping[str, Any], step: int | None = None, epoch: int | None = None, split: str | None = None
    ) -> None:
        """Training (or evaluation) metrics of one step. NaN and Inf are data and are kept.

        Without ``step`` the client counts calls (1, 2, ...). Values must be numbers (Python,
        numpy or 0-d tensors); any other value is left out of the point and counted.
        """
        queue = self._queue
        if len(queue) >= self._qmax and not self._room():
            return
        if step is None:
            self._auto_step += 1
            step = self._auto_step
        ctx = _get_ctx()
        if ctx is None:  # outside any span: the run's root, unless OpenTelemetry is loaded and has one
            ctx = self._root if _OTEL not in _modules else self._fallback()
        try:
            point = dict(values)
        except Exception:  # 5, None, an array: no point to send
            self._rejected("metric(values=)", "a mapping of names to numbers", values, "the point is dropped")
            return
        queue.append((_METRIC, _time_ns() // 1000, ctx, (point, step, epoch, split), False))
        exporter = self._exporter
        if exporter.sleeping:  # the first caller wakes it; cleared here, the next ones need not (Exporter._sleep)
            exporter.sleeping = False
            exporter.wake.set()

    def _put(self, item: ev.Queued) -> None:
        queue = self._queue
        if len(queue) >= self._qmax and not self._room():
            return
        queue.append(item)
        exporter = self._exporter
        if exporter.sleeping or item[4]:  # urgent: errors leave at once, even mid-linger
            exporter.sleeping = False
            exporter.wake.set()

    def _fallback(self) -> tc.SpanContext:
        return tc.otel_current() or self._root

    def _context(self) -> tc.SpanContext:
        ctx = _get_ctx()
        if ctx is None:  # as in metric(): OpenTelemetry is asked only when it is loaded
            ctx = self._root if _OTEL not in _modules else self._fallback()
        return ctx

    def _room(self) -> bool:
        """The queue is full (or the client closed): wait for room under ``block``, else count the drop."""
        if self._closed:
            self._dropped("dropped_closed")
            return False
        if self.settings.producer.full_policy == "block":
            deadline = time.monotonic() + self.settings.producer.full_block_timeout_s
            while len(self._queue) >= self._qmax:
                if time.monotonic() >= deadline or not self._exporter.alive():
                    break
                time.sleep(0.001)
            else:
                return True
        self._dropped("dropped_queue_full")
        return False

    def _dropped(self, reason: str) -> None:
        with self._caller_lock:
            self._caller_stats[reason] += 1
            first = self._caller_stats[reason] == 1
        if first:
            log.warning(
                "aitrace: %s (queue_size=%d); further drops are only counted", reason, self.settings.producer.queue_size
            )

    def _rejected(self, call: str, takes: str, value: Any, outcome: str) -> None:
        """An argument that is not what ``call`` takes: counted (``rejected_bad_argument``) and told once per call,
        never raised into the caller (a telemetry call must not stop the training loop or the request it reports)."""
        with self._caller_lock:
            self._caller_stats["rejected_bad_argument"] += 1
            first = call not in self._told
            self._told.add(call)
        if first:
            log.warning(
                "aitrace: %s takes %s, not %s: %s; further ones are only counted (rejected_bad_argument)",
                call, takes, type(value).__qualname__, outcome,
            )  # fmt: skip

    # -- spans and context propagation

    def span(self, name: str, kind: str = "internal", new_trace: bool | None = None, **attributes: Any) -> Span:
        """A span as a context manager; events inside belong to it. Exceptions mark it error and propagate.

        A top-level span continues the run's trace when the client has a run id, and starts a new
        trace otherwise, or for ``kind="server"``/``"consumer"`` (one trace per request), or when
        ``new_trace=True``.
        """
        parent = _get_ctx()
        if parent is None:  # top level: the run's trace, unless a rule above (or OpenTelemetry) says otherwise
            try:
                if new_trace is not None or kind in _NEW_TRACE_KINDS or _OTEL in _modules or not self._run_id:
                    ctx = self._span_context(kind, new_trace)
                    return Span(self, name, kind, attributes, ctx.trace_id, ctx.span_id, ctx.parent_span_id)
            except Exception:  # a kind that cannot be hashed, a new_trace with no truth value (an array)
                read_kind, read_new = self._span_arguments(kind, new_trace)
                if read_kind is kind and read_new is new_trace:
                    raise
                return self.span(name, read_kind, read_new, **attributes)
            parent = self._root
        try:
            span_id = _pop_span_id()
        except IndexError:
            span_id = _new_span_id()
        # _span_context inlined (one Python call less); the span builds its SpanContext when it is entered
        return Span(self, name, kind, attributes, parent[0], span_id, parent[1])

    def stage(
        self, name: str, dataset: str | None = None, data: Any = None, rows_in: int | None = None, **attributes: Any
    ) -> Stage:
        """A data-pipeline stage as a ``with`` block: one ``aitrace.Span`` with its duration and rows in and out.

        ``rows_in`` is counted from ``data`` (DataFrame, Series, array, mapping of columns) unless
        given; set ``rows_out`` on the yielded :class:`Stage` or pass the result to its ``output``.
        The span's attributes carry ``stage``, ``dataset``, ``rows_in``, ``rows_out`` and
        ``rows_dropped``, so record loss between stages and slow stages show up per span.
        """
        attributes["stage"] = name
        if dataset is not None:
            attributes["dataset"] = dataset
        if rows_in is None and data is not None:
            rows_in = row_count(data)
        return Stage(self, name, attributes, self._span_context("internal", None), rows_in)

    def _span_arguments(self, kind: Any, new_trace: Any) -> tuple[str, bool | None]:
        """``span()``'s kind as text and new_trace as a bool (None where it has no truth value), the bad one told."""
        if type(kind) is not str:
            self._rejected("span(kind=)", "a kind's name", kind, "read as its text")
            kind = ev.plain_text(kind)
        if new_trace is not None:
            try:
                new_trace = bool(new_trace)
            except Exception:
                self._rejected("span(new_trace=)", "a bool", new_trace, "read as not given")
                new_trace = None
        return kind, new_trace

    def _span_context(self, kind: str, new_trace: bool | None) -> tc.SpanContext:
        parent = _get_ctx()
        if parent is None and _OTEL in _modules:
            parent = tc.otel_current()
        if parent is None:
            fresh = new_trace if new_trace is not None else (not self._run_id or kind in _NEW_TRACE_KINDS)
            if fresh:
                return tc.new_root()
            parent = self._root
        # SpanContext(...) without the named tuple's Python-level __new__: a third of its cost, once per span
        return _new_tuple(tc.SpanContext, (parent.trace_id, _new_span_id(), parent.span_id, False))

    def inject(self, headers: Any = None) -> Any:
        """Add a W3C ``traceparent`` for the current context to ``headers`` (a new dict if None).

        A list is taken as Kafka message headers (``(key, bytes)`` pairs, as confluent-kafka
        and aiokafka send them), so a consumer's :meth:`extract` continues the same trace.
        """
        headers = {} if headers is None else headers
        ctx = self._context()
        value = tc.format_traceparent(ctx, trace_sampled(ctx.trace_id, self.settings.producer.sample_rate))
        try:
            if isinstance(headers, list):
                kept = [(k, v) for k, v in headers if ev.plain_text(k).lower() != tc.TRACEPARENT]
                headers[:] = [*kept, (tc.TRACEPARENT, value.encode("ascii"))]
            else:
                headers[tc.TRACEPARENT] = value
        except Exception:  # 5, a str, a tuple, a list of non-pairs: left as they were
            self._rejected("inject(headers=)", "a dict or a list of (key, value) pairs", headers, "nothing added")
        return headers

    @contextmanager
    def extract(self, headers: Any) -> Iterator[tc.SpanContext | None]:
        """Continue the remote trace named by ``headers``' ``traceparent`` inside the ``with`` block.

        A missing or malformed header continues nothing (counted as ``bad_traceparent`` when present).
        """
        try:
            raw = tc.header_value(headers)
            ctx = tc.parse_traceparent(raw)
        except Exception:  # a carrier of no known shape (a str, 3-tuples), a value that is not text (a list, 5)
            raw, ctx = headers, None
        if ctx is None:
            if raw is not None:
                self._dropped("bad_traceparent")
            yield None
            return
        token = tc.push(ctx)
        try:
            yield ctx
        finally:
            tc.pop(token)

    @property
    def trace_id(self) -> str:
        """The trace id events get outside any span (the run's trace when a run id is set)."""
        return self._context().trace_id

    # -- delivery

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything enqueued so far; True when all of it was acknowledged by the broker in time.

        False means some events are still on their way or in the spool on disk (not lost).
        """
        return self._exporter.force_flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``), stop the worker, keep anything undelivered in the spool. Idempotent."""
        if self._closed:
            return True
        timeout = self.settings.producer.close_timeout_s if timeout is None else timeout
        start = time.monotonic()
        if self._resource_sampler is not None:
            self._resource_sampler.stop()  # first: its last sample is flushed with the rest
        delivered = self.flush(timeout)
        self._closed = True
        self._qmax = 0  # every later event takes the slow path, which counts it as dropped_closed
        self._exporter.stop(max(0.0, timeout - (time.monotonic() - start)))
        _clients.discard(self)
        return delivered

    def stats(self) -> dict[str, Any]:
        """Counters: enqueued, sent, spilled, drained, dropped_* by reason, redacted, sampled_out, ..."""
        with self._exporter.take_lock:  # the queue and what was taken from it, at one moment
            out: dict[str, Any] = dict(self.stats_counter)
            queued = len(self._queue)
        with self._caller_lock:  # added: the caller counts rejected_bad_event too (otel.py)
            for key, n in self._caller_stats.items():
                out[key] = out.get(key, 0) + n
        if self.redactor is not None:
            out["redacted"] = self.redactor.total
            for kind, n in dict(self.redactor.counts).items():  # a copy: the exporter adds kinds
                out[f"redacted_{kind}"] = n
        out["queued"] = queued
        out["enqueued"] = out.get("enqueued", 0) + queued
        out["spool_bytes"] = self._exporter.transport.spool_bytes
        out["dropped"] = sum(v for k, v in out.items() if k.startswith("dropped_"))
        for key in ("enqueued", "sent", "spilled", "drained", "dropped", "sampled_out", "redacted"):
            out.setdefault(key, 0)
        return out

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _validate(config: ProducerConfig) -> None:
    if config.full_policy not in FULL_POLICIES:
        raise ValueError(f"full_policy must be one of {FULL_POLICIES}, got {config.full_policy!r}")
    if not 0.0 <= config.sample_rate <= 1.0:
        raise ValueError(f"sample_rate must lie in [0, 1], got {config.sample_rate!r}")
    # NaN passed every comparison (a resource sampler spinning at 3,000 samples/s, a sender never lingering or
    # never bounded), inf or 1.5 events a batch lost every event, a wait past TIMEOUT_MAX killed its thread
    waits = (
        ("resource_interval_s", 1.0),
        ("batch_linger_ms", 1e3),
        ("close_timeout_s", 1.0),
        ("full_block_timeout_s", 1.0),
    )
    for name, unit in waits:  # close_timeout_s=nan hung close() and the interpreter's exit
        value = getattr(config, name)
        if isinstance(value, bool) or not 0 <= value <= threading.TIMEOUT_MAX * unit:
            raise ValueError(f"{name} must be a number of seconds (ms) from 0, got {value!r}")
    for name in COUNT_FIELDS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")


def default_processors(
    settings: Settings, deny: Iterable[str] = (), allow: Iterable[str] = ()
) -> tuple[list[Processor], Redactor]:
    """The default chain: head sampling by trace, then redaction.

    ``AITRACE_REDACT_KEY`` keys the hash tokens of redacted identifiers, so every process of a
    deployment writes the same token for the same secret (unset: a random key per process).
    """
    redactor = Redactor(deny=deny, allow=allow, hash_key=os.environ.get("AITRACE_REDACT_KEY") or None)
    return [TraceSampler(settings.producer.sample_rate), redactor], redactor


def init(
    service: str | None = None,
    run_id: str | None = None,
    *,
    processors: list[Processor] | None = None,
    deny: Iterable[str] = (),
    allow: Iterable[str] = (),
    labels: Mapping[str, Any] | None = None,
    delivery_listener: DeliveryListener | None = None,
    producer_config: dict[str, Any] | None = None,
    **settings_overrides: Any,
) -> Client:
    """Create the producer client (settings from ``AITRACE_*``, overridden by keywords) and make it the default.

    ``processors`` replaces the default chain (sampling + redaction); ``deny``/``allow`` extend the
    redactor's field-name lists; ``delivery_listener(topic, value, error)`` sees every delivery report.
    """
    global _default
    settings = Settings.from_env(service=service, run_id=run_id, **settings_overrides)
    redactor = None
    if processors is None:
        processors, redactor = default_processors(settings, deny, allow)
    else:
        redactor = next((p for p in processors if isinstance(p, Redactor)), None)
    client = Client(settings, processors, delivery_listener, producer_config, labels, redactor)
    _default = client
    return client


def get_client() -> Client | None:
    """The client the last :func:`init` made (None before)."""
    return _default


def _close_all_at_exit() -> None:
    for client in list(_clients):
        try:
            client.close()
        except Exception:
            log.exception("aitrace: close at exit failed")


def _reinit_in_child() -> None:
    global _clients
    tc.reseed()
    survivors = list(_clients)
    _clients = weakref.WeakSet()
    for client in survivors:
        client._after_fork_in_child()
        if not client._closed:
            _clients.add(client)


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_reinit_in_child)
