"""Overhead of ``aitrace.torch.watch`` on a small real training loop: an MLP on scikit-learn's digits.

The digits (1797 8x8 images) ship with scikit-learn: nothing is downloaded. Each run trains
``--steps`` Adam steps (batch ``--batch``, hidden ``--hidden``, CPU, ``torch.set_num_threads(1)``
unless ``--threads``) and reports steps/s. Variants run interleaved (one run of each per
repeat, in rotating order) and each figure is the median over ``--repeats`` repeats:

- **bare**: the loop alone;
- **watch**: ``aitrace.torch.watch(model, optimizer, client=client)`` with the defaults
  (every=100), the client sending to a Tansu this benchmark starts (or ``--bootstrap``);
- **the same, client that drops**: the default watch with a client whose ``metric`` does nothing:
  the cost of the measurement alone, without the client's queue and exporter thread;
- **watch every=1**: every costly part on every step (per-layer norms, update ratios);
- **wandb.watch**: ``wandb.watch(model, log="gradients", log_freq=100)`` in an offline run, when
  ``wandb`` is importable (said so otherwise). Its histograms are computed in backward hooks
  every ``log_freq`` steps; ``wandb.log`` is not called per step (as with ``wandb.watch`` alone).

Both wall-clock steps/s and steps per CPU-second of the whole process (every thread: the
client's exporter and librdkafka included) are printed: on a shared machine the CPU figure is
the steadier one.

Target (issue 12): the default watch costs under 5% of the bare steps/s.

    .venv/bin/python bench/bench_torch_watch.py --steps 2000 --repeats 7
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aitrace
import aitrace.producers.torch
import torch
from aitrace.infra.stack import TansuProcess
from sklearn.datasets import load_digits


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


def run(
    x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, attach: Callable[[Any, Any], Callable[[], None]] | None
) -> tuple[float, float]:
    torch.manual_seed(0)
    model = _model(args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    detach = attach(model, optimizer) if attach else None
    n = x.shape[0]
    order = torch.randperm(n)
    batches = [
        (x[order[i : i + args.batch]], y[order[i : i + args.batch]]) for i in range(0, n - args.batch, args.batch)
    ]
    for xb, yb in batches[:20]:  # warm-up
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    start, cpu0 = time.perf_counter(), time.process_time()
    for step in range(args.steps):
        xb, yb = batches[step % len(batches)]
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
    if detach:
        detach()  # sends what the watch still holds: its cost belongs to the run
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return args.steps / elapsed, args.steps / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-wandb", action="store_true", help="leave wandb.watch out even when it is installed")
    parser.add_argument("--bootstrap", help="an existing broker; default: start Tansu on a free port")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = _data()

    broker = None
    if args.bootstrap is None:
        broker = TansuProcess(None, tempfile.mkdtemp(prefix="aitrace-bench-")).start().wait_ready(60)
    bootstrap = args.bootstrap or broker.bootstrap
    client = aitrace.init(
        service="bench-torch",
        run_id="bench-torch",
        kafka_bootstrap=bootstrap,
        topic_prefix=f"bench-torch-{os.getpid()}",
        spool_dir=tempfile.mkdtemp(prefix="aitrace-bench-spool-"),
    )

    def aitrace_watch(every: int) -> Callable[[Any, Any], Callable[[], None]]:
        def attach(model: Any, optimizer: Any) -> Callable[[], None]:
            return aitrace.torch.watch(model, optimizer, client=client, every=every, summary=False).remove

        return attach

    class NullClient:
        def metric(self, values: Any, step: Any = None) -> None:
            pass

        def log(self, *args: Any, **kwargs: Any) -> None:
            pass

    def null_watch(model: Any, optimizer: Any) -> Callable[[], None]:
        return aitrace.torch.watch(model, optimizer, client=NullClient(), summary=False).remove

    variants: dict[str, Callable[[Any, Any], Callable[[], None]] | None] = {
        "bare": None,
        "aitrace watch (default, every=100)": aitrace_watch(100),
        "  the same, client that drops": null_watch,
        "aitrace watch every=1": aitrace_watch(1),
    }
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

        variants["wandb.watch (offline, log_freq=100)"] = wandb_watch
    except Exception as exc:  # ImportError, or wandb failing to start offline
        print(f"wandb not measured: {type(exc).__name__}: {exc}")

    rates: dict[str, list[float]] = {k: [] for k in variants}
    cpu_rates: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    try:
        for rep in range(args.repeats):
            rotated = names[rep % len(names) :] + names[: rep % len(names)]
            for name in rotated:
                wall, cpu = run(x, y, args, variants[name])
                rates[name].append(wall)
                cpu_rates[name].append(cpu)
            print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()), flush=True)
    finally:
        client.close(timeout=10)
        if wandb_run is not None:
            with contextlib.suppress(Exception):
                wandb_run.finish()
        if broker is not None:
            broker.kill()
    bare = statistics.median(rates["bare"])
    bare_cpu = statistics.median(cpu_rates["bare"])
    print(
        f"\nMLP 64-{args.hidden}-{args.hidden}-10 on sklearn digits, batch {args.batch}, Adam, "
        f"{args.threads} thread(s), {args.steps} steps per run, medians of {args.repeats} interleaved runs"
    )
    header = f"{'variant':<40}{'steps/s':>10}{'overhead':>10}{'steps/CPU-s':>13}{'CPU overhead':>14}"
    print(f"{header}{'best-run overhead':>19}")
    best_bare = max(cpu_rates["bare"])
    for name, values in rates.items():
        med, cpu = statistics.median(values), statistics.median(cpu_rates[name])
        best = (best_bare / max(cpu_rates[name]) - 1) * 100
        print(
            f"{name:<40}{med:>10,.0f}{(bare / med - 1) * 100:>9.1f}%{cpu:>13,.0f}{(bare_cpu / cpu - 1) * 100:>13.1f}%"
            f"{best:>18.1f}%"
        )
    print("steps/s: wall clock; steps/CPU-s: steps per second of this process's CPU time, all its threads")
    print("(the client's exporter and librdkafka included; wandb's separate service process not)")
    print("best-run overhead: fastest CPU run of the variant against the fastest bare run (least disturbed)")
    print(f"client: {client.stats()['sent']} events sent, {client.stats()['dropped']} dropped")
    print("target: default watch overhead < 5%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
