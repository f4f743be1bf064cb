"""What redaction costs per event: the exporter's work on one event with and without the Redactor.

``python bench/bench_redact.py [--n 20000] [--runs 7]`` prints the median over runs of µs per
event for: building a log event as the exporter does (payload + envelope), the same plus
redaction, and redaction alone for a few shapes (a benign log line, one with an e-mail and a
phone number, a data-stats event, a metric block of 10 series x 100 rows, the encode step for
scale). Messages differ per event (a step number), so the text cache does not flatter them.

Then ``Redactor.scrub`` on fresh request ids of common shapes (lower- and upper-case UUIDs,
``uuid4().hex``, ``req_<uuid>``, ``req_<hex>``), beside the full scan of the same ids with the
hex-identifier fast paths of ``secret_patterns`` turned off: the baseline, in the same run.

``--against REV`` instead compares ``Redactor.scrub`` of this tree with that of a git revision
(its ``redact.py`` and ``secret_patterns.py`` loaded beside) on fresh texts of a few shapes (plain
ASCII log lines, keyword lines, prose, a Cookie header, Cyrillic and Greek lines, URLs, JSON held in
a JSON string, colour-coded lines): old and new alternate run by run, thread CPU time, medians.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
import types
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from aitrace.producers import events as ev
from aitrace.producers import secret_patterns
from aitrace.producers.redact import Redactor
from aitrace.schemas.codec import AvroSerializer

ENVELOPE = {
    "service": "trainer",
    "service_version": "1.4.2",
    "environment": "prod",
    "host": "gpu-node-17",
    "pid": 4242,
    "run_id": "run-2024-06-01-bert",
    "sampled": True,
    "labels": {"team": "ml", "model": "bert-base-uncased"},
}


def _event(kind: int, fields: dict[str, Any], i: int) -> dict[str, Any]:
    event = dict(ENVELOPE)
    event["event_id"] = f"7d33302d1864-{i:x}"
    event["time"] = 1_717_000_000_000_000 + i
    event["trace_id"] = "4bf92f3577b34da6a3ce929d0e0e4736"
    event["span_id"] = "00f067aa0ba902b7"
    event["parent_span_id"] = None
    event["payload"] = (ev.RECORD_OF_KIND[kind], ev.PAYLOAD_BUILDERS[kind](fields, Counter()))
    return event


def log_fields(i: int) -> dict[str, Any]:
    message = f"step {i} loss=0.{i % 9973:04d} lr=3.0e-04 grad_norm=4.21 tokens/s=18234.5"
    return {"level": "info", "message": message, "logger": "train", "attributes": {"step": i, "epoch": 3}}


def pii_fields(i: int) -> dict[str, Any]:
    message = f"user jane.doe{i}@example.com called +44 20 7946 0{i % 900 + 100} about run {i}"
    return {"level": "warning", "message": message, "logger": "support", "attributes": {"ticket": str(i)}}


def data_fields(i: int) -> dict[str, Any]:
    features = [
        {"name": f"f{j}", "count": 1000, "mean": 0.5, "quantiles": {"0.5": 0.5, "0.99": 0.99}} for j in range(8)
    ]
    features.append(
        {"name": "city", "dtype": "categorical", "count": 1000, "categories": {"berlin": 600, "paris": 400}}
    )
    return {"stage": "ingest", "dataset": "tx", "features": features, "class_counts": {"fraud": 3, "ok": 997}}


def block(i: int) -> dict[str, Any]:
    names = ["loss", "val/loss", "acc", "lr", "grad_norm", "tokens_per_s", "gpu0/mem", "gpu0/util", "step_s", "wd"]
    return {
        "block_id": f"b-{i:x}",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "parent_span_id": None,
        **{k: v for k, v in ENVELOPE.items() if k not in ("sampled", "labels")},
        "split": "train",
        "steps": list(range(100)),
        "times": list(range(100)),
        "epochs": [],
        "series": [{"name": n, "values": [0.1] * 100} for n in names],
    }


def _batch(event: dict[str, Any]) -> dict[str, Any]:
    return {"batch_id": "b", "events": [event], "metric_blocks": []}


def median_us(work: Callable[[int], Any], n: int, runs: int) -> float:
    samples = []
    for r in range(runs):
        t0 = time.perf_counter()
        for i in range(n):
            work(r * n + i)
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--against", metavar="REV", help="compare scrub with a git revision's instead")
    args = parser.parse_args()
    if args.against:
        against(args.against, args.n // 10, args.runs)
        return
    redactor = Redactor()
    encode = AvroSerializer("aitrace.Batch")
    cases: list[tuple[str, Callable[[int], Any]]] = [
        ("log event: build", lambda i: _event(ev.LOG, log_fields(i), i)),
        ("log event: build + redact", lambda i: redactor(_event(ev.LOG, log_fields(i), i))),
        ("log event: build + Avro encode (1 per batch)", lambda i: encode(_batch(_event(ev.LOG, log_fields(i), i)))),
        ("log event with e-mail + phone: build", lambda i: _event(ev.LOG, pii_fields(i), i)),
        ("log event with e-mail + phone: build + redact", lambda i: redactor(_event(ev.LOG, pii_fields(i), i))),
        ("data stats (9 features): build", lambda i: _event(ev.DATA, data_fields(i), i)),
        ("data stats (9 features): build + redact", lambda i: redactor(_event(ev.DATA, data_fields(i), i))),
        ("metric block 10x100: build", block),
        ("metric block 10x100: build + redact", lambda i: redactor(block(i))),
    ]  # fmt: skip
    for name, work in cases:
        n = args.n if "block" not in name else max(1, args.n // 10)
        print(f"{name:48s} {median_us(work, n, args.runs):8.2f} µs")
    print(f"redacted so far: {dict(redactor.counts)}")
    request_ids(args.n, args.runs)


ID_SHAPES: dict[str, Callable[[], str]] = {
    "uuid4()": lambda: str(uuid.uuid4()),
    "uuid4() upper case": lambda: str(uuid.uuid4()).upper(),
    "uuid4().hex": lambda: uuid.uuid4().hex,
    "req_<uuid4()>": lambda: f"req_{uuid.uuid4()}",
    "req_<uuid4().hex>": lambda: f"req_{uuid.uuid4().hex}",
}


def _scrub_each(ids: list[str]) -> Callable[[int], Any]:
    """Work for :func:`median_us`: the i-th id through a fresh redactor's ``scrub``."""
    scrub = Redactor().scrub
    return lambda i: scrub(ids[i])


def request_ids(n: int, runs: int) -> None:
    """µs per fresh id through ``Redactor.scrub``: with the fast paths, and the full scan beside it."""
    fast = (secret_patterns._PLAIN_HEX_IDS, secret_patterns._ID_LINES)
    never = re.compile(r"(?!)")
    print(f"\nrequest ids, {n:,} fresh ids, median of {runs}: {'with fast paths':>16} {'full scan':>10}")
    for name, make in ID_SHAPES.items():
        row = []
        for paths in (fast, (never, never)):
            secret_patterns._PLAIN_HEX_IDS, secret_patterns._ID_LINES = paths
            row.append(median_us(_scrub_each([make() for _ in range(n * runs)]), n, runs))
        secret_patterns._PLAIN_HEX_IDS, secret_patterns._ID_LINES = fast
        print(f"  {name:20s} {row[0]:28.2f} µs {row[1]:7.2f} µs ({row[1] / row[0]:.1f}x)")


TEXT_SHAPES: dict[str, Callable[[int], str]] = {
    "benign log line": lambda i: f"step {i} loss=0.{i % 9973:04d} lr=3.0e-04 grad_norm=4.21 tokens/s=18234.5",
    "log line, keyword trigger": lambda i: f"step {i} num_tokens={i} max_new_tokens: 512 token_count=5000",
    "early stopping line": lambda i: f"early stopping at epoch {i}, clipping grad norm, mapping done",
    "password assignment": lambda i: f"db connect password=hunter{i} host=db",
    "prose, no secret": lambda i: f"login {i} failed: password is incorrect for user bob",
    "prose with a secret": lambda i: f"the password for admin{i} is hunter{i}",
    "cookie header": lambda i: f"GET /v1 Cookie: theme=dark; sid=abc{i}def",
    "e-mail and phone": lambda i: f"user jane.doe{i}@example.com called +44 20 7946 0{i % 900 + 100}",
    "Russian line": lambda i: f"шаг {i}: модель сохранена, точность 0.{i % 97:02d}",
    "Greek line": lambda i: f"βήμα {i}: η ακρίβεια είναι 0.{i % 97:02d}",
    "URL": lambda i: f"GET https://api.example.com/v1/items/{i}?page=2",
    "URL with credentials": lambda i: f"connect postgres://app:p@ss/w{i}rd@db.example:5432/app",
    "JSON in a JSON string": lambda i: f'{{"body":"{{\\"step\\":{i},\\"loss\\":0.{i % 97:02d},\\"ok\\":1}}"}}',
    # structlog's ConsoleRenderer(colors=True) and rich's highlighter, through stdlib logging
    "coloured, no key word": lambda i: f"\x1b[1mstep {i} done\x1b[0m \x1b[36mrows\x1b[0m=\x1b[35m{i}\x1b[0m",
    "coloured, token=None": lambda i: f"\x1b[1mlogin {i}\x1b[0m \x1b[36mtoken\x1b[0m=\x1b[35mNone\x1b[0m",
    "coloured, a password": lambda i: f"\x1b[1mdb {i}\x1b[0m \x1b[36mpassword\x1b[0m=\x1b[35mhunter{i}\x1b[0m",
    "rich, a highlighted number": lambda i: f"epoch \x1b[1;36m{i}\x1b[0m loss \x1b[1;36m0.{i % 97:02d}\x1b[0m",
}


def _redactor_at(rev: str) -> type[Redactor]:
    """The Redactor of git revision ``rev`` (its redact.py over its secret_patterns.py, and its text_reading.py
    where it has one), loaded beside this one."""
    modules = {}
    for name in ("secret_patterns", "text_reading", "redact"):
        try:
            source = subprocess.check_output(
                ["git", "show", f"{rev}:producers/{name}.py"], text=True, stderr=subprocess.DEVNULL
            )
        except subprocess.CalledProcessError:  # text_reading.py split from secret_patterns.py on 2026-12-06
            continue
        for own in ("secret_patterns", "text_reading"):
            source = source.replace(f"aitrace.producers.{own}", f"_at_{rev}_{own}")
        module = types.ModuleType(f"_at_{rev}_{name}")
        sys.modules[module.__name__] = module  # the redact module imports the revision's patterns by this name
        exec(compile(source, f"{rev}:producers/{name}.py", "exec"), module.__dict__)
        modules[name] = module
    return modules["redact"].Redactor  # type: ignore[no-any-return]


def against(rev: str, n: int, runs: int) -> None:
    """µs (thread CPU) per fresh text through a fresh redactor's ``scrub``: revision ``rev``, this tree, alternated."""
    pair = {rev: _redactor_at(rev), "this tree": Redactor}
    print(f"Redactor.scrub, {n:,} fresh texts a run, thread CPU, median of {runs} runs, old and new alternated")
    print(f"  {'shape':28s} {rev[:12]:>12s} {'this tree':>10s} {'new/old':>8s}")
    for name, make in TEXT_SHAPES.items():
        samples: dict[str, list[float]] = {label: [] for label in pair}
        for r in range(runs):
            for label in list(pair)[:: 1 if r % 2 == 0 else -1]:
                scrub = pair[label]().scrub
                texts = [make(r * n + i) for i in range(n)]
                t0 = time.thread_time()
                for text in texts:
                    scrub(text)
                samples[label].append((time.thread_time() - t0) / n * 1e6)
        old, new = (statistics.median(samples[label]) for label in pair)
        print(f"  {name:28s} {old:9.2f} µs {new:7.2f} µs {new / old:8.2f}")


if __name__ == "__main__":
    main()
