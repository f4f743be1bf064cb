"""The worker's training rules on real PyTorch runs, beside a rolling z-score baseline.

    .venv/bin/python bench/bench_training.py            # records the runs (about 20 s), then scores them

The runs are ``training_runs.py``'s: 12 healthy runs (MLP and CNN on digits with Adam,
warm-up and cosine decay; a tabular MLP on breast cancer with AdamW; an 8-layer ReLU net
with SGD, momentum and a step decay; 3 seeds each) and one run per pathology (diverging
after an lr x100, NaN from step 200, stalled at lr 1e-7, plateau after the lr drops to ~0 at
step 100, a 12-layer sigmoid net, over-fitting on 64 rows, and an lr x0.1 step decay that
must stay quiet). Every series of a run reaches ``SeriesDetectors`` in chunks of 20 steps,
as the worker receives them; an incident is an alert's first version. The baseline flags
|z| > 4 against the previous 100 points of each series (incidents 50 points apart).

Targets (issue 10): 0 alerts on the healthy runs; each pathology found on its own series
within 30 steps of its onset (3 epochs for epoch-level signals).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import training_runs as R
from bench_realdata import zscore_incidents

T0 = 1_800_000_000_000_000
CHUNK = 20
ONSET = {"diverging": 150, "nan": 200, "stalled": 0, "plateau": 100, "vanishing_gradients": 0, "overfitting": None}


def worker_alerts(run: R.Run) -> list[tuple[int, str]]:
    """(step, detector:series) of every incident the worker's rules open on the run."""
    from aitrace.processors.detection import SeriesDetectors

    det = SeriesDetectors({})
    steps = {k: np.asarray(v) for k, v in run.steps.items()}
    values = {k: np.asarray(v, dtype=np.float64) for k, v in run.series.items()}
    total = max(int(s.max()) for s in steps.values()) + 1
    out = []
    for k, lo in enumerate(range(0, total, CHUNK)):
        series = {}
        for key, st in steps.items():
            m = (st >= lo) & (st < lo + CHUNK)
            if m.any():
                series[key] = {"steps": st[m], "times": T0 + st[m] * 100_000, "values": values[key][m]}
        chunk = {"kind": "run", "run_id": run.name, "service": "bench", "trace_id": "0" * 32, "ctx": None}
        for a in det.apply({**chunk, "series": series}, source="s:0", offset=k).alerts:
            if a["version"] == 1:
                out.append((int(a.get("step") or 0), f"{a['detector']}:{a['series'].split('/', 2)[-1]}"))
    return out


def baseline_incidents(run: R.Run) -> int:
    return sum(len(zscore_incidents(np.asarray(v, dtype=np.float64))) for v in run.series.values())


def main() -> int:
    print("recording real runs ...", flush=True)
    healthy = {name: R.record(name, r) for name, r in R.healthy()}
    print(f"(a) healthy runs ({len(healthy)}): incidents opened   target 0")
    total = base = 0
    for name, run in healthy.items():
        ours, b = worker_alerts(run), baseline_incidents(run)
        total, base = total + len(ours), base + b
        print(f"    {name:14s} aitrace {len(ours):3d} {[f'{d}@{s}' for s, d in ours][:4]}   rolling z {b:3d}")
    print(f"    {'all':14s} aitrace {total:3d}   rolling z {base:3d}")
    print("(b) pathologies: the first incident that names it, and its delay from the onset")
    for name, pathology, recipe in R.pathologies():
        run = R.record(name, recipe)
        ours = worker_alerts(run)
        onset = ONSET.get(pathology)
        named = [(s, d) for s, d in ours if d.split(":")[0] in _NAMES.get(pathology, ())]
        first = f"{named[0][1]} at step {named[0][0]}" if named else "not found"
        delay = f"delay {named[0][0] - onset} steps" if named and onset is not None else ""
        others = [f"{d}@{s}" for s, d in ours if (s, d) not in named[:1]][:4]
        print(f"    {name:10s} {pathology:20s} {first:38s} {delay:16s} other: {others}")
    return 0


_NAMES = {
    "diverging": ("spike", "diverging", "nan", "inf", "exploding", "level_shift"),
    "nan": ("nan", "inf", "diverging"),
    "stalled": ("stalled",),
    "plateau": ("plateau", "stalled"),
    "vanishing_gradients": ("vanishing", "vanishing_gradients"),
    "overfitting": ("overfitting",),
}

if __name__ == "__main__":
    raise SystemExit(main())
