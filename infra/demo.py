"""``aitrace demo``: the whole loop on real workloads, with the faults a team hunts for.

1. Start the embedded stack (Tansu + osmem-server) unless ``AITRACE_KAFKA_BOOTSTRAP`` /
   ``AITRACE_ES_URL`` point at an external one; install the index templates.
2. Start one processor worker (``aitrace worker`` as a child process).
3. Run the workloads through the public producer API (``aitrace.init``):
   a PyTorch run whose learning rate jumps until gradients explode (``run-diverge``), the
   same run without the jump (``run-healthy``), a data pipeline whose late batches carry a
   shifted feature, missing values and an unseen label, and two traced ASGI services under
   load whose inputs drift and whose latency spikes, with a few malformed requests.
4. While it runs, show what runs, indexed events/s and the alerts as they arrive (tailing
   ``aitrace.alerts``); at the end, a summary of what the pipeline found against what was
   injected. The exit code is 0 only when every injected fault was found and the healthy
   run raised nothing.

``--keep`` leaves the stack running for ``aitrace search`` / ``trace`` / ``report``;
otherwise the demo stops what it started (never a stack that was running before).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from aitrace.producers.config import Settings
from elastic_transport import ApiError, TransportError

DEFAULT_TIMEOUT_S = 170.0
WORKER_STOP_GRACE_S = 15.0
OPTIONAL_GRACE_S = 10.0  # after the required findings, how long optional ones may still arrive
PRODUCER_COUNTERS = ("enqueued", "sent", "spilled", "dropped")
SETTLED_S = 4.0  # the index counts as caught up when its event count held still this long
DIVERGE_AT = 150
RUN_DIVERGE, RUN_HEALTHY = "run-diverge", "run-healthy"
# import name -> distribution, for the workloads (the `demo` extra)
WORKLOAD_LIBRARIES = {"torch": "torch", "sklearn": "scikit-learn", "uvicorn": "uvicorn", "starlette": "starlette"}

Alert = dict[str, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DemoError(RuntimeError):
    """The demo could not run (stack, setup, worker); the message says what to do."""


# =========================================================================== expectations


@dataclass(frozen=True)
class Expectation:
    """One injected fault and how to recognize the alert that finds it."""

    name: str
    match: Callable[[Alert], bool]
    required: bool = True


def _is(alert: Alert, **fields: Any) -> bool:
    return all(alert.get(k) == v if not isinstance(v, tuple) else alert.get(k) in v for k, v in fields.items())


def expectations(
    shifted_feature: str,
    missing_feature: str,
    model: str,
    drifted_input: str,
    *,
    drift_since_us: int = 0,
    slow_since_us: int = 0,
) -> list[Expectation]:
    """What the workloads inject, as alert predicates (field names of ``aitrace.Alert``).

    Inference findings count only when the incident reaches into the phase that injected the
    fault (``*_since_us``, event time): a blip during the healthy baseline is not the spike.
    """
    return [
        Expectation(
            f"divergence / exploding gradients on {RUN_DIVERGE} after step {DIVERGE_AT}",
            lambda a: (
                _is(a, run_id=RUN_DIVERGE, kind=("anomaly", "training"), feature=("loss", "grad_norm"))
                and (a.get("step") is None or a["step"] >= DIVERGE_AT)
            ),
        ),
        Expectation(
            f"drift of {shifted_feature!r} in the data pipeline",
            lambda a: _is(a, kind="drift", feature=shifted_feature, model=None),
        ),
        Expectation(
            f"missing values of {missing_feature!r} in the data pipeline",
            lambda a: _is(a, kind="data_quality", feature=missing_feature, model=None),
        ),
        Expectation(
            "the label value never seen before",
            lambda a: _is(a, kind="data_quality", detector="unseen_label", model=None),
        ),
        Expectation(
            f"latency spike of model {model}",
            lambda a: _is(a, model=model, kind="anomaly", feature="latency") and a.get("last_seen", 0) >= slow_since_us,
        ),
        Expectation(
            f"input drift of {drifted_input!r} for model {model}",
            lambda a: (
                _is(a, model=model, kind="drift", feature=drifted_input) and a.get("last_seen", 0) >= drift_since_us
            ),
        ),
        Expectation(
            f"error rate of model {model} (a few malformed requests)",
            lambda a: _is(a, model=model, kind="error_rate"),
            required=False,
        ),
    ]


@dataclass
class Verdict:
    """The outcome against the expectations: found alerts per expectation, false alarms."""

    found: dict[str, Alert]
    missed: list[Expectation]
    false_alarms: list[Alert]

    @property
    def ok(self) -> bool:
        return not self.false_alarms and not any(e.required for e in self.missed)


def judge(alerts: dict[str, Alert], expected: list[Expectation]) -> Verdict:
    """Match the latest version of every alert against what was injected."""
    ordered = sorted(alerts.values(), key=lambda a: a.get("first_seen") or 0)
    found: dict[str, Alert] = {}
    missed: list[Expectation] = []
    for expectation in expected:
        hit = next((a for a in ordered if expectation.match(a)), None)
        if hit is None:
            missed.append(expectation)
        else:
            found[expectation.name] = hit
    false_alarms = [a for a in ordered if a.get("run_id") == RUN_HEALTHY]
    return Verdict(found, missed, false_alarms)


def describe(alert: Alert) -> str:
    """One line for a person: severity, title, and where it points."""
    where = [f"{k} {alert[k]}" for k in ("run_id", "model", "feature") if alert.get(k)]
    if alert.get("step") is not None:
        where.append(f"step {alert['step']}")
    statistic = alert.get("statistic")
    stat = f", statistic {statistic:.3g}" if isinstance(statistic, float) else ""
    return f"[{alert.get('severity')}] {alert.get('title')} ({', '.join(where)}{stat})"


# =========================================================================== alerts and progress


def alert_from_document(doc: dict[str, Any]) -> Alert | None:
    """An alerts-index document (see ``aitrace.sinks.documents.alert_document``) as an Alert dict."""
    body = (doc.get("aitrace") or {}).get("alert")
    if not isinstance(body, dict) or "id" not in body:
        return None

    def micros(iso: str | None) -> int:
        if not iso:
            return 0
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        return (moment - _EPOCH) // timedelta(microseconds=1)  # exact: no float on the way

    return {
        "alert_id": body["id"],
        "version": body.get("version", 1),
        "kind": body.get("kind"),
        "detector": body.get("detector"),
        "severity": body.get("severity"),
        "state": body.get("state"),
        "title": body.get("title"),
        "series": body.get("series"),
        "service": (doc.get("service") or {}).get("name"),
        "run_id": (doc.get("aitrace") or {}).get("run_id"),
        "model": body.get("model"),
        "feature": body.get("feature"),
        "step": body.get("step"),
        "first_seen": micros(doc.get("@timestamp")),
        "last_seen": micros(body.get("last_seen")),
        "statistic": body.get("statistic"),
        "score": body.get("score"),
    }


def merge_alerts(*sources: dict[str, Alert]) -> dict[str, Alert]:
    """One view of several: per alert id, the highest version seen anywhere."""
    merged: dict[str, Alert] = {}
    for source in sources:
        for alert_id, alert in source.items():
            if alert_id not in merged or alert.get("version", 1) > merged[alert_id].get("version", 1):
                merged[alert_id] = alert
    return merged


class AlertCollector:
    """Tails the alerts topic from the beginning in a thread; keeps the latest version per alert.

    Only alerts about events from ``since_us`` on count: on a stack kept from an earlier demo
    the topic still holds that run's alerts, which say nothing about this one.
    """

    def __init__(self, settings: Settings, on_new: Callable[[Alert], None], since_us: int = 0) -> None:
        from aitrace.sinks.alerts import AlertStream

        self.since_us = since_us
        self.alerts: dict[str, Alert] = {}
        self._lock = threading.Lock()
        self._on_new = on_new
        self._stream = AlertStream(settings, from_beginning=True, poll_timeout=0.2)
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

    def __init__(self, settings: Settings, since: str | None = None) -> None:
        from aitrace.sinks.es import make_sync_client

        self.prefix = settings.index_prefix
        self.es = make_sync_client(settings)
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
            self.out.write(("\r\033[K" if self.out.isatty() else "") + line + "\n")
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
                    self.out.write("\r\033[K" + line[: shutil.get_terminal_size().columns - 1])
                else:
                    self.out.write(line + "\n")
                self.out.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.out.isatty():
            self.out.write("\r\033[K")


# =========================================================================== stack and worker


@dataclass
class StackHandle:
    """What the demo started, so that it stops exactly that."""

    settings: Settings
    started_roles: list[str]
    external_roles: list[str]


def start_stack(state_dir: Path) -> StackHandle:
    """Start the embedded services that are neither running nor external; return the settings."""
    from aitrace.infra import stack

    # Everything reads the stack record from here: this process (producers, search client) and the worker.
    os.environ["AITRACE_STATE_DIR"] = str(state_dir)
    running_before = {s.role for s in stack.status(state_dir) if s.kind == "embedded" and s.alive}
    state = stack.up(state_dir)
    recorded = set(state.get("services", {}))
    external = sorted(state.get("external", {}) or {})
    settings = Settings.from_env()
    return StackHandle(settings, sorted(recorded - running_before), external)


def stop_stack(handle: StackHandle, state_dir: Path, out: TextIO) -> None:
    """Stop the services the demo started; a stack that was already up stays up."""
    from aitrace.infra import stack

    if not handle.started_roles:
        return
    recorded = set(stack.read_state(state_dir).get("services", {}))
    if recorded - set(handle.started_roles):
        out.write("the embedded stack was partly running before the demo: leaving it up (`aitrace down` stops it)\n")
        return
    for line in stack.down(state_dir):
        out.write(f"  {line}\n")


class Worker:
    """``aitrace worker`` as a child process, logging to a file under the state directory."""

    def __init__(self, state_dir: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.log_path = state_dir / "logs" / f"demo-worker-{tag}.log"
        self.argv = [
            sys.executable,
            "-m",
            "aitrace.infra.cli",
            "worker",
            "--app-id",
            f"aitrace-demo-{tag}",
            "--workers-dir",
            str(state_dir / f"demo-worker-{tag}"),
            "--raw-metrics",  # a training run of seconds: every point, not one rollup window
            "--idle-timeout-s",
            "5",
            "--stats-interval-s",
            "10",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> Worker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        return self

    def check(self) -> None:
        """Raise DemoError when the worker died (with the end of its log)."""
        if self.process is not None and self.process.poll() is not None:
            raise DemoError(f"the worker exited with code {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(WORKER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# =========================================================================== workloads


@dataclass
class WorkloadReport:
    """What the workloads did, for the summary."""

    diverged_at: int | None = None
    diverge_status: str = ""
    healthy_status: str = ""
    drifted_batches: list[str] = field(default_factory=list)
    requests: dict[int, int] = field(default_factory=dict)
    produced: Counter[str] = field(default_factory=Counter)  # producer counters, all clients together
    phase_started_us: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def _client(service: str, produced: Counter[str], **kwargs: Any) -> Iterator[Any]:
    """A producer client for one workload; closed (flushed) afterwards, its counters added up."""
    import aitrace

    client = aitrace.init(service=service, **kwargs)
    try:
        yield client
    finally:
        client.flush(timeout=10)
        client.close()
        stats = client.stats()
        produced.update({k: int(stats.get(k, 0)) for k in PRODUCER_COUNTERS})


def run_workloads(progress: Progress) -> WorkloadReport:
    """The three workloads, one after the other, through the public producer API."""
    from aitrace.infra import workload_inference as wi
    from aitrace.infra.workload_pipeline import PipelineConfig, run_pipeline
    from aitrace.infra.workload_training import TrainingConfig, train

    report = WorkloadReport()
    progress.set_phase(f"training {RUN_DIVERGE} (lr x10 at step {DIVERGE_AT})")
    with _client("trainer", report.produced, run_id=RUN_DIVERGE) as client:
        result = train(client, TrainingConfig(RUN_DIVERGE, diverge_at=DIVERGE_AT))
    report.diverged_at, report.diverge_status = result.first_nonfinite_step, result.status
    progress.set_phase(f"training {RUN_HEALTHY}")
    with _client("trainer", report.produced, run_id=RUN_HEALTHY) as client:
        report.healthy_status = train(client, TrainingConfig(RUN_HEALTHY)).status
    progress.set_phase("data pipeline over the wine table")
    with _client("data-pipeline", report.produced) as client:
        report.drifted_batches = run_pipeline(client, PipelineConfig()).drifted_batches
    config = wi.InferenceConfig()

    def on_phase(phase: str) -> None:
        report.phase_started_us[phase] = time.time_ns() // 1000
        progress.set_phase(f"inference: {phase} phase")

    with (
        _client("model-server", report.produced) as model,
        _client("feature-service", report.produced) as features,
        _client("loadgen", report.produced) as loadgen,
    ):
        outcome = wi.run_inference(model, features, loadgen, config, on_phase=on_phase)
        report.requests = outcome.status_counts()
    return report


# =========================================================================== the run


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards for exploration")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"give up waiting for the pipeline's findings after S seconds in all (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--state-dir", default=None, help="where the stack record lives (default ./.aitrace)")
    parser.add_argument(
        "--report",
        default="report.html",
        metavar="PATH",
        help="write the HTML report of the run here before the stack stops (default report.html; '' skips it)",
    )


def missing_libraries() -> list[str]:
    """Distributions the workloads need that are not installed (looked up without importing them)."""
    return [dist for module, dist in WORKLOAD_LIBRARIES.items() if importlib.util.find_spec(module) is None]


def run(name: str, args: argparse.Namespace) -> int:
    from aitrace.infra import stack

    missing = missing_libraries()
    if missing:
        print(
            f"aitrace demo: the workloads need {', '.join(missing)}; install them with `pip install 'aitrace[demo]'`",
            file=sys.stderr,
        )
        return 1
    out = sys.stdout
    started = time.monotonic()
    since_us = time.time_ns() // 1000  # event time: what this run produces is at or after it
    deadline = started + args.timeout
    state_dir = stack.state_dir(args.state_dir).resolve()
    out.write("aitrace demo: starting the embedded stack\n")
    try:
        handle = start_stack(state_dir)
    except stack.StackError as exc:
        print(f"aitrace demo: {exc}", file=sys.stderr)
        return 1
    try:
        return _run_with_stack(handle, state_dir, deadline, started, since_us, out, args)
    except DemoError as exc:
        print(f"aitrace demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            out.write(f"the stack keeps running (--keep); stop it with `aitrace down` (state in {state_dir})\n")
        else:
            stop_stack(handle, state_dir, out)


def _run_with_stack(
    handle: StackHandle,
    state_dir: Path,
    deadline: float,
    started: float,
    since_us: int,
    out: TextIO,
    args: argparse.Namespace,
) -> int:
    from aitrace.sinks.documents import iso_time
    from aitrace.sinks.es import SearchUnavailable
    from aitrace.sinks.setup import install

    settings = handle.settings
    if not handle.started_roles:
        out.write(
            "  note: the stack was already running. The detectors carry what they saw before (an earlier\n"
            "  demo's series go on), so a fault that repeats one already open may not raise a new alert;\n"
            "  for a clean run: `aitrace down`, then `aitrace demo`.\n"
        )
    for role in handle.external_roles:
        out.write(f"  {role}: external ({settings.kafka_bootstrap if role == 'kafka' else settings.es_url})\n")
    out.write(f"  kafka {settings.kafka_bootstrap}, search {settings.es_url}\n")
    try:
        installed, _ = install(settings)
    except (SearchUnavailable, ApiError, TransportError, OSError) as exc:
        raise DemoError(f"cannot install the index templates at {settings.es_url}: {exc}") from exc
    out.write(f"  installed {len(installed)} index template(s)\n")
    worker = Worker(state_dir).start(dict(os.environ))
    out.write(f"  worker started (pid {worker.process.pid if worker.process else '?'}, log {worker.log_path})\n")
    since = iso_time(since_us)
    counter = IndexCounter(settings, since)
    progress = Progress(counter, out).start()
    collector = AlertCollector(settings, progress.alert, since_us).start()
    try:
        report = run_workloads(progress)
        expected = expectations(
            "alcohol",
            "magnesium",
            "cancer-classifier",
            "mean_radius",
            drift_since_us=report.phase_started_us.get("drift", 0),
            slow_since_us=report.phase_started_us.get("slow", 0),
        )
        worker.check()
        progress.set_phase("waiting for the pipeline's findings")
        verdict = _wait(collector, expected, worker, counter, deadline)
        progress.stop()
        written = _write_report(settings, Path(args.report), since, out) if args.report else None
        _summary(out, counter, collector, verdict, report, time.monotonic() - started, keep=args.keep, page=written)
        if collector.error is not None:
            out.write(f"the alert tail failed: {collector.error}\n")
        return 0 if verdict.ok else 1
    finally:
        progress.stop()
        collector.stop()
        worker.stop()
        counter.close()


def _wait(
    collector: AlertCollector, expected: list[Expectation], worker: Worker, counter: IndexCounter, deadline: float
) -> Verdict:
    """Wait for the findings, then for the index to settle, so the summary and report are whole.

    Ends at the deadline, or once every required fault was found, optional ones had
    ``OPTIONAL_GRACE_S`` more to show up, and the indexed event and trace counts held still
    for ``SETTLED_S`` (the worker has caught up).
    """
    required_met: float | None = None
    last_count, still_since = -1, time.monotonic()
    while True:
        now = time.monotonic()
        # Both views: the topic tail shows alerts first, the index catches any record the tail missed.
        verdict = judge(merge_alerts(collector.snapshot(), counter.alerts()), expected)
        count = counter.count("events") + counter.count("traces")
        if count != last_count:
            last_count, still_since = count, now
        if required_met is None and not any(e.required for e in verdict.missed):
            required_met = now
        settled = now - still_since >= SETTLED_S
        optional_done = not verdict.missed or (required_met is not None and now - required_met >= OPTIONAL_GRACE_S)
        if now >= deadline or (required_met is not None and optional_done and settled):
            return verdict
        worker.check()
        time.sleep(0.5)


def _write_report(settings: Settings, path: Path, since: str, out: TextIO) -> Path | None:
    """The report of what this demo run indexed, written while the search server still runs."""
    from aitrace.infra import report, report_page
    from aitrace.sinks.es import make_sync_client

    es = make_sync_client(settings)
    try:
        data = report.collect(es, prefix=settings.index_prefix, since=since)
        report.write_atomic(path, report_page.render(data))
    except (report.ReportError, ApiError, TransportError, OSError) as exc:
        out.write(f"could not write the report {path}: {exc}\n")
        return None
    finally:
        es.close()
    return path


def _summary(
    out: TextIO,
    counter: IndexCounter,
    collector: AlertCollector,
    verdict: Verdict,
    report: WorkloadReport,
    elapsed: float,
    *,
    keep: bool,
    page: Path | None = None,
) -> None:
    alerts = merge_alerts(collector.snapshot(), counter.alerts())
    events = counter.count("events")
    traces = counter.count("traces")
    incomplete = counter.count("traces", {"term": {"aitrace.trace.complete": False}})
    w = out.write
    w(f"\naitrace demo: summary after {elapsed:.0f} s\n")
    produced = report.produced
    lost = f"{produced['dropped']:,} dropped, {produced['spilled']:,} spilled to disk"
    w(f"  events produced    {produced['enqueued']:>8,}   ({lost})\n")
    w(f"  documents indexed  {events:>8,}   (one per event; one per metric of a training step)\n")
    w(f"  traces assembled   {traces:>8,}   ({incomplete:,} incomplete)\n")
    w(f"  alerts raised      {len(alerts):>8,}\n")
    w(f"  requests served    {sum(report.requests.values()):>8,}   by status {dict(sorted(report.requests.items()))}\n")
    w(
        f"  {RUN_DIVERGE}: {report.diverge_status}, first non-finite loss at step {report.diverged_at}; "
        f"{RUN_HEALTHY}: {report.healthy_status}\n"
    )
    w("\nwhat was injected, and what the pipeline found:\n")
    for name, alert in verdict.found.items():
        w(f"  found   {name}\n          {describe(alert)}\n")
    for expectation in verdict.missed:
        label = "MISSED " if expectation.required else "missed "
        note = "" if expectation.required else " (not required)"
        w(f"  {label} {expectation.name}{note}\n")
    if verdict.false_alarms:
        for alert in verdict.false_alarms:
            w(f"  FALSE ALARM on {RUN_HEALTHY}: {describe(alert)}\n")
    else:
        w(f"  clean   no alert on {RUN_HEALTHY}\n")
    trace_id = counter.longest_trace()
    if page is not None:
        w(f"\nthe pictures: {page} (training curves, drift, latency; opens offline in any browser)\n")
    w("\nlook further" + (":\n" if keep else " (on the demo's data: run `aitrace demo --keep` first):\n"))
    w(f"  aitrace search 'aitrace.run_id:{RUN_DIVERGE} AND aitrace.metric.name:grad_norm'\n")
    w(f"  aitrace trace {trace_id or '<trace id>'}        # the slowest request, across three services\n")
    w("  aitrace alerts --from-beginning\n")
    w("  aitrace report -o report.html       # curves, drift, latency, alert table in one page\n")
    w(
        f"\n{'OK' if verdict.ok else 'FAILED'}: "
        + ("every injected fault was found" if verdict.ok else "the pipeline did not find everything injected")
        + "\n"
    )
