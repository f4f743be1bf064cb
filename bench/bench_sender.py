"""The exporter thread's cost per event, by kind, without a broker: batch, process, encode.

A :class:`~aitrace.producers.client.Client`'s event methods fill the queue (the exporter is not
started); then the exporter's own ``_take`` and ``_send_pending`` run on this thread over a
:class:`~aitrace.producers.transport.MemoryTransport`, with the default processor chain
(sampling at rate 1, redaction). It prints CPU µs per event per kind (this thread's CPU time, so
other load on the machine does not count), the median over ``--runs``: the caller's calls that
filled the queue (without an exporter thread beside them, which ``bench_producer.py`` has) and the
sender's work. ``--profile KIND``
prints the top of a cProfile of that kind's sender work instead. ``<kind>_events`` (log,
inference, span, ground_truth) is the kind with a pass-through processor added to the chain, which
sends it one ``aitrace.Event`` at a time (the way before event blocks): the baseline of each in
the same run.

    .venv/bin/python bench/bench_sender.py --events 20000 --runs 5
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections import Counter, deque

from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter
from aitrace.producers.transport import MemoryTransport
from aitrace.schemas.avro_writer import varint_tables

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_producer import KINDS, caller, queue_only_client


def _pass_through(item: dict) -> dict:
    """A processor that reads single events only: every kind then leaves one event at a time."""
    return item


def _exporter(per_event: bool = False) -> tuple[Exporter, MemoryTransport]:
    settings = Settings.from_env(service="bench", run_id="bench-run", batch_max_events=1000)
    stats: Counter[str] = Counter()
    transport = MemoryTransport(stats)
    processors, _ = default_processors(settings)
    if per_event:
        processors.append(_pass_through)
    envelope = {
        "service": "bench",
        "service_version": None,
        "environment": "prod",
        "host": "bench-host-1",
        "pid": 4242,
        "run_id": "bench-run",
        "sampled": True,
        "labels": {},
    }
    exporter = Exporter(settings, deque(), envelope, processors, "7d33302d1864", stats, transport)
    varint_tables()  # as the exporter's thread does when it starts: numpy's import is not an event's cost
    return exporter, transport


def one_run(kind: str, events: int, profile: cProfile.Profile | None = None) -> tuple[float, float]:
    """(caller CPU µs, sender CPU µs) per event for ``events`` calls of ``kind``."""
    per_event = kind.endswith("_events")
    exporter, _ = _exporter(per_event=per_event)
    call = caller(queue_only_client(exporter), kind.removesuffix("_events"))
    t0 = time.thread_time()
    for i in range(events):
        call(i)
    calls = time.thread_time() - t0
    t0 = time.thread_time()
    if profile is not None:
        profile.enable()
    while exporter.queue:
        exporter._take()
        exporter._send_pending()
    if profile is not None:
        profile.disable()
    elapsed = time.thread_time() - t0
    if exporter.stats["sent"] != events:
        raise RuntimeError(f"{kind}: sent {exporter.stats['sent']} of {events}: {dict(exporter.stats)}")
    return calls / events * 1e6, elapsed / events * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    per_event = [f"{k}_events" for k in ("log", "inference", "span", "ground_truth")]
    parser.add_argument("--kinds", default=",".join((*KINDS, *per_event)))
    parser.add_argument("--profile", metavar="KIND", help="print a cProfile of the sender for this kind")
    args = parser.parse_args()
    if args.profile:
        profile = cProfile.Profile()
        one_run(args.profile, args.events, profile)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return 0
    print(f"CPU µs/event, {args.events:,} events, median of {args.runs} runs (no broker, MemoryTransport)")
    print("caller: the calls filling the queue, no exporter thread beside them (gc on, the queue growing)")
    for kind in args.kinds.split(","):
        calls, sent = (
            statistics.median(c) for c in zip(*(one_run(kind, args.events) for _ in range(args.runs)), strict=True)
        )
        print(f"{kind:<20} caller {calls:6.2f} µs   sender {sent:6.2f} µs -> {1e6 / sent:>10,.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
