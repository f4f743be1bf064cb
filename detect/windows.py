"""Stateful window checks of the processors, on plain arrays and a JSON-safe state dict:
the prediction-label join, per-feature and label checks of data-stats summaries, and the
over- and under-fitting checks (a model in service's latency, rate and drift windows are the objects of
:mod:`aitrace.detect.service`).

Every function takes a series state (a dict the processors keep in a Faust table) and whole
arrays, and updates the state in place; the statistics themselves (robust anomaly scores,
two-sample KS, PSI, drift on summaries) are the rest of :mod:`aitrace.detect`'s. This module
was ``processors/_kernels.py``: the rules live in the detect layer, the processors only wire.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from aitrace.detect.drift_monitor import detect_drift
from aitrace.detect.overfit import OVERFIT_MIN_RISE as OVERFIT_MIN_RISE
from aitrace.detect.overfit import held_rise
from aitrace.detect.underfit import UNDERFIT_RECENT, under_fit

_MAX_TRAIN_KEPT = 512
OVERFIT_LEARNT = 0.9  # a run whose training loss stands above this share of its start has not learnt (_learnt)
_MAX_VAL_KEPT = 64
_KEPT_ENDS = 8  # the stretches before one whose ends tell a resume from a batch index's next epoch
_MAX_CATEGORIES = 1000
_EPS = 1e-6


# ---------------------------------------------------------------- drift statistics


def psi_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of two category count vectors, smoothed on the counts (1e-6 each) rather than floored
    at 1e-4 as :func:`~aitrace.detect.drift.psi_from_counts` does: a category never seen in the
    reference then weighs in fully (the label checks' thresholds were set on this form)."""
    p = np.asarray(reference, dtype=np.float64) + _EPS
    q = np.asarray(current, dtype=np.float64) + _EPS
    p /= p.sum()
    q /= q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


# ---------------------------------------------------------------- ground-truth join


def join_labels(
    state: dict[str, Any], requests: list[list[Any]], labels: list[dict[str, Any]], *, limit: int
) -> list[tuple[dict[str, Any], list[Any] | None]]:
    """Match labels to predictions by request id, whichever arrives first.

    Returns ``(label event, [prediction, time, event_id, trace_id] or None)``: a label with
    no prediction yet is returned (to be indexed) and kept waiting; it is returned again,
    joined, when its prediction comes. Both waiting rooms keep the newest ``limit`` entries.
    """
    preds: dict[str, list[Any]] = state.setdefault("pred", {})
    waiting: dict[str, dict[str, Any]] = state.setdefault("wait", {})
    out: list[tuple[dict[str, Any], list[Any] | None]] = []
    for request_id, prediction, time_us, event_id, trace_id in requests:
        label = waiting.pop(request_id, None)
        if label is not None:
            out.append((label, [prediction, time_us, event_id, trace_id]))
        else:
            preds[request_id] = [prediction, time_us, event_id, trace_id]
    for event in labels:
        request_id = event["payload"][1]["request_id"]
        pred = preds.pop(request_id, None)
        if pred is None:
            waiting[request_id] = event
        out.append((event, pred))
    for room in (preds, waiting):
        # oldest first (insertion order), in one pass: popping them one at a time rescans the
        # dict's freed slots from its start on every pop
        for request_id in list(itertools.islice(room, max(0, len(room) - limit))):
            del room[request_id]
    return out


# ---------------------------------------------------------------- data stats


def _reference(feature: dict[str, Any]) -> dict[str, Any]:
    cats = dict(sorted(feature.get("categories", {}).items(), key=lambda kv: -kv[1])[:_MAX_CATEGORIES])
    return {
        "count": feature["count"],
        "missing": feature.get("missing", 0),
        "mean": feature.get("mean"),
        "variance": feature.get("variance"),
        "edges": list(feature.get("histogram_edges") or []),
        "hist": list(feature.get("histogram_counts") or []),
        "categories": cats,
    }


def _missing_rate(count: int, missing: int) -> float:
    return missing / max(count + missing, 1)


def summary_drift(
    ref: dict[str, Any], feature: dict[str, Any], *, alpha: float
) -> tuple[str, str, str, float, float, str] | None:
    """The drift verdict of :func:`aitrace.detect.detect_drift` on two numeric summaries.

    One rule for the worker and the library: a KS test bounded from the two histograms and
    Welch's t on the moments (each at ``alpha / 2``), so a batch's size decides how far its
    mean may wander. Returns the failed check or None.
    """
    name = feature["name"]
    reference = {
        "count": ref.get("count"),
        "missing": ref.get("missing", 0),
        "mean": ref.get("mean"),
        "variance": ref.get("variance"),
        "histogram_edges": ref.get("edges") or [],
        "histogram_counts": ref.get("hist") or [],
    }
    if not reference["histogram_counts"] and (reference["mean"] is None or reference["variance"] is None):
        return None
    (result,) = detect_drift({name: reference}, {name: feature}, alpha=alpha, correction="none")
    if not result.drifted:
        return None
    detector = "mean_shift" if result.test == "welch_t" else "ks"
    big = (result.psi or 0.0) >= 0.5 or (result.effect_name == "smd" and result.effect_size >= 1.0)
    severity = "critical" if big or result.effect_size >= 0.5 else "warning"
    text = result.message.replace(f"{name} drifted: ", f"distribution of {name!r} moved against the reference batch: ")
    return ("drift", detector, severity, result.effect_size, alpha, text)


def feature_checks(
    state: dict[str, Any], feature: dict[str, Any], cfg: Any, n_features: int = 1
) -> list[tuple[str, str, str, float, float, str]]:
    """Compare one batch's FeatureStats with the reference (the series' first batch).

    Numeric drift is :func:`summary_drift` at ``cfg.drift_alpha`` shared (Bonferroni) over
    the ``n_features`` features of the batch.

    Returns ``(kind, detector, severity, statistic, threshold, text)`` for each failed check.
    """
    ref = state.get("ref")
    if ref is None:
        state["ref"] = _reference(feature)
        return []
    name = feature["name"]
    out: list[tuple[str, str, str, float, float, str]] = []
    ref_rate = _missing_rate(ref["count"], ref["missing"])
    rate = _missing_rate(feature["count"], feature.get("missing", 0))
    n = feature["count"] + feature.get("missing", 0)
    allowed = ref_rate + max(cfg.missing_jump, 3.0 * math.sqrt(max(ref_rate * (1 - ref_rate), _EPS) / max(n, 1)))
    if rate > allowed:
        out.append(
            (
                "data_quality",
                "missing_rate",
                "warning",
                rate,
                allowed,
                f"missing values of {name!r} at {rate:.1%} (reference {ref_rate:.1%})",
            )
        )
    if feature.get("dtype") != "categorical" and not feature.get("categories"):
        problem = summary_drift(ref, feature, alpha=cfg.drift_alpha / max(1, n_features))
        if problem is not None:
            out.append(problem)
    categories = feature.get("categories") or {}
    if categories and ref["categories"]:
        out.extend(_category_checks(ref["categories"], categories, name, "unseen_category", cfg))
    return out


def label_checks(
    state: dict[str, Any], counts: dict[str, int], cfg: Any
) -> list[tuple[str, str, str, float, float, str]]:
    """Class counts of a batch against the reference batch: unseen labels, label drift."""
    ref = state.get("ref")
    if ref is None:
        state["ref"] = {"categories": dict(sorted(counts.items(), key=lambda kv: -kv[1])[:_MAX_CATEGORIES])}
        return []
    return _category_checks(ref["categories"], counts, "label", "unseen_label", cfg)


def _category_checks(
    ref: dict[str, int], cur: dict[str, int], name: str, unseen_detector: str, cfg: Any
) -> list[tuple[str, str, str, float, float, str]]:
    out: list[tuple[str, str, str, float, float, str]] = []
    total = sum(cur.values()) or 1
    unseen = sorted(k for k in cur if k not in ref and cur[k] > 0)
    if unseen:
        share = sum(cur[k] for k in unseen) / total
        shown = ", ".join(repr(k) for k in unseen[:5])
        out.append(
            (
                "data_quality",
                unseen_detector,
                "warning",
                share,
                0.0,
                f"{len(unseen)} unseen values of {name!r} ({shown})",
            )
        )
    keys = sorted(set(ref) | set(cur))
    value = psi_counts(np.asarray([ref.get(k, 0) for k in keys]), np.asarray([cur.get(k, 0) for k in keys]))
    if value >= cfg.psi_warning:
        severity = "critical" if value >= cfg.psi_critical else "warning"
        out.append(
            ("drift", "psi", severity, value, cfg.psi_warning, f"distribution drift of {name!r} (PSI {value:.2f})")
        )
    return out


# ---------------------------------------------------------------- over- and under-fitting

Fit = tuple[tuple[float, int, int, list[float]] | None, int, int] | None


def _keep_losses(state: dict[str, Any], train: dict[str, Any] | None, val: dict[str, Any] | None) -> int:
    """Append a chunk's finite training and validation losses to ``state``; how many validation points came."""
    # (step, value, time): lists once restored; (step, value) in a state saved before times were kept
    tr: list[Sequence[float]] = state.setdefault("train", [])
    va: list[Sequence[float]] = state.setdefault("val", [])  # (step, value, time)
    if train is not None:
        values = np.asarray(train["values"], dtype=np.float64)
        keep = np.isfinite(values)
        steps = np.asarray(train["steps"], dtype=np.int64)[keep][-_MAX_TRAIN_KEPT:].tolist()
        times = np.asarray(train["times"], dtype=np.int64)[keep][-_MAX_TRAIN_KEPT:].tolist()
        tr.extend(zip(steps, values[keep][-_MAX_TRAIN_KEPT:].tolist(), times, strict=True))
        del tr[:-_MAX_TRAIN_KEPT]
    if val is None:
        return 0
    values = np.asarray(val["values"], dtype=np.float64)
    keep = np.isfinite(values)
    steps = np.asarray(val["steps"], dtype=np.int64)[keep]
    times = np.asarray(val["times"], dtype=np.int64)[keep]
    va.extend(zip(steps.tolist(), values[keep].tolist(), times.tolist(), strict=True))
    _trim_evaluations(va)
    return int(keep.sum())


def _trim_evaluations(va: list[Sequence[float]]) -> None:
    """Keep the last evaluations, at most ``_MAX_VAL_KEPT`` in all, led by the run's best before them where it is
    lower than every one of them, and by the highest before that best: the over-fitting rule measures a rise from
    the best, and asks the highest before it whether the curve turned past a minimum (``overfit.steady_rise``). A
    run evaluated every few steps that climbed slowly past 64 evaluations (13 % over 120, a wine MLP on 64 rows,
    /work/rev-ad) read its rise from the lowest it still kept (4 %), and its over-fitting was never found."""
    if len(va) <= _MAX_VAL_KEPT:
        return
    cut = len(va) - (_MAX_VAL_KEPT - 2)
    old, kept = va[:cut], va[cut:]
    best = min(range(len(old)), key=lambda i: old[i][1])
    # a best at a later step than the evaluations kept is a branch the run went back from (resumed from an earlier
    # checkpoint): it is no reference for the run as it stands (a resumed run still improving paged over-fitting
    # against it, /work/rev-af D3), and it goes as any evaluation does
    if old[best][1] >= min(x[1] for x in kept) or old[best][0] > min(x[0] for x in kept):
        va[:] = va[-_MAX_VAL_KEPT:]
        return
    peak = max(range(best), key=lambda i: old[i][1]) if best else None
    va[:] = [old[i] for i in (peak, best) if i is not None] + kept


def _each_new_evaluation(
    state: dict[str, Any], new: int, rule: Callable[[np.ndarray, list[float], np.ndarray, np.ndarray], float | None]
) -> Fit:
    """Ask ``rule`` at each of the ``new`` validation points in turn (a chunk holding several
    evaluations reports the first one at which the rule held, not the chunk's last).

    The rules see when each loss came (:func:`_order`) and the run's evaluations as it now stands
    (:func:`_as_it_stands`); an evaluation sent again is not judged again."""
    tr, va = state["train"], state["val"]
    last_time = int(va[-1][2])
    if len(va) < 3 or len(tr) < 4:
        return None, 0, last_time
    v = np.asarray([x[1] for x in va])
    t_at, v_at, resumed_at = _order(tr, va)
    t_vals = np.asarray([x[1] for x in tr])
    judged = 0
    for end, kept in _as_it_stands(va, v_at, resumed_at):
        if end < max(3, len(va) - new) or kept is None:
            continue
        judged += 1
        kept.sort(key=lambda i: v_at[i])  # stable: evaluations at one point of the run in the order they came
        p, p_at = v[kept], [v_at[i] for i in kept]
        found = rule(p, p_at, t_at, t_vals)
        if found is not None:
            return (found, int(va[end][0]), int(va[end][2]), p[int(np.argmin(p)) :].tolist()), 0, last_time
    return None, 10 * judged, last_time  # an evaluation sent again is no evidence that an incident ended


def _as_it_stands(
    va: list[Sequence[float]], v_at: list[float], resumed_at: np.ndarray
) -> Iterator[tuple[int, list[int] | None]]:
    """Each evaluation in the order it came, with the evaluations the run stands on then (None: this one was
    sent again, not to be judged again).

    An evaluation at a point of the run already evaluated was sent again where a run resumed from its
    checkpoint between the two (its training steps went back, :func:`_order`): the evaluations from that point
    on are replaced by the resumed run's (in the order they came, its repeated evaluations read as evaluations
    without a new best: 2 of 3 healthy slow starters were called under-fitting); or where it is the same loss
    at the same step and time (a redelivery), left out. Else it is a new evaluation at a point the steps cannot tell
    apart (a loop that logs the batch index every few batches holds several epochs in one stretch) and is
    judged, after the others at that point."""
    kept: list[int] = []
    top, top_time = -math.inf, 0  # the furthest point evaluated so far, and when it was
    seen: set[tuple[float, ...]] = set()
    for j, x in enumerate(va):
        at, when = v_at[j], int(x[2]) if len(x) > 2 else -1
        again = at <= top and bool(((resumed_at > top_time) & (resumed_at <= when)).any())
        if again:
            kept = [i for i in kept if v_at[i] < at]
        elif at <= top and tuple(x) in seen:
            yield j, None
            continue
        seen.add(tuple(x))
        kept.append(j)
        if at > top:
            top, top_time = at, when
        yield j, (None if again else list(kept))


def _order(tr: list[Sequence[float]], va: list[Sequence[float]]) -> tuple[np.ndarray, list[float], np.ndarray]:
    """Where each kept training and validation loss stands in the run's progress, as ranks the rules compare:
    its step within the stretch of training it came in. A stretch ends where the training steps go back: a
    loop that logs the batch index starts one every epoch, a run resumed from a checkpoint one where it
    resumed; an evaluation belongs to the stretch going on at its event time. By steps alone, a loop logging
    the batch index sent every evaluation at the same few steps, no training loss came after the best one,
    and over-fitting was never found. Within a stretch the steps decide, not the times: a finished run's
    history sent afterwards has times of the sending (all its training losses before all its evaluations),
    and an evaluator may stamp a checkpoint's loss a while after its step. A training loss kept by a state
    from before has no time: a stretch it starts holds every evaluation after it. Third: when each stretch
    that carries on the one before (a resume) began."""
    t_steps = np.asarray([x[0] for x in tr], dtype=np.int64)
    back = np.flatnonzero(np.diff(t_steps) < 0) + 1  # where a stretch starts (the first is the run's)
    t_stretch = np.searchsorted(back, np.arange(t_steps.size), side="right")
    starts = np.asarray([tr[k][2] if len(tr[k]) > 2 else -1 for k in back.tolist()], dtype=np.int64)
    v_times = np.asarray([x[2] for x in va], dtype=np.int64)
    # the stretch going on at each evaluation's time: the last one begun by then (times of stretches in order)
    v_stretch = np.searchsorted(np.maximum.accumulate(starts) if starts.size else starts, v_times, side="right")
    v_steps = np.asarray([x[0] for x in va], dtype=np.int64)
    t_times = np.asarray([x[2] if len(x) > 2 else -1 for x in tr], dtype=np.int64)
    for i in np.flatnonzero(v_stretch > 0).tolist():  # an evaluation stamped after its stretch ended (a late
        # evaluator): its stretch is the one before where the one going on has not reached its step by then
        now = (t_stretch == v_stretch[i]) & (t_times <= v_times[i])
        if not now.any() or int(t_steps[now].max()) < v_steps[i]:
            v_stretch[i] -= 1
    pairs = np.empty(t_steps.size + len(va), dtype=[("stretch", np.int64), ("step", np.int64)])
    same = _resumed(t_steps, back)  # a stretch that carries on the one before it: one count of steps
    ids = np.concatenate([[0], np.cumsum(~same)])
    pairs["stretch"] = np.concatenate([ids[t_stretch], ids[v_stretch]])
    pairs["step"] = np.concatenate([t_steps, v_steps])
    rank = np.unique(pairs, return_inverse=True)[1].reshape(-1).astype(np.float64)
    return rank[: t_steps.size], rank[t_steps.size :].tolist(), np.sort(starts[same])


def _resumed(steps: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Per stretch after the first: whether it resumes the run from a checkpoint and so carries on the stretch
    before it. It starts past the run's first step (the lowest kept) by more than a logging stride, goes on
    within the steps sent before (a stray point, as an epoch's mean logged at step = epoch, is followed by a
    step past them; a stretch of one point so far resumes nothing), and the stretch before ended elsewhere than
    the last few before it (the epochs of a loop that logs the batch index end at one step, and a checkpoint's
    epoch cannot be told). Any other stretch is counted on from the one before, as every stretch was."""
    if not back.size:
        return np.zeros(0, dtype=bool)
    forward = np.diff(steps)
    stride = float(forward[forward > 0].min()) if (forward > 0).any() else 1.0
    ends = steps[back - 1]  # where each stretch before a new one ended
    seen = np.zeros(back.size, dtype=bool)
    for d in range(1, min(_KEPT_ENDS, back.size - 1) + 1):  # ...where one of the stretches before it ended
        seen[d:] |= ends[d:] == ends[:-d]
    nxt = np.minimum(back + 1, steps.size - 1)
    goes_on = (back + 1 < steps.size) & ~np.isin(back + 1, back)  # the stretch has a second point
    within = goes_on & (steps[nxt] <= ends)
    return (steps[back] > np.minimum.accumulate(steps)[back - 1] + stride) & within & ~seen


def overfitting_update(state: dict[str, Any], train: dict[str, Any] | None, val: dict[str, Any] | None) -> Fit:
    """Keep recent train and validation loss; at each new validation point ask whether
    validation loss rose above its best while training loss kept falling.

    Returns None when no validation point arrived, else ``(finding or None, clean, time)``
    where a finding is ``(relative rise, step, time, validation losses)``.
    """
    _note_start(state, train, val, False)  # (the run's start: a run that has not learnt does not over-fit)
    new = _keep_losses(state, train, val)
    return _over_fit(state, new) if new else None


def underfitting_update(
    state: dict[str, Any], train: dict[str, Any] | None, val: dict[str, Any] | None, scored: bool
) -> Fit:
    """:func:`~aitrace.detect.underfit.under_fit` at each new validation point of a run that
    sends an accuracy-like score (``scored``, remembered once seen: a classifier).

    Returns as :func:`overfitting_update` does; a finding's value is the training loss's
    level as a share of its start (the median of its first finite values, kept here).
    """
    return fitting_update(state, train, val, scored)[1]


def fitting_update(
    state: dict[str, Any], train: dict[str, Any] | None, val: dict[str, Any] | None, scored: bool
) -> tuple[Fit, Fit]:
    """:func:`overfitting_update` and :func:`underfitting_update` on one state: the losses kept once."""
    _note_start(state, train, val, scored)
    new = _keep_losses(state, train, val)
    if not new:
        return None, None
    return _over_fit(state, new), _under_fit_verdicts(state, new)


def _over_fit(state: dict[str, Any], new: int) -> Fit:
    return _each_new_evaluation(state, new, held_rise) if _learnt(state) else (None, 0, int(state["val"][-1][2]))


def _learnt(state: dict[str, Any]) -> bool:
    """Whether the training loss (median of the last 16) is ``OVERFIT_LEARNT`` of its start or less: a net that
    learns nothing does not over-fit (a residual CNN at lr 1e-7 whose BatchNorm statistics settled, its validation
    loss 2.34 -> 2.62 while its training loss sat at 2.75-2.9, paged over-fitting after its stall on 3 of 4 seeds,
    /work/rev-x). A start not known, or not above 0 (a log-likelihood), is no evidence: judged as before."""
    start = state.get("start") or []
    if len(start) < 4 or float(np.median(start)) <= 0:
        return True
    recent = [x[1] for x in state["train"][-16:]]
    return bool(recent) and float(np.median(recent)) <= OVERFIT_LEARNT * float(np.median(start))


def _note_start(state: dict[str, Any], train: dict[str, Any] | None, val: dict[str, Any] | None, scored: bool) -> None:
    """Keep the training losses of the run's start, its first validation loss and whether it is a classifier.

    The start is the first ``UNDERFIT_RECENT`` finite training losses made up to the first
    evaluation: a run of 3 steps an epoch has learnt most of what it will in 16 steps (a tabular
    MLP on 48 rows fell from 0.71 to 0.05 in them), and a level judged against that would call a
    run that fits well under-fitting.
    """
    start: list[float] = state.setdefault("start", [])
    first_eval = None
    if not state.get("start_closed") and val is not None and len(val["steps"]):
        first_eval = (int(np.min(val["steps"])), int(np.min(val["times"])))
    if train is not None and len(start) < UNDERFIT_RECENT and not state.get("start_closed"):
        values = np.asarray(train["values"], dtype=np.float64)
        keep = np.isfinite(values)
        if first_eval is not None:  # sent before it, and where the steps only go forward, at a step before it
            steps = np.asarray(train["steps"], dtype=np.int64)
            keep &= np.asarray(train["times"]) <= first_eval[1]
            if bool(np.all(np.diff(steps) >= 0)):
                keep &= steps <= first_eval[0]
        start += values[keep][: UNDERFIT_RECENT - len(start)].tolist()
    if first_eval is not None:
        state["start_closed"] = True
    if "first_val" not in state and val is not None:
        finite = np.asarray(val["values"], dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            state["first_val"] = float(finite[0])
    state["scored"] = bool(state.get("scored")) or scored


def _under_fit_verdicts(state: dict[str, Any], new: int) -> Fit:
    start = state["start"]
    if not state["scored"] or not start or (len(start) < UNDERFIT_RECENT and not state.get("start_closed")):
        return None, 10 * new, int(state["val"][-1][2])
    level = float(start[0])  # the untrained model's loss (detect.underfit)
    first_val = state.get("first_val")
    return _each_new_evaluation(state, new, lambda v, vs, ts, tv: under_fit(v, vs, ts, tv, level, first_val))
