"""The worker's training rules on real PyTorch runs, beside RunChecks and a rolling z-score.

    .venv/bin/python bench/bench_training.py            # records the runs (about 30 s), then scores them
    .venv/bin/python bench/bench_training.py --seeds 5,6,7,8,9 --overfit-seeds 6,7,8,9   # other seeds

The runs are ``training_runs.py``'s: 15 healthy runs (MLP and CNN on digits with Adam,
warm-up and cosine decay; a tabular MLP on breast cancer with AdamW, 6 epochs; an 8-layer
ReLU net with SGD, momentum and a step decay; the MLP with SGD, momentum at lr 0.1 and a step
decay, batches of 32; 3 seeds each, ``--seeds`` for others; each scored also as a job sends
it without aitrace.torch.watch: the global grad norm and lr, no per-layer series or update
ratios), 3 controls (a 6-layer ReLU net with PyTorch's default init that sits at its starting loss
90-150 steps, then learns) and one run per pathology (diverging after an lr x100, NaN from
step 200, stalled at lr 1e-7, plateau after the lr drops to ~0 at step 100 (these two also
without watch's series, ``-global``), vanishing gradients with and without the per-layer
series (a 12-layer sigmoid net, whose global norm its last layers carry, and 12-layer tanh
nets whose capped output saturates, SGD and Adam, whose global norm collapses 3-5 decades
within ~20 steps; onset: the first step whose 5-step median norm is a decade below the first
10 steps'), over-fitting on 64 rows, the tabular MLP trained 12 epochs (mild over-fitting:
the healthy recipe until 2026-12-05), an lr x0.1 step decay that must stay quiet, and
under-fitting: an MLP of 4 hidden units, an MLP under a weight decay of 30);
``--restarts`` adds section (h), every run as a loop that logs the batch index as its step sends it, and
resumed from a checkpoint (the job dies at 60 % of the run, resumes from 45 %), beside global steps;
``--every 10,50`` adds section (g), every run as a loop that logs every n steps sends it (Lightning's
default is 50), ``--underfit-seeds`` adds section (e), under-fitting runs at those seeds, ``--vanish-seeds``
section (f), the tanh runs at those seeds, and ``--overfit-seeds`` section (d), over-fitting
runs of three families (MLP, CNN, tabular on 64 or 48 rows) at those seeds, beside early
stopping with a patience of 3 evaluations (what a training loop would do without aitrace). Every
series of a run reaches ``SeriesDetectors`` in chunks of 20 steps, as the worker receives
them; an incident is an alert's first version (a healthy run also with only its losses and
accuracies: no lr and no gradient norms, as a hand-written loop sends). Beside it, in the same chunks:
:class:`~aitrace.detect.run_checks.RunChecks` alone (the cross-series checks, which the
worker runs too, so the worker column includes them) and a baseline that flags |z| > 4
against the previous 100 points of each series (incidents 50 points apart; for a pathology's
delay only on series that are not schedules, since an lr change is the user's). Delays run
from the onset; for over-fitting from the validation minimum, in evaluations. Section (c)
shows the evidence where over-fitting was flagged, healthy runs beside the pathology.

Targets (issue 10): 0 alerts on the healthy runs; each pathology found on its own series
within 30 steps of its onset (3 epochs for epoch-level signals).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import training_runs as R
from aitrace.detect.underfit import UNDERFIT_MIN_GAIN
from realdata_incidents import zscore_incidents

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
    return sorted(out, key=lambda alert: alert[0])  # in step order: a chunk's alerts come rule by rule


def baseline_incidents(run: R.Run) -> list[tuple[int, str]]:
    """(step, series) of every rolling z-score incident on the run, in step order."""
    out = []
    for key, v in run.series.items():
        steps = run.steps[key]
        out += [(int(steps[i]), key.replace("|", "/")) for i in zscore_incidents(np.asarray(v, dtype=np.float64))]
    return sorted(out)


def run_checks(run: R.Run) -> list[tuple[int, str]]:
    """(step, reason) of detect.RunChecks' findings, fed the training split in the worker's chunks."""
    from aitrace.detect.run_checks import RunChecks

    check, out = RunChecks(), []
    train = {k.split("|", 1)[1]: k for k in run.series if k.startswith("train|")}
    total = max(max(s) for s in run.steps.values()) + 1
    for lo in range(0, total, CHUNK):
        chunk = {}
        for metric, key in train.items():
            st, v = np.asarray(run.steps[key]), np.asarray(run.series[key], dtype=np.float64)
            m = (st >= lo) & (st < lo + CHUNK)
            if m.any():
                chunk[metric] = (st[m], v[m])
        out += [(int(f.step), f.reason) for f in check.update(chunk)]
    return out


def onset_of(pathology: str, run: R.Run) -> int | None:
    """The step a pathology starts; for over-fitting, the validation minimum (the best checkpoint);
    for under-fitting, the evaluation from which the validation loss never again improved its best
    by 2 % (the start of the plateau it ends on, seen from the end of the run)."""
    val = np.asarray(run.series["val|loss"])
    if pathology == "overfitting":
        return int(run.steps["val|loss"][int(np.nanargmin(val))])
    if pathology == "underfitting":
        best = np.minimum.accumulate(val)
        gains = np.flatnonzero(val[1:] < best[:-1] * (1 - UNDERFIT_MIN_GAIN)) + 1
        return int(run.steps["val|loss"][int(gains[-1]) if gains.size else 0])
    if pathology == "vanishing_gradients":
        return collapse_onset(np.asarray(run.series["train|grad_norm"], dtype=np.float64))
    return ONSET.get(pathology)


def collapse_onset(norms: np.ndarray) -> int:
    """The first step whose 5-step median global grad norm is a decade below the median of the first
    10 steps: where a collapse starts; 0 when it never is (the gradients vanish from the first step
    in layers the global norm does not show)."""
    trailing = np.array([np.median(norms[max(0, i - 4) : i + 1]) for i in range(norms.size)])
    hit = np.flatnonzero(trailing <= np.median(norms[:10]) / 10)
    return int(hit[0]) if hit.size else 0


def delay(step: int | None, onset: int | None, run: R.Run, pathology: str) -> str:
    if step is None or onset is None:
        return ""
    if pathology in ("overfitting", "underfitting"):
        return f"+{(step - onset) // run.steps_per_epoch} evals"
    return f"+{step - onset} steps"


def _schedule(key: str) -> bool:
    from aitrace.detect.training import metric_role

    return metric_role(key.split("/", 1)[1]) == "schedule"


def without_layers(run: R.Run) -> R.Run:
    """The run as a job without aitrace.torch.watch's per-layer series sends it (global grad norm only)."""
    return _keep(run, [k for k in run.series if "/" not in k.split("|", 1)[1]])


def scores_only(run: R.Run) -> R.Run:
    """The run as a hand-written loop sends it: losses and accuracies, no lr, no gradient norms."""
    return _keep(run, [k for k in run.series if k.split("|", 1)[1] in ("loss", "accuracy")])


def every(run: R.Run, n: int) -> R.Run:
    """The run as a loop that logs every ``n`` steps sends it (Lightning's default: 50): its training
    series at steps n-1, 2n-1, ... (Lightning logs once ``n`` batches are done), no per-layer series;
    validation as before, once an epoch."""
    out = R.Run(run.name, run.recipe, run.steps_per_epoch)
    for key in run.series:
        split, metric = key.split("|", 1)
        if "/" in metric:
            continue
        steps = np.asarray(run.steps[key])
        keep = steps % n == n - 1 if split == "train" else np.ones(steps.size, dtype=bool)
        out.series[key] = list(np.asarray(run.series[key])[keep])
        out.steps[key] = list(steps[keep])
    return out


def cadence_section(cadences: tuple[int, ...], seeds: tuple[int, ...]) -> None:
    """(g) The runs logged every few steps: incidents on the healthy runs and slow starters, and the first
    finding on each pathology, per cadence."""
    healthy = [R.record(name, recipe) for name, recipe in R.healthy(seeds) + R.slow_starters()]
    sick = [(R.record(name, recipe), pathology) for name, pathology, recipe in R.pathologies()]
    print(f"(g) logged every n steps (global norm and lr, no per-layer series): healthy seeds {seeds} and controls")
    for n in cadences:
        alerts = [(run.name, a) for run in healthy for a in worker_alerts(every(run, n))]
        print(f"    every {n:3d}: {len(alerts)} incidents on {len(healthy)} healthy runs and controls {alerts}")
        for run, pathology in sick:
            names = _NAMES[pathology]
            found = [(step, what) for step, what in worker_alerts(every(run, n)) if what.split(":")[0] in names]
            first = f"{found[0][1]}@{found[0][0]}" if found else "not found"
            print(f"        {run.name:22s} {pathology:20s} {first}")


def restarts_section(seeds: tuple[int, ...]) -> None:
    """(h) The runs as a loop sends them that logs the batch index as its step, and resumed: the job dies at
    60 % of the run and resumes from its checkpoint at 45 %, sending those steps again. Each beside the same
    run with global steps, all in arrival order (200 events a chunk): a run whose incidents differ is listed."""
    runs = [R.record(name, recipe) for name, recipe in R.healthy(seeds) + R.slow_starters()]
    runs += [R.record(name, recipe) for name, _pathology, recipe in R.pathologies()]
    print(f"(h) batch index as the step, and resumed from a checkpoint: healthy seeds {seeds}, controls, pathologies")
    for variant, beside in (("batch index", "global"), ("resumed", "global"), ("batch index, resumed", "resumed")):
        differ = []
        for run in runs:
            plain, other = in_order(run, beside), in_order(run, variant)
            if sorted(plain) != sorted(other):
                differ.append(f"{run.name}: {sorted(set(plain) - set(other))} -> {sorted(set(other) - set(plain))}")
        print(f"    {variant:22s} incidents differ from {beside} steps on {len(differ)} of {len(runs)} runs")
        for line in differ:
            print(f"        {line}")


def in_order(run: R.Run, variant: str) -> list[str]:
    """The worker's incidents (detector:series@the run's step at their event time) on a run sent in arrival
    order, as ``variant`` (global, resumed, batch index, batch index, resumed) sends it."""
    from aitrace.processors.detection import SeriesDetectors

    events = sorted(
        (T0 + s * 100_000 + (50_000 if key.startswith("val|") else 0), key, s, v)
        for key, values in run.series.items()
        for s, v in zip(run.steps[key], values, strict=True)
    )
    if "resumed" in variant:
        last = max(e[2] for e in events)
        crash, back, gap = int(last * 0.6), int(last * 0.45), 10**9
        replay = [(t + gap, k, s, v) for t, k, s, v in events if back < s <= crash]
        later = [(t + gap + (crash - back) * 100_000, k, s, v) for t, k, s, v in events if s > crash]
        events = [e for e in events if e[2] <= crash] + replay + later
    when = {t: s for t, _k, s, _v in events}
    if variant.startswith("batch index"):
        events = [(t, k, s % run.steps_per_epoch, v) for t, k, s, v in events]
    det, out = SeriesDetectors({}), []
    for c, lo in enumerate(range(0, len(events), 200)):
        series: dict = {}
        for t, k, s, v in events[lo : lo + 200]:
            d = series.setdefault(k, {"times": [], "steps": [], "values": []})
            for column, x in zip(d.values(), (t, s, v), strict=True):
                column.append(x)
        series = {k: {f: np.asarray(x) for f, x in d.items()} for k, d in series.items()}
        chunk = {"kind": "run", "run_id": run.name, "service": "bench", "trace_id": "0" * 32, "ctx": None}
        for a in det.apply({**chunk, "series": series}, source="s:0", offset=c).alerts:
            if a["version"] == 1:
                out.append(f"{a['detector']}:{a['series'].split('/', 2)[-1]}@{when.get(a['first_seen'], '?')}")
    return out


def _keep(run: R.Run, keep: list[str]) -> R.Run:
    return R.Run(
        run.name, run.recipe, run.steps_per_epoch, {k: run.series[k] for k in keep}, {k: run.steps[k] for k in keep}
    )


def healthy_section(seeds: tuple[int, ...]) -> list[tuple[str, R.Run, int]]:
    """Count incidents on the healthy runs and the controls; return where over-fitting was flagged."""
    print("recording real runs ...", flush=True)
    groups = {f"healthy, seeds {seeds}": R.healthy(seeds), "controls (slow starters)": R.slow_starters()}
    evidence: list[tuple[str, R.Run, int]] = []
    for title, recipes in groups.items():
        print(f"(a) {title} ({len(recipes)}): incidents opened   target 0")
        total = base = checks = stopped = bare = globl = 0
        for name, recipe in recipes:
            run = R.record(name, recipe)
            ours, b, rc = worker_alerts(run), len(baseline_incidents(run)), run_checks(run)
            scores = [f"{d}@{s}" for s, d in worker_alerts(scores_only(run))]
            loop = [f"{d}@{s}" for s, d in worker_alerts(without_layers(run))]
            total, base, checks, bare = total + len(ours), base + b, checks + len(rc), bare + len(scores)
            globl += len(loop)
            stopped += patience_alert(run) is not None
            shown = [f"{d}@{s}" for s, d in ours][:3]
            print(
                f"    {name:14s} worker {len(ours):3d} {shown}   RunChecks {len(rc)}   rolling z {b:3d}"
                f"   losses and accuracies only {len(scores)} {scores[:2]}   global norm and lr {len(loop)} {loop[:2]}"
            )
            evidence += [(name, run, s) for s, d in ours if d.startswith("overfitting")][:1]
        print(
            f"    {'all':14s} worker {total:3d}   RunChecks {checks}   rolling z {base:3d}   runs early stopping"
            f" (patience 3) would call past their best: {stopped}   losses and accuracies only (no lr, no"
            f" gradient norms, as a hand-written loop sends): {bare}   with the global grad norm and lr but no"
            f" per-layer series: {globl}"
        )
    return evidence


def overfit_evidence(flagged: list[tuple[str, R.Run, int]]) -> None:
    """What the over-fitting rule saw where it fired: the healthy runs' rises beside the pathology's."""
    from aitrace.detect.overfit import mann_kendall

    print("(c) over-fitting where the worker flagged it: the evidence at that evaluation")
    for name, run, step in flagged:
        st, val = np.asarray(run.steps["val|loss"]), np.asarray(run.series["val|loss"])
        acc, k = np.asarray(run.series["val|accuracy"]), int(np.searchsorted(st, step))
        best = int(np.argmin(val[: k + 1]))
        train, tst = np.asarray(run.series["train|loss"]), np.asarray(run.steps["train|loss"])
        fell = np.median(train[(tst > st[best] - run.steps_per_epoch) & (tst <= st[best])]) / np.median(
            train[(tst > step - run.steps_per_epoch) & (tst <= step)]
        )
        _, p_up = mann_kendall(val[max(0, k - 4) : k + 1])
        print(
            f"    {name:16s} eval {k:3d}: {k - best} evals past the best, val loss +{val[k] / val[best] - 1:.0%} "
            f"above it, Mann-Kendall p (last 5) {p_up:.2f}, train loss fell x{fell:.1f} since, "
            f"val accuracy {acc[k] - acc[best]:+.3f}"
        )


def pathology_section() -> list[tuple[str, R.Run, int]]:
    flagged = []
    print("(b) pathologies: first finding that names it and its delay from the onset (3 ways, same run)")
    print(f"    {'run':26s} {'worker':44s} {'RunChecks alone':28s} {'rolling z (non-schedule series)':30s}")
    for name, pathology, recipe in R.pathologies():
        run = R.record(name, recipe)
        variants = [(name, run)]
        if pathology in ("vanishing_gradients", "stalled", "plateau"):
            variants.append((f"{name}-global", without_layers(run)))
        for label, r in variants:
            onset = onset_of(pathology, r)
            ours = worker_alerts(r)
            named = [(s, d) for s, d in ours if d.split(":")[0] in _NAMES.get(pathology, ())]
            w = f"{named[0][1]}@{named[0][0]} {delay(named[0][0], onset, r, pathology)}" if named else "not found"
            rc = [(s, d) for s, d in run_checks(r) if d in _NAMES.get(pathology, ())]
            c = f"{rc[0][1]}@{rc[0][0]} {delay(rc[0][0], onset, r, pathology)}" if rc else "not found"
            z = [(s, k) for s, k in baseline_incidents(r) if onset is not None and s >= onset and not _schedule(k)]
            zb = f"{z[0][1]}@{z[0][0]} {delay(z[0][0], onset, r, pathology)}" if z else "not found"
            others = [f"{d}@{s}" for s, d in ours if (s, d) not in named[:1]][:3]
            print(f"    {label:26s} {w:44s} {c:28s} {zb:30s} worker's others: {others}")
        if pathology == "overfitting" and named:
            flagged.append((name, run, named[0][0]))
    return flagged


def patience_alert(run: R.Run, patience: int = 3) -> int | None:
    """The step at which early stopping with this patience would stop: no new best validation loss
    for ``patience`` evaluations (Keras' EarlyStopping, PyTorch Lightning's; the usual baseline)."""
    val, st = np.asarray(run.series["val|loss"]), run.steps["val|loss"]
    best = np.minimum.accumulate(val)
    since = [k for k in range(patience, val.size) if best[k] == best[k - patience]]
    return int(st[since[0]]) if since else None


def _tally(delays: list[int | None]) -> str:
    found = [d for d in delays if d is not None]
    early, within = sum(d < 0 for d in found), sum(0 <= d <= 3 for d in found)
    after = [d for d in found if d >= 0]
    med = f"{np.median(after):.1f}" if after else "-"
    return (
        f"found {len(found)}/{len(delays)}: 0 to 3 evaluations after the minimum {within}, later"
        f" {len(after) - within} (median of all after it {med}), before it {early}"
    )


def overfit_seeds_section(seeds: tuple[int, ...]) -> None:
    """The worker on over-fitting runs of three families at more seeds: found, and how many
    evaluations after the validation minimum (target: within 3); beside it, early stopping
    with a patience of 3 evaluations on the same runs."""
    print(f"(d) over-fitting runs, seeds {seeds}: the worker's first overfitting alert, from the validation minimum")
    ours: list[int | None] = []
    base: list[int | None] = []
    for name, recipe in R.overfitters(seeds):
        run = R.record(name, recipe)
        onset = onset_of("overfitting", run)
        alerts = worker_alerts(run)
        hits = [s for s, d in alerts if d.startswith("overfitting")]
        for out, step in ((ours, hits[0] if hits else None), (base, patience_alert(run))):
            out.append(None if step is None or onset is None else (step - onset) // run.steps_per_epoch)
        shown = "not found" if ours[-1] is None else f"{ours[-1]:+d} evals"
        others = [d for d in (f"{d}@{s}" for s, d in alerts) if not d.startswith("overfitting")][:2]
        patience = "none" if base[-1] is None else f"{base[-1]:+d}"
        print(f"    {name:18s} {shown:10s} (patience 3: {patience:>4s})   others {others}")
    print(f"    worker:      {_tally(ours)} (a rise the validation loss later came back from)")
    print(f"    patience 3:  {_tally(base)}")


def underfit_seeds_section(seeds: tuple[int, ...]) -> None:
    """The worker on under-fitting runs (MLPs of 2 and 4 hidden units, an MLP under a weight decay of
    30) at more seeds: found, and how many evaluations after the start of the plateau they end on."""
    print(f"(e) under-fitting runs, seeds {seeds}: the worker's first underfitting alert, from the plateau's start")
    found: list[int | None] = []
    for name, recipe in R.underfitters(seeds):
        run = R.record(name, recipe)
        onset, alerts = onset_of("underfitting", run), worker_alerts(run)
        hits = [s for s, d in alerts if d.startswith("underfitting")]
        found.append(None if not hits or onset is None else (hits[0] - onset) // run.steps_per_epoch)
        shown = "not found" if found[-1] is None else f"{found[-1]:+d} evals"
        others = [f"{d}@{s}" for s, d in alerts if not d.startswith("underfitting")][:2]
        print(f"    {name:22s} {shown:10s} of {len(run.series['val|loss'])}   others {others}")
    hit = [d for d in found if d is not None]
    print(f"    found {len(hit)}/{len(found)}, median {np.median(hit) if hit else '-'} evals after the plateau's start")


def vanishing_seeds_section(seeds: tuple[int, ...]) -> None:
    """The worker on the runs whose global grad norm collapses (``training_runs.vanishers``) at more
    seeds, with and without their per-layer series: its first finding that names vanishing
    gradients, in steps from the collapse's onset (target: within 30)."""
    print(f"(f) vanishing-gradient runs, seeds {seeds}: the first vanishing finding, from the collapse's onset")
    delays: dict[str, list[int | None]] = {"per-layer series": [], "global norm only": []}
    for name, recipe in R.vanishers(seeds):
        run = R.record(name, recipe)
        norms = np.asarray(run.series["train|grad_norm"], dtype=np.float64)
        onset, shown = collapse_onset(norms), []
        for (way, out), r in zip(delays.items(), (run, without_layers(run)), strict=True):
            hits = [(s, d) for s, d in worker_alerts(r) if d.split(":")[0] in _NAMES["vanishing_gradients"]]
            out.append(hits[0][0] - onset if hits else None)
            shown.append(f"{way}: {f'{hits[0][1]}@{hits[0][0]} {hits[0][0] - onset:+d}' if hits else 'not found'}")
        fell = np.log10(np.median(norms[:10]) / np.median(norms[-16:]))
        print(f"    {name:26s} onset {onset:3d}, fell {fell:.1f} decades   " + "   ".join(shown))
    for way, found in delays.items():
        hit = [d for d in found if d is not None]
        median = np.median(hit) if hit else "-"
        print(f"    {way}: found {len(hit)}/{len(found)}, within 30 steps {sum(d <= 30 for d in hit)}, median {median}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the healthy runs (comma-separated)")
    ap.add_argument("--overfit-seeds", default="", help="seeds of section (d)'s over-fitting runs; none: skipped")
    ap.add_argument("--underfit-seeds", default="", help="seeds of section (e)'s under-fitting runs; none: skipped")
    ap.add_argument("--vanish-seeds", default="", help="seeds of section (f)'s vanishing-gradient runs; none: skipped")
    ap.add_argument("--every", default="", help="section (g): the runs logged every n steps, e.g. 10,50; none: skipped")
    ap.add_argument("--restarts", action="store_true", help="section (h): batch index as the step, resumed runs")
    args = ap.parse_args()
    seeds = tuple(int(x) for x in args.seeds.split(",") if x)
    flagged = healthy_section(seeds)
    flagged += pathology_section()
    overfit_evidence(flagged)
    if args.overfit_seeds:
        overfit_seeds_section(tuple(int(x) for x in args.overfit_seeds.split(",") if x))
    if args.underfit_seeds:
        underfit_seeds_section(tuple(int(x) for x in args.underfit_seeds.split(",") if x))
    if args.vanish_seeds:
        vanishing_seeds_section(tuple(int(x) for x in args.vanish_seeds.split(",") if x))
    if args.every:
        cadence_section(tuple(int(x) for x in args.every.split(",") if x), seeds)
    if args.restarts:
        restarts_section(seeds)
    return 0


_NAMES = {
    "diverging": ("spike", "diverging", "nan", "inf", "exploding", "level_shift"),
    "nan": ("nan", "inf", "diverging"),
    "stalled": ("stalled",),
    "none (a schedule)": ("stalled", "plateau", "vanishing", "vanishing_gradients"),
    "plateau": ("plateau", "stalled"),
    "vanishing_gradients": ("vanishing", "vanishing_gradients"),
    "overfitting": ("overfitting",),
    "underfitting": ("underfitting",),
}

if __name__ == "__main__":
    raise SystemExit(main())
