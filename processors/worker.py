"""``aitrace worker``: run one processor worker (a Faust worker) in this process.

Start as many as there are partitions to share the load; they form one consumer group
(``--app-id``). Same app as ``faust -A aitrace.processors.app worker -l info``, whose settings
come from ``AITRACE_*`` / ``AITRACE_WORKER_*`` variables; here flags override them.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from dataclasses import fields
from typing import Any

from aitrace.processors.heartbeat import FRESH_INTERVALS, heartbeat_path, heartbeat_problem
from aitrace.processors.options import WorkerOptions
from aitrace.producers.config import Settings
from confluent_kafka import KafkaException

log = logging.getLogger(__name__)

_HELP = {
    "app_id": "Faust app id = consumer group; workers with the same id share the partitions",
    "partitions": "partitions of the input, series and tick topics (created with this count when missing)",
    "index": "index documents into the search server (--no-index: decode, correlate and detect only)",
    "raw_metrics": "index every metric point instead of per-window rollups for fast series",
    "max_raw_rate": "points per second of one series above which it is rolled up",
    "rollup_window_s": "rollup window length in seconds",
    "idle_timeout_s": "close a trace as incomplete after this many seconds without events",
    "grace_s": "forget a closed trace this many seconds after its last change",
    "tick_interval_s": "how often idle traces are looked for",
    "stats_interval_s": "how often the stats line is logged",
    "anomaly_threshold": "anomaly score (0..1) from which a point is a finding",
    "drift_window": "points per reference/current window for inference feature drift",
    "session_timeout_s": "Kafka consumer session timeout (Tansu joins much faster with 10 than Faust's default)",
    "commit_interval_s": "how often acknowledged offsets are committed",
    "batch_records": "input records (or series chunks) processed together, indexed in one bulk request",
    "batch_wait_s": "longest wait for a batch to fill, in seconds (latency bound)",
    "data_dir": "Faust's local data directory (the tables themselves are restored from their changelogs)",
    "web_port": "port of Faust's web server on 127.0.0.1 (0: off)",
    "warm_up": "load the detectors' compiled kernels before reading the first record (not in the event loop)",
    "run_idle_s": "drop a training run's detector state after this many seconds without data (0: never)",
    "ended_run_idle_s": "the same for a run whose FINISHED, FAILED or KILLED was seen (0: never)",
    "model_idle_s": "the same for a model in service; back later, it starts a fresh drift reference (0: never)",
    "data_idle_s": "the same for a data pipeline stage; back later, it starts a fresh reference (0: never)",
    "expiry_interval_s": "how often each series partition is swept for idle entities (0: never)",
}


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags for every :class:`WorkerOptions` field plus the broker / search addresses."""
    parser.add_argument("--kafka", dest="kafka_bootstrap", help="Kafka bootstrap servers (AITRACE_KAFKA_BOOTSTRAP)")
    parser.add_argument("--es-url", dest="es_url", help="Elasticsearch / OpenSearch-API URL (AITRACE_ES_URL)")
    parser.add_argument("--topic-prefix", dest="topic_prefix", help="topic name prefix (AITRACE_TOPIC_PREFIX)")
    parser.add_argument("--index-prefix", dest="index_prefix", help="index name prefix (AITRACE_INDEX_PREFIX)")
    parser.add_argument("--workers-dir", dest="data_dir", help=_HELP["data_dir"])
    parser.add_argument("-l", "--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    for f in fields(WorkerOptions):
        if f.name == "data_dir":
            continue
        # a field added to WorkerOptions without a help line still gets its flag (not a KeyError at start)
        text = _HELP.get(f.name, f.name.replace("_", " "))
        flag = "--" + f.name.replace("_", "-")
        default = getattr(WorkerOptions, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=type(default), default=None, help=f"{text} [{default}]")
    health = parser.add_argument_group("health check (docker-compose.yml's healthcheck)")
    health.add_argument(
        "--health",
        action="store_true",
        help="run no worker: exit 0 when the heartbeat of the worker with these options is fresh, 1 and why if not",
    )
    health.add_argument(
        "--health-max-age",
        type=float,
        metavar="SECONDS",
        help=f"oldest heartbeat that counts as fresh (default: {FRESH_INTERVALS} x --stats-interval-s)",
    )


def options_from_args(args: argparse.Namespace) -> tuple[Settings, WorkerOptions]:
    """Settings and worker options: environment first, flags over it."""
    settings = Settings.from_env(
        dev_stack=True,
        kafka_bootstrap=getattr(args, "kafka_bootstrap", None),
        es_url=getattr(args, "es_url", None),
        topic_prefix=getattr(args, "topic_prefix", None),
        index_prefix=getattr(args, "index_prefix", None),
    )
    overrides: dict[str, Any] = {f.name: getattr(args, f.name, None) for f in fields(WorkerOptions)}
    options = WorkerOptions.from_env(**overrides)
    _check_ranges(options)
    return settings, options


# Options whose value must be above 0 (intervals a loop waits or a window spans); every other number >= 0.
_POSITIVE = frozenset(
    {"partitions", "batch_records", "drift_window", "stats_interval_s", "tick_interval_s", "rollup_window_s"}
    | {"commit_interval_s", "session_timeout_s", "max_raw_rate"}
)


def _check_ranges(options: WorkerOptions) -> None:
    """A value out of its range is a usage error (NaN passed every comparison; a port past 65535 ended in a
    Faust traceback; a threshold of 5 flagged nothing; a drift window of 1 failed every chunk with features)."""
    for f in fields(WorkerOptions):
        value = getattr(options, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        kind = "positive" if f.name in _POSITIVE else "non-negative"
        if not math.isfinite(value) or value < 0 or (f.name in _POSITIVE and value <= 0):
            raise ValueError(f"{_named(f.name)} must be a {kind} number, got {value}")
    if not 0 < options.anomaly_threshold <= 1:
        raise ValueError(f"{_named('anomaly_threshold')} must be in (0, 1], got {options.anomaly_threshold}")
    if options.web_port > 65535:
        raise ValueError(f"{_named('web_port')} must be 0 (off) or a port up to 65535, got {options.web_port}")
    if options.drift_window < 2:  # a drift test compares windows of two points or more
        raise ValueError(f"{_named('drift_window')} must be 2 or more, got {options.drift_window}")


def _named(field: str) -> str:
    """An option as a person may have set it: its flag, or its variable (docker-compose sets those)."""
    return f"--{field.replace('_', '-')} (or {WorkerOptions.env_prefix}{field.upper()})"


def run(name: str, args: argparse.Namespace) -> int:
    """Run the worker until SIGINT/SIGTERM; exit code 0 on a clean stop."""
    try:
        settings, options = options_from_args(args)
    except ValueError as exc:
        print(f"aitrace worker: {exc}", file=sys.stderr)
        return 2
    if args.health:
        return _health(options, args.health_max_age)
    os.makedirs(options.data_dir, exist_ok=True)
    # Import here: Faust and the detectors are heavy, and `aitrace --help` should not pay for them.
    from aitrace.processors.app import create_app
    from aitrace.processors.topics import TopicLayoutError, prepare_topics

    try:
        options = prepare_topics(settings.kafka, options)
    except (TopicLayoutError, KafkaException) as exc:
        print(f"aitrace worker: {exc}", file=sys.stderr)
        return 1
    app = create_app(settings, options)
    from aitrace.processors.faust_compat import BoundedShutdownWorker

    logging.getLogger("aitrace").setLevel(args.loglevel.upper())
    if options.warm_up:
        _warm_up(options)
    worker = BoundedShutdownWorker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


def _warm_up(options: WorkerOptions) -> None:
    """Take the kernels' load (or compile) time now; a failure only means they load on the first record."""
    from aitrace.processors.warmup import warm_up

    try:
        seconds = warm_up(options)
    except Exception as exc:  # any failure here must leave the worker to start as it did without it
        log.warning("aitrace worker: warm-up failed (%r); the kernels load on the first record", exc)
        return
    log.info("aitrace worker: kernels loaded in %.1f s", seconds)


def _health(options: WorkerOptions, max_age_s: float | None) -> int:
    """``aitrace worker --health``: 0 when the heartbeat is fresh; 1 and one line on stderr if not."""
    max_age_s = FRESH_INTERVALS * options.stats_interval_s if max_age_s is None else max_age_s
    if not (math.isfinite(max_age_s) and max_age_s > 0):  # NaN compared False: any old heartbeat was fresh
        print(
            f"aitrace worker: the heartbeat's largest age must be a positive number of seconds, got {max_age_s:g} "
            f"(--health-max-age, else {FRESH_INTERVALS} x --stats-interval-s)",
            file=sys.stderr,
        )
        return 2
    path = heartbeat_path(options.data_dir, options.app_id)
    problem = heartbeat_problem(path, max_age_s)
    if problem:
        print(f"aitrace worker: unhealthy: {problem}", file=sys.stderr)
        return 1
    print(f"aitrace worker: healthy: {path} is fresh")
    return 0
