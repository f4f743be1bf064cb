"""Record a run's pace as a training loop measures it: the wall time of each step and its samples/s.

The bench's healthy recipes (``training_runs.healthy``, seeds 0-2), each trained ``--rounds`` times
on one thread, the step timed around zero_grad, forward, backward and the optimizer's step (an
epoch's validation pass falls between two timed steps, as in a loop that evaluates inline).
Nothing is injected: every slow step is this machine's jitter (collections, other processes on
the core, page faults), so every incident a rule opens on the file is false.

    .venv/bin/python bench/record_steptimes.py --out bench/data/steptimes-vm-20261206.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import time
from pathlib import Path

import numpy as np
import torch
import training_runs as tr
from torch import nn


def timed_run(recipe: tr.Recipe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step times in ms, samples/s, each step's end as a wall-clock time in microseconds)."""
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(1)
    xt, yt, xv, _ = tr._data(recipe)
    model = tr._model(recipe, xt[0].numel() if recipe.family != "cnn" else 1, int(yt.max()) + 1)
    params = model.parameters()
    sgd = recipe.optimizer == "sgd"
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9) if sgd else torch.optim.AdamW(params, lr=recipe.lr)
    per_epoch = max(1, len(xt) // recipe.batch)
    total = recipe.epochs * per_epoch
    rng, loss_fn = np.random.default_rng(recipe.seed), nn.CrossEntropyLoss()
    ms, wall = np.empty(total), np.empty(total, dtype=np.int64)
    for step in range(total):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = tr._lr(recipe, step, total)
        idx = torch.from_numpy(rng.integers(0, len(xt), recipe.batch))
        opt.zero_grad()
        loss = loss_fn(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        loss.item()  # the step ends when its loss is read, as a loop that logs it
        ms[step] = (time.perf_counter() - t0) * 1e3
        wall[step] = time.time_ns() // 1000
        if (step + 1) % per_epoch == 0:
            with torch.no_grad():
                model(xv)
    return ms, recipe.batch / (ms / 1e3), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with gzip.open(args.out, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "step", "time_us", "step_time_ms", "samples_per_sec"])
        for r in range(args.rounds):
            for name, recipe in tr.healthy((0, 1, 2)):
                ms, sps, wall = timed_run(recipe)
                for i, (a, b, t) in enumerate(zip(ms, sps, wall, strict=True)):
                    w.writerow([f"{name}-r{r}", i, int(t), repr(float(a)), repr(float(b))])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
