"""``aitrace alerts``: tail the alerts topic in the terminal, or forward it to a webhook.

The stream itself is :mod:`aitrace.sinks.alert_stream`, the delivery to a receiver
:mod:`aitrace.sinks.webhook`; this module reads the options, wires them together and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import orjson
from aitrace.producers.config import KafkaConfig, Settings
from aitrace.sinks.alert_format import format_alert, format_time
from aitrace.sinks.alert_ledger import LedgerError, VersionLedger
from aitrace.sinks.alert_stream import SEVERITIES, Alert, AlertFilter, AlertStream
from aitrace.sinks.terminal import stop_if_stdout_closed, use_colour
from aitrace.sinks.webhook import WebhookForwarder, WebhookUnavailable, parse_headers, safe_url
from confluent_kafka import KafkaException


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of ``aitrace alerts``."""
    parser.add_argument(
        "--severity", choices=list(SEVERITIES), help="show alerts of this severity or worse (default: all)"
    )
    parser.add_argument("--service", help="only alerts of this service")
    parser.add_argument("--run", dest="run_id", help="only alerts of this run id")
    parser.add_argument("--model", help="only alerts of this model")
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest alert (without a committed offset)"
    )
    parser.add_argument(
        "--group",
        help="consumer group: resume where it left off and commit (default: none when tailing; "
        "aitrace-webhook-<hash of URL> with --webhook)",
    )
    parser.add_argument("--topic", help="alerts topic (default: <topic_prefix>.alerts)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: AITRACE_KAFKA_BOOTSTRAP)")
    parser.add_argument("--limit", type=int, help="stop after this many alert versions")
    parser.add_argument("--json", action="store_true", help="print one JSON object per alert version")
    parser.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="colour the output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more on stderr")
    hook = parser.add_argument_group("webhook forwarding")
    hook.add_argument("--webhook", metavar="URL", help="POST each new or changed alert version to URL as JSON")
    hook.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra request header (repeatable)"
    )
    hook.add_argument("--state-file", help="where delivered versions are remembered (default: under state_dir)")
    hook.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    hook.add_argument(
        "--max-attempts", type=int, default=0, help="give up (exit 1, nothing committed) after N tries; 0 = never"
    )
    hook.add_argument("--backoff", type=float, default=0.5, help="first retry delay in seconds (default 0.5)")
    hook.add_argument("--backoff-max", type=float, default=60.0, help="longest retry delay in seconds (default 60)")


def run(name: str, args: argparse.Namespace) -> int:
    """``aitrace alerts``: tail the alerts topic, or forward it to a webhook."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="aitrace alerts: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # error_cb already says once what is wrong; librdkafka would repeat it on every reconnect.
        logging.getLogger("aitrace.alerts.librdkafka").setLevel(logging.CRITICAL)
    if args.limit is not None and args.limit < 1:
        print("aitrace alerts: --limit must be at least 1", file=sys.stderr)
        return 2
    settings = Settings.from_env(dev_stack=True, kafka_bootstrap=args.bootstrap)
    filters = AlertFilter(min_severity=args.severity, service=args.service, run_id=args.run_id, model=args.model)
    if args.webhook:
        return run_forwarder(settings, args, filters)
    return _tail(settings.kafka, args, filters)


def _tail(kafka: KafkaConfig, args: argparse.Namespace, filters: AlertFilter) -> int:
    colour = use_colour(args.color, sys.stdout)

    def show(alert: Alert) -> None:
        line = orjson.dumps(alert).decode() if args.json else format_alert(alert, colour=colour)
        print(line, flush=True)

    stream = AlertStream(
        kafka, group_id=args.group, filters=filters, topic=args.topic, from_beginning=args.from_beginning
    )
    try:
        with stream, stop_on_signals(stream):
            # `aitrace alerts | head -1`: a closed stdout ends the tail quietly in aitrace.infra.cli.main,
            # found at the next write or, while no alert comes, between waits
            stream.run(show, limit=args.limit, idle=stop_if_stdout_closed)
    except KafkaException as exc:
        print(f"aitrace alerts: kafka error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    print(f"aitrace alerts: {stream.stats.summary()}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def stop_on_signals(stream: AlertStream) -> Iterator[None]:
    """SIGINT/SIGTERM ask ``stream`` to stop gracefully (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stream.stopping.is_set():  # a second one: now (a read from a receiver that stalls does not see the flag)
            raise KeyboardInterrupt
        stream.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def default_state_file(state_dir: str | Path, url: str, group: str) -> Path:
    """One ledger per (receiver, group), under the state directory ``state_dir``."""
    digest = hashlib.sha256(f"{url}\n{group}".encode()).hexdigest()[:16]
    return Path(state_dir) / "webhook" / f"{digest}.jsonl"


def default_group(url: str) -> str:
    """A stable consumer group per receiver, so offsets survive restarts."""
    return "aitrace-webhook-" + hashlib.sha256(url.encode()).hexdigest()[:12]


def run_forwarder(settings: Settings, args: argparse.Namespace, filters: AlertFilter) -> int:
    """The ``aitrace alerts --webhook URL`` loop; exit 0 on a graceful stop, 1 on failure."""
    group = args.group or default_group(args.webhook)
    state = (
        Path(args.state_file)
        if args.state_file
        else default_state_file(settings.producer.state_dir, args.webhook, group)
    )
    try:
        headers = parse_headers(args.header)
        ledger = VersionLedger(state)
    except (ValueError, LedgerError) as exc:
        print(f"aitrace alerts: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    try:
        stream = AlertStream(
            settings.kafka,
            group_id=group,
            filters=filters,
            topic=args.topic,
            from_beginning=args.from_beginning,
            ledger=ledger,
        )
        forwarder = WebhookForwarder(
            args.webhook,
            headers=headers,
            timeout=args.timeout,
            max_attempts=args.max_attempts or None,
            backoff=args.backoff,
            backoff_max=args.backoff_max,
            stop=stream.stopping,
        )
    except ValueError as exc:
        ledger.close()
        print(f"aitrace alerts: {exc}", file=sys.stderr)
        return 2

    def forward(alert: Alert) -> None:
        if forwarder(alert):
            print(f"sent  {format_time(alert.get('last_seen'))}  {alert['alert_id']} v{alert['version']}", flush=True)

    code = 0
    try:
        with stream, stop_on_signals(stream):
            stream.run(forward, limit=args.limit)
    except (WebhookUnavailable, LedgerError) as exc:
        print(f"aitrace alerts: {exc}", file=sys.stderr)
        code = 1
    except KafkaException as exc:
        print(f"aitrace alerts: kafka error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        code = 1
    print(f"aitrace alerts: webhook {safe_url(args.webhook)}: {forwarder.stats.summary()}", file=sys.stderr)
    print(f"aitrace alerts: {stream.stats.summary()}", file=sys.stderr)
    return code


__all__ = ["add_arguments", "default_group", "default_state_file", "run", "run_forwarder", "stop_on_signals"]
