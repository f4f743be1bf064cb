"""main's processors/rollup.py, verbatim: the baseline tests/test_rollup_fast.py compares against.

Per-window rollups of fast metric series, with the open window kept in the series state.

An open window held only in memory would lose, when the worker is killed, the part of it
whose records were already committed. Here the open window lives in the same Faust-table
state as the series' detector, so it survives a restart and a redelivery cannot count a
point twice (the caller skips chunks that are not newer). Windows are aligned to the epoch
(``time // window``) and documents are built by :func:`aitrace.sinks.documents.rollup_action`,
so the same points give the same ``_id`` after a redelivery.

NaN/Inf points are data (a diverged loss), but a mean or a minimum of them says nothing:
the window summarises its finite points (``count``, min, max, mean, last) and counts the
others (``nonfinite``), so no point is silently dropped. The detectors see every point.

A window is indexed when a later window starts, and the open window is re-indexed (same
``_id``, growing counts) once per window length of event time, so a series that stops
leaves at most its last window partly counted in the index, and only until it is written
again.

Raw or rollup is decided per block and series by the block's own rate (points per second
over its time span), so the decision is the same on every redelivery.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aitrace.sinks.documents import Action, rollup_action


def is_fast(times: np.ndarray, max_raw_rate: float) -> bool:
    """True when the points of this block arrive faster than ``max_raw_rate`` per second."""
    if times.size < 2:
        return False
    span_s = (int(times.max()) - int(times.min())) / 1e6
    return span_s <= 0 or times.size / span_s > max_raw_rate


def _window_from(state: dict[str, Any]) -> dict[str, Any] | None:
    return state.get("win")


def update(
    state: dict[str, Any],
    ctx: dict[str, Any],
    name: str,
    split: str | None,
    steps: np.ndarray,
    times: np.ndarray,
    values: np.ndarray,
    *,
    window_us: int,
) -> list[Action]:
    """Fold points into the series' windows; return rollup actions for windows to (re)index."""
    if times.size == 0:
        return []
    order = np.argsort(times, kind="stable")
    steps, times, values = steps[order], times[order], values[order]
    wid = times // window_us
    win = _window_from(state)
    if win is not None:
        late = wid < win["id"]
        if late.any():  # windows already written: a late point cannot reopen them
            state["late"] = state.get("late", 0) + int(late.sum())
            steps, times, values, wid = steps[~late], times[~late], values[~late], wid[~late]
            if times.size == 0:
                return []
    out: list[Action] = []
    for part in _parts(steps, values, wid):
        if win is not None and win["id"] == part["id"]:
            win = _merge(win, part)
            continue
        if win is not None:  # a later window starts: the open one is complete
            out.append(_action(ctx, name, split, win, window_us))
        win = {**part, "written_at": None}
    assert win is not None  # at least one point is left, so at least one part
    last_time = int(times[-1])
    # (the write policy as processors/rollup.py's since /work/rev-w D6: 10 times a window length)
    if win["written_at"] is None or last_time - win["written_at"] >= window_us // 10:
        out.append(_action(ctx, name, split, win, window_us))
        win["written_at"] = last_time
    state["win"] = win
    return out


def _parts(steps: np.ndarray, values: np.ndarray, wid: np.ndarray) -> list[dict[str, Any]]:
    """One summary per run of equal window ids (points sorted by time): array work, no per-point loop.

    min/max/sum/last are over the finite points (None where a window has none);
    ``nonfinite`` counts the NaN/Inf points.
    """
    finite = np.isfinite(values)
    starts = np.flatnonzero(np.r_[True, wid[1:] != wid[:-1]])
    ends = np.r_[starts[1:], wid.size]
    n_finite = np.add.reduceat(finite.astype(np.int64), starts)
    mins = np.minimum.reduceat(np.where(finite, values, np.inf), starts)
    maxs = np.maximum.reduceat(np.where(finite, values, -np.inf), starts)
    sums = np.add.reduceat(np.where(finite, values, 0.0), starts)
    last_finite = np.maximum.reduceat(np.where(finite, np.arange(wid.size), -1), starts)
    parts = []
    for j in range(starts.size):
        has = bool(n_finite[j])
        parts.append(
            {
                "id": int(wid[starts[j]]),
                "count": int(n_finite[j]),
                "nonfinite": int(ends[j] - starts[j] - n_finite[j]),
                "min": float(mins[j]) if has else None,
                "max": float(maxs[j]) if has else None,
                "sum": float(sums[j]),
                "last": float(values[last_finite[j]]) if has else None,
                "first_step": int(steps[starts[j]]),
                "last_step": int(steps[ends[j] - 1]),
            }
        )
    return parts


def _pick(fn: Any, a: float | None, b: float | None) -> float | None:
    """min/max of two optional values (None: the window had no finite point yet)."""
    if a is None or b is None:
        return b if a is None else a
    return fn(a, b)


def _merge(win: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    return {
        **win,
        "count": win["count"] + part["count"],
        "nonfinite": win.get("nonfinite", 0) + part["nonfinite"],  # state written before the count existed
        "min": _pick(min, win["min"], part["min"]),
        "max": _pick(max, win["max"], part["max"]),
        "sum": win["sum"] + part["sum"],
        "last": win["last"] if part["last"] is None else part["last"],
        "last_step": part["last_step"],
    }


def _action(ctx: dict[str, Any], name: str, split: str | None, win: dict[str, Any], window_us: int) -> Action:
    return rollup_action(
        ctx,
        name=name,
        split=split,
        window_start_us=win["id"] * window_us,
        window_us=window_us,
        count=win["count"],
        minimum=win["min"],
        maximum=win["max"],
        mean=win["sum"] / win["count"] if win["count"] else None,
        last=win["last"],
        first_step=win["first_step"],
        last_step=win["last_step"],
        nonfinite=win.get("nonfinite", 0),
    )
