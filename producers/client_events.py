"""The client's event methods: logs, the run's lifecycle, checkpoints, data statistics,
inferences, ground truth and resource samples.

:class:`ClientEvents` is mixed into :class:`~aitrace.producers.client.Client`, which provides
what these methods build on: ``_put`` (enqueue one :data:`~aitrace.producers.events.Queued` tuple),
``_context`` (the span context an event belongs to) and the settings.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self

from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc

if TYPE_CHECKING:
    from collections import deque

    from aitrace.producers.config import Settings
    from aitrace.producers.exporter import Exporter

log = logging.getLogger("aitrace")

_time_ns = time.time_ns
_LOG = ev.LOG
_INFERENCE = ev.INFERENCE
_DATA = ev.DATA
_get_ctx = tc._CURRENT.get  # as the client's metric() reads it: one call, no method lookup
_LEVEL_OF = ev.LEVEL_OF
_URGENT_LEVELS = ev.URGENT_LEVELS


class ClientEvents:
    """One method per kind of event; each builds its fields and enqueues them (see the module doc)."""

    if TYPE_CHECKING:  # provided by Client
        settings: Settings
        _resource_sampler: Any
        _put: Callable[[ev.Queued], None]
        _queue: deque[ev.Queued]
        _qmax: int
        _room: Callable[[], bool]
        _exporter: Exporter
        _context: Callable[[], tc.SpanContext]
        _rejected: Callable[[str, str, Any, str], None]

    def log(
        self,
        level: str | int,
        message: str,
        *,
        exc_info: Any = None,
        logger: str | None = None,
        **attributes: Any,
    ) -> None:
        """A log record; ``exc_info=True`` (or an exception) attaches the current exception's stack."""
        # The caller's hot path (issue 11: <= 2 µs): the common spellings, no exception, inlined.
        norm = _LEVEL_OF.get(level) if type(level) is str else None
        if norm is None:
            norm = ev.normalize_level(level)
        exc = None if exc_info is None else _exception(exc_info)
        ctx = _get_ctx()
        if ctx is None:  # outside any span: the client's rule (the run's root, or OpenTelemetry's span)
            ctx = self._context()
        # Flat (events.Queued): the fields in the order of events.LOG_FIELDS after the first five items
        self._put((_LOG, _time_ns() // 1000, ctx, None, norm in _URGENT_LEVELS, norm, message, logger, attributes, exc))

    def run_started(
        self,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        code_version: str | None = None,
        libraries: Iterable[str] = (),
        message: str | None = None,
    ) -> None:
        """Start of a run: hyper-parameters, seed, code version, versions of the ML libraries imported."""
        fields = {
            "status": "STARTED",
            "config": self._mapping("run_started(config=)", config, ev.config_fields),
            "seed": seed,
            "code_version": code_version,
            "library_versions": ev.library_versions(self._names("run_started(libraries=)", libraries)),
            "message": message,
        }
        self._put((ev.RUN, _time_ns() // 1000, self._context(), fields, False))

    def run_finished(self, status: str = "FINISHED", message: str | None = None) -> None:
        """End of a run (FINISHED, FAILED or KILLED); leaves at once."""
        fields = {"status": status, "message": message}
        self._put((ev.RUN, _time_ns() // 1000, self._context(), fields, True))

    @contextmanager
    def run(
        self,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        code_version: str | None = None,
        libraries: Iterable[str] = (),
    ) -> Iterator[Self]:
        """A run as a ``with`` block: STARTED on entry, FINISHED on a normal exit.

        An exception inside is recorded (an error log with its traceback, then FAILED; KILLED for
        ``KeyboardInterrupt``) and re-raised. ``name`` travels as the STARTED event's message.
        Resources are sampled at the start, every ``resource_interval_s`` and at the end (before
        the closing lifecycle event), unless that setting is 0 or :meth:`start_resource_sampler` runs.
        """
        self.run_started(config, seed, code_version, libraries, message=name)
        sampler = self._run_sampler()
        try:
            try:
                yield self
            finally:
                if sampler is not None:
                    sampler.stop()
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED"
            what = f"{type(exc).__qualname__}: {ev.plain_text(exc)}"
            self.log("error", f"run failed: {what}", exc_info=exc, logger="aitrace.run")
            self.run_finished(status=status, message=what)
            raise
        self.run_finished(status="FINISHED", message=name)

    def checkpoint(
        self,
        path: str | os.PathLike[str],
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        **attributes: Any,
    ) -> dict[str, Any]:
        """Record a saved checkpoint: path, size, sha256 (streamed, in the caller) and the metrics it was saved at.

        Sent as an info ``aitrace.LogRecord`` of logger ``aitrace.checkpoint`` whose attributes hold
        ``event="checkpoint"``, ``path``, ``size_bytes``, ``sha256``, ``step`` and one
        ``metrics.<name>`` per metric. A directory is hashed file by file in sorted order. Returns
        those fields. A missing path raises ``FileNotFoundError``.
        """
        import hashlib
        from pathlib import Path

        target = Path(path)
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        digest = hashlib.sha256()
        size = 0
        for file in files:
            if target.is_dir():
                digest.update(str(file.relative_to(target)).encode() + b"\0")
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        info: dict[str, Any] = {
            "event": "checkpoint",
            "path": str(target.resolve()),
            "size_bytes": size,
            "sha256": digest.hexdigest(),
            "step": step,
        }
        info.update({f"metrics.{k}": v for k, v in self._mapping("checkpoint(metrics=)", metrics).items()})
        self.log("info", f"checkpoint saved: {target}", logger="aitrace.checkpoint", **attributes, **info)
        return info

    def data_stats(
        self,
        stage: str,
        dataset: str,
        features: Iterable[Mapping[str, Any]] = (),
        row_count: int = 0,
        class_counts: Mapping[Any, int] | None = None,
        label: str | None = None,
        batch: Any = None,
        rows_dropped: int = 0,
        ingest_delay_ms: float | None = None,
    ) -> None:
        """Statistics of one batch at one pipeline stage (see :func:`aitrace.summarize`)."""
        # No counts: None, not an empty dict (the builders read both alike): every object a queued event holds is
        # one more step towards the next garbage collection, and each full collection walks the whole queue.
        counts = self._mapping("data_stats(class_counts=)", class_counts) or None
        ctx = _get_ctx()
        if ctx is None:
            ctx = self._context()
        queue = self._queue  # Client._put inlined, as in inference(): a pipeline may call this per batch
        if len(queue) >= self._qmax and not self._room():
            return
        # Flat (events.Queued): the fields in the order of events.DATA_FIELDS after the first five items
        try:
            features = list(features)
        except Exception:  # 5, None: the batch's counts still say something
            self._rejected("data_stats(features=)", "an iterable of summaries", features, "sent without them")
            features = []
        queue.append((_DATA, _time_ns() // 1000, ctx, None, False, stage, dataset, features, row_count, counts,
                      label, batch, rows_dropped, ingest_delay_ms))  # fmt: skip
        exporter = self._exporter
        if exporter.sleeping:
            exporter.sleeping = False
            exporter.wake.set()

    def inference(
        self,
        request_id: str,
        model_name: str,
        latency_ms: float,
        model_version: str | None = None,
        status: str = "ok",
        features: Mapping[str, Any] | None = None,
        prediction: Any = None,
        confidence: float | None = None,
        error: Any = None,
        inputs_summary: str | None = None,
        feature_version: str | None = None,
    ) -> None:
        """One prediction served. An ``error`` (or status ``"error"``) leaves at once and is never sampled out.

        ``model_name`` keys the model's series: surrounding whitespace is dropped, no name is
        ``"unknown"`` (counted as ``unnamed_model``), case is kept (:func:`aitrace.producers.events.model_name`).
        """
        try:
            urgent = status == "error" or error is not None
            features = dict(features or {})
        except Exception:  # an array as status or features (no truth value), 5 as features: the record still goes
            status, features, urgent = self._inference_arguments(status, features, error)
        ctx = _get_ctx()
        if ctx is None:
            ctx = self._context()
        queue = self._queue  # Client._put inlined: a model server calls this per request
        if len(queue) >= self._qmax and not self._room():
            return
        # Flat (events.Queued): the fields in the order of events.INFERENCE_FIELDS after the first five items
        queue.append((_INFERENCE, _time_ns() // 1000, ctx, None, urgent, request_id, model_name, model_version,
                      latency_ms, status, features, prediction, confidence, error, inputs_summary,
                      feature_version))  # fmt: skip
        exporter = self._exporter
        if exporter.sleeping or urgent:
            exporter.sleeping = False
            exporter.wake.set()

    def _inference_arguments(self, status: Any, features: Any, error: Any) -> tuple[str, dict[Any, Any], bool]:
        """``inference()``'s status as text and features as a dict ({} where they are not a mapping), told."""
        try:
            error_status = bool(status == "error")
        except Exception:
            self._rejected("inference(status=)", '"ok" or "error"', status, "read as its text")
            status = ev.plain_text(status)
            error_status = status == "error"
        return status, self._mapping("inference(features=)", features), error_status or error is not None

    def _mapping(self, call: str, value: Any, read: Callable[[Any], dict[Any, Any]] = dict) -> dict[Any, Any]:
        """A mapping argument as a dict ({} for None or one that is none: told, the event sent without it)."""
        try:
            return read(value) if value is not None else {}
        except Exception:  # 5, an array, a list of non-pairs
            self._rejected(call, "a mapping", value, "the event is sent without it")
            return {}

    def _names(self, call: str, value: Any) -> tuple[Any, ...]:
        try:
            return tuple(value)
        except Exception:
            self._rejected(call, "an iterable of names", value, "the event is sent without them")
            return ()

    def ground_truth(self, request_id: str, model_name: str, label: Any) -> None:
        """The true label of an earlier prediction, joined to it by ``request_id``.

        ``model_name`` is read as :meth:`inference` reads it."""
        # Flat (events.Queued): the fields in the order of events.GROUND_TRUTH_FIELDS after the first five items
        self._put((ev.GROUND_TRUTH, _time_ns() // 1000, self._context(), None, False, request_id, model_name, label))

    def resources(self) -> None:
        """One resource sample now: process and host CPU, memory, disk and network I/O; GPUs through NVML."""
        from aitrace.producers.resources import sample

        self._put((ev.RESOURCE, _time_ns() // 1000, self._context(), sample(), False))

    def start_resource_sampler(self, interval_s: float = 10.0) -> None:
        """Sample resources now, every ``interval_s`` and at :meth:`close`, on a daemon thread."""
        from aitrace.producers.resources import ResourceSampler

        if self._resource_sampler is None:
            self._resource_sampler = ResourceSampler(self, interval_s)
            self._resource_sampler.start()

    def _run_sampler(self) -> Any:
        """A sampler for one run, or None: switched off (interval 0) or a client-wide one already runs."""
        from aitrace.producers.resources import ResourceSampler

        interval = self.settings.producer.resource_interval_s
        if interval <= 0 or self._resource_sampler is not None:
            return None
        sampler = ResourceSampler(self, interval)
        try:
            sampler.start()
        except RuntimeError as exc:  # no thread to be had: the run goes on unsampled
            log.warning("aitrace: no resource sampling for this run (%s)", exc)
            return None
        return sampler


def _exception(exc_info: Any) -> BaseException | None:
    if exc_info is None or exc_info is False:
        return None
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1]
    return sys.exc_info()[1]
