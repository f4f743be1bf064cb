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

This module runs the workloads and the whole loop and prints the summary; what it starts and
stops is :mod:`aitrace.infra.demo_stack`, what it watches while the workloads run is
:mod:`aitrace.infra.demo_progress`, and what it expects to find, and the verdict, is
:mod:`aitrace.infra.demo_findings`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aitrace.infra.demo_findings import (
    DIVERGE_AT,
    RUN_DIVERGE,
    RUN_HEALTHY,
    Expectation,
    Verdict,
    describe,
    expectations,
    judge,
    merge_alerts,
)
from aitrace.infra.demo_progress import AlertCollector, IndexCounter, Progress
from aitrace.infra.demo_stack import DemoError, StackHandle, Worker, demo_lock, start_stack, stop_stack
from aitrace.infra.services import KEEP_LOGS, LOG_DIR
from aitrace.producers.config import SearchConfig, Settings
from elastic_transport import ApiError, TransportError

DEFAULT_TIMEOUT_S = 170.0
OPTIONAL_GRACE_S = 10.0  # after the required findings, how long optional ones may still arrive
PRODUCER_COUNTERS = ("enqueued", "sent", "spilled", "dropped")
SETTLED_S = 4.0  # the index counts as caught up when its event count held still this long
# import name -> distribution, for the workloads (the `demo` extra)
WORKLOAD_LIBRARIES = {"torch": "torch", "sklearn": "scikit-learn", "uvicorn": "uvicorn", "starlette": "starlette"}


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
def _client(service: str, produced: Counter[str], settings: Settings, **kwargs: Any) -> Iterator[Any]:
    """A producer client for one workload; closed (flushed) afterwards, its counters added up."""
    import aitrace

    client = aitrace.init(service=service, kafka_bootstrap=settings.kafka.kafka_bootstrap, **kwargs)
    try:
        yield client
    finally:
        client.flush(timeout=10)
        client.close()
        stats = client.stats()
        produced.update({k: int(stats.get(k, 0)) for k in PRODUCER_COUNTERS})


def run_workloads(progress: Progress, settings: Settings) -> WorkloadReport:
    """The three workloads, one after the other, through the public producer API.

    Their clients get the stack's broker as ``aitrace.init(kafka_bootstrap=...)`` would in a
    user's script: a library client does not look for a recorded dev stack by itself.
    """
    from aitrace.infra import workload_inference as wi
    from aitrace.infra.workload_pipeline import PipelineConfig, run_pipeline
    from aitrace.infra.workload_training import TrainingConfig, train

    report = WorkloadReport()
    progress.set_phase(f"training {RUN_DIVERGE} (lr x10 at step {DIVERGE_AT})")
    with _client("trainer", report.produced, settings, run_id=RUN_DIVERGE) as client:
        result = train(client, TrainingConfig(RUN_DIVERGE, diverge_at=DIVERGE_AT))
    report.diverged_at, report.diverge_status = result.first_nonfinite_step, result.status
    progress.set_phase(f"training {RUN_HEALTHY}")
    with _client("trainer", report.produced, settings, run_id=RUN_HEALTHY) as client:
        report.healthy_status = train(client, TrainingConfig(RUN_HEALTHY)).status
    progress.set_phase("data pipeline over the wine table")
    with _client("data-pipeline", report.produced, settings) as client:
        report.drifted_batches = run_pipeline(client, PipelineConfig()).drifted_batches
    config = wi.InferenceConfig()

    def on_phase(phase: str) -> None:
        report.phase_started_us[phase] = time.time_ns() // 1000
        progress.set_phase(f"inference: {phase} phase")

    with (
        _client("model-server", report.produced, settings) as model,
        _client("feature-service", report.produced, settings) as features,
        _client("loadgen", report.produced, settings) as loadgen,
    ):
        outcome = wi.run_inference(model, features, loadgen, config, on_phase=on_phase)
        report.requests = outcome.status_counts()
    return report


# =========================================================================== the run


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards for exploration")
    parser.add_argument(
        "--timeout",
        type=_seconds,
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


def _seconds(text: str) -> float:
    """``--timeout``: a positive number of seconds. 0 or less judged the findings as soon as the
    workloads ended and failed on faults still on their way; NaN never ended the wait."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


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
    state_dir = stack.state_dir(args.state_dir).resolve()
    try:
        with demo_lock(state_dir):
            return _run_locked(state_dir, args)
    except DemoError as exc:  # another demo holds the lock, or the state dir is unusable
        print(f"aitrace demo: {exc}", file=sys.stderr)
        return 1


def _run_locked(state_dir: Path, args: argparse.Namespace) -> int:
    from aitrace.infra import stack

    out = sys.stdout
    started = time.monotonic()
    since_us = time.time_ns() // 1000  # event time: what this run produces is at or after it
    deadline = started + args.timeout
    out.write("aitrace demo: starting the embedded stack\n")
    try:
        handle = start_stack(state_dir)
    except stack.StackError as exc:
        print(f"aitrace demo: {exc}", file=sys.stderr)
        return 1
    code = 1  # unless the run gets to its verdict
    try:
        code = _run_with_stack(handle, state_dir, deadline, started, since_us, out, args)
    except DemoError as exc:
        print(f"aitrace demo: {exc}", file=sys.stderr)
    finally:
        if args.keep:
            out.write(
                f"the stack keeps running (--keep); stop it with `{aitrace_command()} down` (state in {state_dir})\n"
            )
        else:
            stop_stack(handle, state_dir, out)
    if code != 0:
        print(
            f"aitrace demo: the broker's, search server's and worker's logs are in {state_dir / LOG_DIR} "
            f"(the newest {KEEP_LOGS} of each are kept)",
            file=sys.stderr,
        )
    return code


def aitrace_command() -> str:
    """How this shell calls aitrace again: ``aitrace`` where that is this one, else the path of this environment's
    script (after ``python3.11 run.py demo`` none is on PATH: ``.venv/bin/aitrace``, and the demo's hints failed
    as written)."""
    script = Path(sys.executable).with_name("aitrace")
    found = shutil.which("aitrace")
    if not script.exists() or (found is not None and Path(found).resolve() == script.resolve()):
        return "aitrace"
    here = Path.cwd()
    if here != Path(here.anchor) and script.is_relative_to(here):  # (from / the whole path reads better)
        return shlex.quote(str(script.relative_to(here)))
    return shlex.quote(str(script))


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
        me = aitrace_command()
        out.write(
            "  note: the stack was already running. The detectors carry what they saw before (an earlier\n"
            "  demo's series go on), so a fault that repeats one already open may not raise a new alert;\n"
            f"  for a clean run: `{me} down`, then `{me} demo`.\n"
        )
    for role in handle.external_roles:
        out.write(
            f"  {role}: external ({settings.kafka.kafka_bootstrap if role == 'kafka' else settings.search.es_url})\n"
        )
    out.write(f"  kafka {settings.kafka.kafka_bootstrap}, search {settings.search.es_url}\n")
    try:
        installed, _ = install(settings.search)
    except (SearchUnavailable, ApiError, TransportError, OSError) as exc:
        raise DemoError(f"cannot install the index templates at {settings.search.es_url}: {exc}") from exc
    out.write(f"  installed {len(installed)} index template(s)\n")
    worker = Worker(state_dir).start(dict(os.environ))
    out.write(f"  worker started (pid {worker.process.pid if worker.process else '?'}, log {worker.log_path})\n")
    since = iso_time(since_us)
    counter = IndexCounter(settings.search, since)
    progress = Progress(counter, out).start()
    collector = AlertCollector(settings, progress.alert, since_us).start()
    try:
        report = run_workloads(progress, settings)
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
        written = _write_report(settings.search, Path(args.report), since, out) if args.report else None
        reused = not handle.started_roles  # stop_stack leaves such a stack running too
        elapsed = time.monotonic() - started
        _summary(
            out, counter, collector, verdict, report, elapsed, keep=args.keep or reused, reused=reused, page=written
        )
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


def _write_report(search: SearchConfig, path: Path, since: str, out: TextIO) -> Path | None:
    """The report of what this demo run indexed, written while the search server still runs."""
    from aitrace.infra import report, report_page
    from aitrace.sinks.es import make_sync_client

    try:
        # Inside the try: a search server gone by now (SearchUnavailable, an OSError) was a traceback.
        es = make_sync_client(search)
        try:
            data = report.collect(es, prefix=search.index_prefix, since=since)
            report.write_atomic(path, report_page.render(data))
        finally:
            es.close()
    except (report.ReportError, ApiError, TransportError, OSError) as exc:
        out.write(f"could not write the report {path}: {exc}\n")
        return None
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
    reused: bool = False,
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
    me = aitrace_command()
    w("\nlook further" + (":\n" if keep else f" (on the demo's data: run `{me} demo --keep` first):\n"))
    w(f"  {me} search 'aitrace.run_id:{RUN_DIVERGE} AND aitrace.metric.name:grad_norm'\n")
    w(f"  {me} trace {trace_id or '<trace id>'}        # the slowest request, across three services\n")
    w(f"  {me} alerts --from-beginning\n")
    w(f"  {me} report -o report.html       # curves, drift, latency, alert table in one page\n")
    w(f"\n{verdict.headline()}\n")
    if reused and not verdict.ok:
        w(f"  the stack was already running: {RUN_HEALTHY} and the others went on from an earlier demo's series;\n")
        w(f"  for a clean run: `{me} down`, then `{me} demo`\n")
