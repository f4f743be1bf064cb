"""Overhead of ``aitrace.torch.watch`` on a small real training loop: an MLP on scikit-learn's digits.

The digits (1797 8x8 images) ship with scikit-learn: nothing is downloaded. Every variant trains its
own copy of the same model (same seed, same batches; Adam, batch ``--batch``, hidden ``--hidden``,
CPU, ``torch.set_num_threads(1)`` unless ``--threads``). Each round builds every variant afresh
(model, optimizer, hooks; in a shuffled order, so that no variant keeps a lucky memory layout),
trains each ``--warmup`` steps untimed, then ``--steps`` timed steps of each (1000: a whole number
of the watch's periods, so its costly steps and its read-back fall in the round in proportion),
the variants taking turns every ``--chunk`` steps (10: a noisy spell on a shared machine hits them
all alike), the first of each turn rotating. A variant's overhead in a round is its time over the
bare loop's time in that round; the figures are medians over ``--rounds`` rounds, with the spread
(inter-quartile range) of the per-round overheads, the worst round, and the fastest round against the
fastest bare round. Each round prints its overheads (wall/CPU) with the load average; the end says how
far the bare loop strays from its own copy in a round (the noise floor: how much any one round's figure
moves with no watch at all) and how many rounds of each variant went over 5%:

- **bare**: the loop alone; **bare, again**: a second copy of it, the noise floor (reads about 0);
- **aitrace watch (default)**: ``aitrace.torch.watch(model, optimizer, client=client)`` with the
  defaults, the client sending to a Tansu this benchmark starts (or ``--bootstrap``);
- **the same, client that drops**: the default watch with a client whose ``metric`` does nothing:
  the cost of the measurement alone, without the client;
- **watch every=1**: every costly part on every step (per-layer norms, update ratios);
- **another checkout's watch** (``--compare-with /work/main``): that checkout's ``producers/torch*.py``
  loaded under names of their own, attached with the same defaults: a change measured beside its base;
- **wandb.watch**: ``wandb.watch(model, log="gradients", log_freq=100)`` in an offline run, when
  ``wandb`` is importable (said so otherwise). Its histograms are computed in backward hooks
  every ``log_freq`` steps; ``wandb.log`` is not called per step (as with ``wandb.watch`` alone).

Taking turns stretches each variant's wall clock by the number of variants, so the watches'
``sync_interval_s`` is stretched alike: they read back as often per step as they would alone.

Two clocks on the training thread: wall-clock steps/s (training speed: the target) and steps per
CPU-second of that thread. The client's exporter and librdkafka work on threads of their own (on
another core here, when one is free): their CPU time over the timed parts (and the sending of what
those produced) is printed apart, per event sent; wandb's service is a separate process and not
counted.

Target (issue 12): the default watch costs under 5% of the bare steps/s.

    .venv/bin/python bench/bench_torch_watch.py --rounds 10
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import aitrace
import aitrace.producers.torch
import torch
from aitrace.infra.stack import TansuProcess
from scratch import scratch_dir
from sklearn.datasets import load_digits

Attach = Callable[[Any, Any], Callable[[], None]]  # hooks a model and optimizer; returns the unhook


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    return x, y


def _model(hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )


class Trainer:
    """One variant's model, optimizer and hooks; ``run(n)`` trains ``n`` more steps and adds up their times."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, attach: Attach | None) -> None:
        torch.manual_seed(0)
        self.model = _model(args.hidden)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        n = x.shape[0]
        order = torch.randperm(n)
        self.batches = [
            (x[order[i : i + args.batch]], y[order[i : i + args.batch]]) for i in range(0, n - args.batch, args.batch)
        ]
        self.step = 0
        self.wall = 0.0
        self.cpu = 0.0
        self.detach = attach(self.model, self.optimizer) if attach else None

    def run(self, steps: int) -> None:
        model, optimizer, batches = self.model, self.optimizer, self.batches
        start, cpu0 = time.perf_counter(), time.thread_time()
        for step in range(self.step, self.step + steps):
            xb, yb = batches[step % len(batches)]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        self.wall += time.perf_counter() - start
        self.cpu += time.thread_time() - cpu0
        self.step += steps


class FullCollections:
    """The training thread's full garbage collections (generation 2), by the variant whose timed steps they
    fell in. With the libraries loaded one takes ~100 ms, about a tenth of a variant's round: it lands on
    whichever variant allocates when the collector's threshold is crossed, so it shows apart."""

    def __init__(self) -> None:
        self.current: str | None = None  # the variant timing its steps now
        self.round = 0
        self.ms: dict[str, list[tuple[int, float]]] = {}  # variant -> (round, duration) of each collection
        self._start = 0.0
        self._thread = threading.get_ident()
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2 or self.current is None or threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.ms.setdefault(self.current, []).append((self.round, (time.thread_time() - self._start) * 1e3))

    def line(self, rnd: int | None = None) -> str:
        """The collections (of round ``rnd``, or all) by variant: how many, and their CPU time."""
        parts = []
        for name, each in self.ms.items():
            ms = [t for r, t in each if rnd is None or r == rnd]
            if ms:
                parts.append(f"{name.strip()} {len(ms)} ({sum(ms):.0f} ms)")
        return ", ".join(parts) or "none"


def _load_watch(checkout: str) -> Callable[..., Any]:
    """``watch`` of another checkout's ``producers/torch*.py``, loaded under module names of their own."""
    for name in ("torch_summary", "torch_norms", "torch"):
        path = os.path.join(checkout, "producers", f"{name}.py")
        with open(path, encoding="utf-8") as f:
            source = f.read().replace("aitrace.producers.torch_", "aitrace_compared_torch_")
        module = types.ModuleType(f"aitrace_compared_{name}")
        module.__file__ = path
        sys.modules[module.__name__] = module  # before it runs: its dataclasses look themselves up there
        exec(compile(source, path, "exec"), module.__dict__)
    return sys.modules["aitrace_compared_torch"].watch  # type: ignore[no-any-return]


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _load() -> str:
    """The 1, 5 and 15 minute load averages: how many others wanted the machine's 2 cores meanwhile."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _overheads(times: dict[str, list[float]], name: str) -> list[float]:
    """Per round, ``name``'s time over the bare loop's time in the same round, minus 1."""
    return [v / b - 1 for v, b in zip(times[name], times["bare"], strict=True)]


def _round_line(
    rnd: int, steps: int, names: list[str], walls: dict[str, list[float]], cpus: dict[str, list[float]]
) -> str:
    """One round's overheads in %, wall/CPU, each variant against that round's bare loop."""
    head = f"round {rnd} (bare {steps / walls['bare'][-1]:,.0f}/s, load {_load()}), overhead wall/CPU %: "
    cells = (
        f"{n.strip()} {_overheads(walls, n)[-1] * 100:+.1f}/{_overheads(cpus, n)[-1] * 100:+.1f}" for n in names[1:]
    )
    return head + ", ".join(cells)


def _table(names: list[str], walls: dict[str, list[float]], cpus: dict[str, list[float]], steps: int) -> None:
    """Per variant and clock: steps/s, the median overhead, its inter-quartile range, the worst and the best round."""
    iqr = "(IQR)"
    print(
        f"{'variant':<46}{'steps/s':>8}{'overhead':>9}{iqr:>17}{'worst':>7}{'best':>7}"
        f"{'steps/CPU-s':>12}{'CPU overhead':>13}{iqr:>17}{'worst':>7}{'best':>7}"
    )
    for name in names:
        cells = []
        for times in (walls, cpus):
            ratios = _overheads(times, name)
            low, high = _quartiles(ratios)
            best = min(times[name]) / min(times["bare"]) - 1
            cells.append(
                f"{steps / statistics.median(times[name]):>{8 if times is walls else 12},.0f}"
                f"{statistics.median(ratios) * 100:>{8 if times is walls else 12}.1f}%"
                f" {f'({low * 100:.1f} to {high * 100:.1f})':>16}{max(ratios) * 100:>6.1f}%{best * 100:>6.1f}%"
            )
        print(f"{name:<46}{cells[0]}{cells[1]}")
    print("overhead: (variant time / bare time in the same round) - 1 on the training thread; median, IQR, worst round")
    print("best: the variant's fastest round against the fastest bare round (the least disturbed ones)")
    for times, clock in ((walls, "wall"), (cpus, "CPU")):
        floor = [abs(r) for r in _overheads(times, "bare, again (noise floor)")]
        over = {n.strip(): sum(r > 0.05 for r in _overheads(times, n)) for n in names[2:]}
        print(
            f"{clock}: a bare loop against itself is off by up to {max(floor) * 100:.1f}% in a round "
            f"(median {statistics.median(floor) * 100:.1f}%): any one round's figure moves that much without a watch; "
            f"rounds over 5%: " + ", ".join(f"{n} {k}/{len(floor)}" for n, k in over.items())
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of each variant per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=10, help="steps of one variant before the next takes its turn")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps of each variant in each round first")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-wandb", action="store_true", help="leave wandb.watch out even when it is installed")
    parser.add_argument("--compare-with", metavar="CHECKOUT", help="also measure this checkout's watch (e.g. main's)")
    parser.add_argument("--bootstrap", help="an existing broker; default: start Tansu on a free port")
    args = parser.parse_args()
    if args.steps % args.chunk:
        parser.error("--steps must be a multiple of --chunk")
    torch.set_num_threads(args.threads)
    x, y = _data()

    broker = None
    if args.bootstrap is None:
        broker = TansuProcess(None, scratch_dir("aitrace-bench-")).start().wait_ready(60)
    bootstrap = args.bootstrap or broker.bootstrap
    client = aitrace.init(
        service="bench-torch",
        run_id="bench-torch",
        kafka_bootstrap=bootstrap,
        topic_prefix=f"bench-torch-{os.getpid()}",
        spool_dir=scratch_dir("aitrace-bench-spool-"),
    )
    stretch = [1]  # how many variants take turns (set below, before any watch is attached)

    def aitrace_watch(watch_client: Any, watch: Callable[..., Any] = aitrace.torch.watch, **kwargs: Any) -> Attach:
        def attach(model: Any, optimizer: Any) -> Callable[[], None]:
            default = inspect.signature(watch).parameters["sync_interval_s"].default
            return watch(
                model, optimizer, client=watch_client, summary=False, sync_interval_s=default * stretch[0], **kwargs
            ).remove

        return attach

    class NullClient:
        def metric(self, values: Any, step: Any = None) -> None:
            pass

        def log(self, *args: Any, **kwargs: Any) -> None:
            pass

    variants: dict[str, Attach | None] = {
        "bare": None,
        "bare, again (noise floor)": None,
        "aitrace watch (default)": aitrace_watch(client),
        "  the same, client that drops": aitrace_watch(NullClient()),
        "aitrace watch every=1": aitrace_watch(client, every=1),
    }
    if args.compare_with:
        variants[f"aitrace watch (default) of {args.compare_with}"] = aitrace_watch(
            client, _load_watch(args.compare_with)
        )
    wandb_run = None
    try:
        os.environ.setdefault("WANDB_SILENT", "true")
        if args.no_wandb:
            raise ImportError("--no-wandb")
        import wandb

        wandb_run = wandb.init(mode="offline", project="aitrace-bench", dir=tempfile.mkdtemp(prefix="wandb-"))

        def wandb_watch(model: Any, optimizer: Any) -> Callable[[], None]:
            wandb_run.watch(model, log="gradients", log_freq=100)
            return lambda: wandb_run.unwatch(model)

        variants[f"wandb.watch {wandb.__version__} (offline, log_freq=100)"] = wandb_watch
    except Exception as exc:  # ImportError, or wandb failing to start offline
        print(f"wandb not measured: {type(exc).__name__}: {exc}")

    names = list(variants)
    stretch[0] = len(names)
    load0 = _load()
    collections = FullCollections()
    walls: dict[str, list[float]] = {k: [] for k in names}
    cpus: dict[str, list[float]] = {k: [] for k in names}
    background = 0.0
    sent = 0
    shuffle = random.Random(0).shuffle
    try:
        turn = 0
        for rnd in range(args.rounds):
            collections.round = rnd
            # Every round builds each variant afresh, in a shuffled order: no variant keeps a lucky or
            # unlucky memory layout (that alone moves a copy of the same loop by about 1%).
            order = list(names)
            shuffle(order)
            trainers = {name: Trainer(x, y, args, variants[name]) for name in order}
            for _ in range(args.warmup // args.chunk):
                for name in order:
                    trainers[name].run(args.chunk)
            for trainer in trainers.values():
                trainer.wall = trainer.cpu = 0.0
            client.flush(timeout=30)
            process0, thread0, sent0 = time.process_time(), time.thread_time(), client.stats()["sent"]
            for _ in range(args.steps // args.chunk):
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    collections.current = name
                    trainers[name].run(args.chunk)
                    collections.current = None
                turn += 1
            for name in names:
                walls[name].append(trainers[name].wall)
                cpus[name].append(trainers[name].cpu)
                if trainers[name].detach:
                    trainers[name].detach()  # untimed: the watch sends the few steps it still holds
            client.flush(timeout=30)  # the exporter's work for the round's events, in its CPU figure
            background += (time.process_time() - process0) - (time.thread_time() - thread0)
            sent += client.stats()["sent"] - sent0
            print(
                _round_line(rnd + 1, args.steps, names, walls, cpus) + f"; full GC: {collections.line(rnd)}", flush=True
            )
    finally:
        client.close(timeout=10)
        if wandb_run is not None:
            with contextlib.suppress(Exception):
                wandb_run.finish()
        if broker is not None:
            broker.kill()
    print(
        f"\nMLP 64-{args.hidden}-{args.hidden}-10 on sklearn digits, batch {args.batch}, Adam, "
        f"{args.threads} thread(s); {args.rounds} rounds of {args.steps} steps per variant, taking turns every "
        f"{args.chunk} steps; medians over the rounds; load average {load0} at the start, {_load()} at the end"
    )
    _table(names, walls, cpus, args.steps)
    print(
        "full garbage collections in the timed steps (each lands on the variant allocating then): " + collections.line()
    )
    print(
        f"other threads (the client's exporter and librdkafka; wandb's in-process ones): {background:.2f} CPU-s "
        f"over the rounds, {background / max(sent, 1) * 1e6:.1f} us per event sent ({sent} events)"
    )
    print(f"client: {client.stats()['records_sent']} records, {client.stats()['dropped']} events dropped")
    print("target: default watch overhead < 5%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
