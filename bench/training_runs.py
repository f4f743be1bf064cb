"""Real PyTorch training runs on scikit-learn's bundled tables, recorded as the series a
training job sends to aitrace (per step: loss, grad_norm, lr, accuracy; per epoch: val loss
and accuracy). Healthy runs of four model families at three seeds, and one run per training
pathology (three of vanishing gradients). Nothing is downloaded; the runs are small and
CPU-only (one thread).

    .venv/bin/python bench/training_runs.py --out /tmp/runs.npz   # records every run (about a minute)

Used by ``bench_training.py`` to count false alerts on the healthy runs (and on slow-starting
controls) and the detection delay of each pathology. Every 10 steps, as
``aitrace.torch.watch(every=10)`` sends them, a run also records ``grad_norm/<layer>`` and
``update_ratio/<layer>`` (norm of the step's update of the layer's weight and bias over their
norm). The healthy families follow common recipes: Adam with linear warm-up and cosine decay
(MLP and CNN on digits), AdamW on a standardized tabular table (breast cancer), a deep ReLU
network with SGD + momentum and a step decay, the MLP with SGD + momentum and a step decay.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from torch import nn


@dataclass
class Recipe:
    family: str
    seed: int = 0
    epochs: int = 15
    batch: int = 64
    lr: float = 1e-3
    schedule: str = "warmup_cosine"
    optimizer: str = "adam"
    train_rows: int | None = None  # a small training set over-fits
    poison: str | None = None  # which pathology is injected, and from which step
    poison_step: int = 150
    depth: int = 8
    he_init: bool = True  # deep ReLU nets: He initialisation, or PyTorch's default (a slow starter)
    width: int | None = None  # an MLP of one hidden layer this wide (2 or 4 units under-fit the digits)
    weight_decay: float | None = None  # AdamW's, instead of the family's (30 crushes an MLP: it under-fits)
    cap: float | None = None  # deep nets: logits squashed by the net's activation to (-cap, cap) or (0, cap)


class Capped(nn.Module):
    """Logits squashed by a sigmoid or tanh and scaled to ``cap``: a saturating output (a bound on
    the logits, as logit soft-capping does). Once it saturates, no gradient passes it."""

    def __init__(self, act: nn.Module, cap: float) -> None:
        super().__init__()
        self.act, self.cap = act, cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cap * self.act(x)


@dataclass
class Run:
    name: str
    recipe: Recipe
    steps_per_epoch: int
    series: dict[str, list[float]] = field(default_factory=dict)  # "split|metric" -> values
    steps: dict[str, list[int]] = field(default_factory=dict)


def _data(recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if recipe.family == "tabular":
        d = load_breast_cancer()
        x = (d.data - d.data.mean(0)) / d.data.std(0)
    else:
        d = load_digits()
        x = d.data / 16.0
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(d.target, dtype=torch.long)
    if recipe.family == "cnn":
        xt = xt.reshape(-1, 1, 8, 8)
    order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(recipe.seed))
    cut = int(0.8 * len(xt))
    train, val = order[:cut], order[cut:]
    if recipe.train_rows:
        train = train[: recipe.train_rows]
    return xt[train], yt[train], xt[val], yt[val]


def _model(recipe: Recipe, n_in: int, n_out: int) -> nn.Module:
    f = recipe.family
    if f == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 16, 64),
            nn.ReLU(),
            nn.Linear(64, n_out),
        )
    if f in ("deep_relu", "deep_sigmoid", "deep_tanh"):
        act = {"deep_relu": nn.ReLU, "deep_sigmoid": nn.Sigmoid, "deep_tanh": nn.Tanh}[f]
        layers: list[nn.Module] = [nn.Linear(n_in, 64), act()]
        for _ in range(recipe.depth - 2):
            layers += [nn.Linear(64, 64), act()]
        head = [Capped(act(), recipe.cap)] if recipe.cap else []
        net = nn.Sequential(*layers, nn.Linear(64, n_out), *head)
        if f == "deep_relu" and recipe.he_init:  # He initialisation, the usual recipe for deep ReLU networks
            for m in net:
                if isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        return net
    if recipe.width:
        return nn.Sequential(nn.Linear(n_in, recipe.width), nn.ReLU(), nn.Linear(recipe.width, n_out))
    width = 256 if recipe.train_rows else 128
    return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_out))


def _lr(recipe: Recipe, step: int, total: int) -> float:
    base = recipe.lr
    if recipe.schedule == "warmup_cosine":
        warm = max(1, total // 20)
        lr = (
            base * (step + 1) / warm
            if step < warm
            else base * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        )
    elif recipe.schedule == "step":
        lr = base * (0.1 ** (step // max(1, int(total * 0.4))))
    else:
        lr = base
    p, at = recipe.poison, recipe.poison_step
    if p == "diverge" and step >= at:
        lr *= 100
    elif p == "plateau" and step >= at:
        lr = base * 1e-6
    elif p == "lr_decay" and step >= at:
        lr *= 0.1
    return lr


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = (m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    return [(f"{type(m).__name__.lower()}{i}", m) for i, m in enumerate(found)]


def _norm(tensors: list[Any]) -> float:
    """The L2 norm of a list of tensors taken together (a layer's weight and bias, as watch does)."""
    return float(torch.stack([t.detach().norm(2) for t in tensors if t is not None]).norm(2))


def _grad_norm(model: nn.Module) -> float:
    norms = [p.grad.detach().norm(2) for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm(2)) if norms else 0.0


def record(name: str, recipe: Recipe) -> Run:
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(1)
    xt, yt, xv, yv = _data(recipe)
    n_out = int(yt.max()) + 1
    model = _model(recipe, xt[0].numel() if recipe.family != "cnn" else 1, n_out)
    if recipe.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9)
    else:
        decay = 1e-2 if recipe.family == "tabular" else 0.0
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay or decay)
    per_epoch = max(1, len(xt) // recipe.batch)
    total = recipe.epochs * per_epoch
    run = Run(name, recipe, per_epoch)
    rng = np.random.default_rng(recipe.seed)

    def put(split: str, metric: str, step: int, value: float) -> None:
        run.series.setdefault(f"{split}|{metric}", []).append(value)
        run.steps.setdefault(f"{split}|{metric}", []).append(step)

    loss_fn = nn.CrossEntropyLoss()
    for step in range(total):
        lr = _lr(recipe, step, total)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.from_numpy(rng.integers(0, len(xt), recipe.batch))
        opt.zero_grad()
        logits = model(xt[idx])
        loss = loss_fn(logits, yt[idx])
        if recipe.poison == "nan" and step >= recipe.poison_step:
            loss = loss * torch.tensor(float("nan"))
        loss.backward()
        put("train", "loss", step, float(loss.detach()))
        put("train", "grad_norm", step, _grad_norm(model))
        put("train", "lr", step, lr)
        put("train", "accuracy", step, float((logits.argmax(1) == yt[idx]).float().mean()))
        costly = step % 10 == 0  # per-layer norms and update ratios, as aitrace.torch.watch(every=10) sends them
        layers = _layers(model)
        before = {name: [p.detach().clone() for p in layer.parameters()] for name, layer in layers} if costly else {}
        if costly:
            for name, layer in layers:
                put("train", f"grad_norm/{name}", step, _norm([p.grad for p in layer.parameters()]))
        opt.step()
        for name, layer in layers if costly else ():
            now = [p.detach() for p in layer.parameters()]
            weight = _norm(now)
            ratio = _norm([a - b for a, b in zip(before[name], now, strict=True)]) / weight if weight > 0 else math.nan
            put("train", f"update_ratio/{name}", step, ratio)
        if (step + 1) % per_epoch == 0:
            with torch.no_grad():
                vl = model(xv)
                put("val", "loss", step, float(loss_fn(vl, yv)))
                put("val", "accuracy", step, float((vl.argmax(1) == yv).float().mean()))
    return run


def healthy(seeds: tuple[int, ...] = (0, 1, 2)) -> list[tuple[str, Recipe]]:
    """The healthy runs. The tabular MLP trains 6 epochs: at 12 (the recipe until 2026-12-05)
    its validation loss was lowest at epoch 2-6 and ended 14-23 % above that on 5 of seeds
    0-9 while the training loss ended 2-10x below it: it over-fit, and is kept
    as a pathology (``overfit-tabular``). At 6 epochs the minimum is at epoch 3-5 and the
    last evaluation at most 4 % above it on the same 10 seeds. The SGD MLP (momentum, lr 0.1, x0.1
    at 40 %, batches of 32; found by a sweep of recipes outside these) takes its loss to ~0.003,
    where one hard batch reads 10-30x its level, and converges with half the run to go: before
    2026-12-06 it paged 1-3 loss spikes or a plateau per seed 0-5 (its last validation loss at
    most 7 % above its best)."""
    out = []
    for seed in seeds:
        out += [
            (f"mlp-s{seed}", Recipe("mlp", seed, lr=2e-3)),
            (f"cnn-s{seed}", Recipe("cnn", seed, lr=2e-3)),
            (f"tabular-s{seed}", Recipe("tabular", seed, epochs=6, batch=32, lr=1e-3)),
            (f"deep_relu-s{seed}", Recipe("deep_relu", seed, lr=0.02, optimizer="sgd", schedule="step", depth=8)),
            (f"sgd_mlp-s{seed}", Recipe("mlp", seed, lr=0.1, optimizer="sgd", schedule="step", batch=32)),
        ]
    return out


def slow_starters() -> list[tuple[str, Recipe]]:
    """Controls for the stall rules: a 6-layer ReLU net with PyTorch's default init and SGD at a
    constant 0.05 sits at its starting loss for 90 to 150 steps, then learns (to 0.13-0.15 by
    step 330); a stall rule that pages on it early is wrong."""
    recipe = {"lr": 0.05, "optimizer": "sgd", "schedule": "constant", "depth": 6, "he_init": False}
    return [(f"slow_relu-s{seed}", Recipe("deep_relu", seed, **recipe)) for seed in (0, 1, 2)]


def pathologies() -> list[tuple[str, str, Recipe]]:
    """(name, pathology, recipe): what is injected and where it should show."""
    sgd: dict[str, Any] = {"optimizer": "sgd", "schedule": "constant"}
    return [
        (
            "diverge",
            "diverging",
            Recipe("deep_relu", 0, lr=0.02, poison="diverge", **sgd),
        ),
        ("nan", "nan", Recipe("mlp", 0, lr=2e-3, poison="nan", poison_step=200)),
        ("stalled", "stalled", Recipe("mlp", 0, lr=1e-7, schedule="constant")),
        # the lr 1e-6 under Adam: each weight moves ~1e-6 a step, 1.5e-5 of a 64-input layer's size
        ("stalled-1e-6", "stalled", Recipe("mlp", 0, lr=1e-6, schedule="constant")),
        ("stalled-1e-6-tabular", "stalled", Recipe("tabular", 0, lr=1e-6, schedule="constant")),
        ("plateau", "plateau", Recipe("mlp", 0, lr=2e-3, schedule="constant", poison="plateau", poison_step=100)),
        (
            "vanishing",
            "vanishing_gradients",
            Recipe("deep_sigmoid", 0, lr=0.05, depth=12, **sgd),
        ),
        ("vanishing-deep", "vanishing_gradients", capped_tanh(0, "sgd")),
        ("vanishing-deep-adam", "vanishing_gradients", capped_tanh(0, "adam")),
        ("overfit", "overfitting", Recipe("mlp", 0, epochs=200, batch=16, lr=3e-3, schedule="constant", train_rows=64)),
        ("overfit-tabular", "overfitting", Recipe("tabular", 0, epochs=12, batch=32, lr=1e-3)),
        ("lr-decay", "none (a schedule)", Recipe("mlp", 1, lr=2e-3, schedule="constant", poison="lr_decay")),
        ("underfit-narrow", "underfitting", Recipe("mlp", 0, lr=2e-3, width=4)),
        ("underfit-decay", "underfitting", Recipe("mlp", 0, lr=2e-3, weight_decay=30.0)),
    ]


def capped_tanh(seed: int, optimizer: str) -> Recipe:
    """A 12-layer tanh net whose logits a tanh caps at 10, at a constant lr: SGD + momentum at 0.1
    or Adam at 0.03. The output saturates within ~20 steps and the global gradient norm collapses
    by 3 to 5 decades while the loss stays at chance (ln 10) or, at 3 of 6 SGD seeds, above it (4-5.5)."""
    lr = 0.1 if optimizer == "sgd" else 0.03
    return Recipe("deep_tanh", seed, lr=lr, depth=12, cap=10.0, optimizer=optimizer, schedule="constant")


def vanishers(seeds: tuple[int, ...]) -> list[tuple[str, Recipe]]:
    """The two vanishing-gradient runs whose global norm collapses (``capped_tanh``) at these seeds."""
    return [(f"vanishing-deep-{opt}-s{seed}", capped_tanh(seed, opt)) for seed in seeds for opt in ("sgd", "adam")]


def overfitters(seeds: tuple[int, ...]) -> list[tuple[str, Recipe]]:
    """Runs that over-fit, three families: an MLP and a CNN on 64 rows of digits, a tabular MLP
    on 48 rows of breast cancer, at a constant learning rate long after the training loss is ~0."""
    const: dict[str, Any] = {"batch": 16, "schedule": "constant"}
    out = []
    for seed in seeds:
        out += [
            (f"overfit-mlp-s{seed}", Recipe("mlp", seed, epochs=200, lr=3e-3, train_rows=64, **const)),
            (f"overfit-cnn-s{seed}", Recipe("cnn", seed, epochs=100, lr=2e-3, train_rows=64, **const)),
            (f"overfit-tab-s{seed}", Recipe("tabular", seed, epochs=150, lr=3e-3, train_rows=48, **const)),
        ]
    return out


def underfitters(seeds: tuple[int, ...]) -> list[tuple[str, Recipe]]:
    """Runs that under-fit the digits: MLPs of one hidden layer of 2 or 4 units, and the healthy MLP
    under an AdamW weight decay of 30, with the healthy recipe's Adam, warm-up and cosine decay."""
    out = []
    for seed in seeds:
        out += [
            (f"underfit-w2-s{seed}", Recipe("mlp", seed, lr=2e-3, width=2)),
            (f"underfit-w4-s{seed}", Recipe("mlp", seed, lr=2e-3, width=4)),
            (f"underfit-decay-s{seed}", Recipe("mlp", seed, lr=2e-3, weight_decay=30.0)),
        ]
    return out


def record_all() -> dict[str, Run]:
    runs = {name: record(name, r) for name, r in healthy()}
    runs.update({name: record(name, r) for name, _p, r in pathologies()})
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    runs = record_all()
    flat = {}
    for name, run in runs.items():
        for key, vals in run.series.items():
            flat[f"{name}::{key}::v"] = np.asarray(vals)
            flat[f"{name}::{key}::s"] = np.asarray(run.steps[key])
        flat[f"{name}::spe"] = np.asarray(run.steps_per_epoch)
    np.savez(args.out, **flat)
    for name, run in runs.items():
        loss = np.asarray(run.series["train|loss"])
        gn = np.asarray(run.series["train|grad_norm"])
        vl = np.asarray(run.series["val|loss"])
        print(
            f"{name:14s} steps {loss.size:5d}  loss {loss[:20].mean():.3g} -> {loss[-20:].mean():.3g}  "
            f"grad {gn[:20].mean():.3g} -> {gn[-20:].mean():.3g}  val {vl[0]:.3g} -> last {vl[-1]:.3g}"
        )


if __name__ == "__main__":
    main()
