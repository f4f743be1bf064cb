"""Per-window rollups of fast metric series, with the open window kept in the series state.

:class:`aitrace.sinks.rollup.MetricRollup` keeps its open windows in memory; a worker that
is killed would lose the part of a window whose records were already committed. Here the
open window lives in the same Faust-table state as the series' detector, so it survives a
restart and a redelivery cannot count a point twice (the caller skips chunks that are not
newer). Documents are built by :func:`aitrace.sinks.documents.rollup_action` with the same
epoch-aligned windows and ``_id``s.

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
    prefix: str,
) -> list[Action]:
    """Fold points into the series' windows; return rollup actions for windows to (re)index."""
    keep = np.isfinite(values)
    if not keep.all():
        steps, times, values = steps[keep], times[keep], values[keep]
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
    starts = np.flatnonzero(np.r_[True, wid[1:] != wid[:-1]])
    counts = np.diff(np.r_[starts, wid.size])
    mins = np.minimum.reduceat(values, starts)
    maxs = np.maximum.reduceat(values, starts)
    sums = np.add.reduceat(values, starts)
    lasts = values[np.r_[starts[1:], wid.size] - 1]
    first_steps = steps[starts]
    last_steps = steps[np.r_[starts[1:], wid.size] - 1]
    out: list[Action] = []
    for j in range(starts.size):
        part = {
            "id": int(wid[starts[j]]),
            "count": int(counts[j]),
            "min": float(mins[j]),
            "max": float(maxs[j]),
            "sum": float(sums[j]),
            "last": float(lasts[j]),
            "first_step": int(first_steps[j]),
            "last_step": int(last_steps[j]),
        }
        if win is not None and win["id"] == part["id"]:
            win = _merge(win, part)
            continue
        if win is not None:  # a later window starts: the open one is complete
            out.append(_action(ctx, name, split, win, window_us, prefix))
        win = {**part, "written_at": None}
    last_time = int(times[-1])
    if win["written_at"] is None or last_time - win["written_at"] >= window_us:
        out.append(_action(ctx, name, split, win, window_us, prefix))
        win["written_at"] = last_time
    state["win"] = win
    return out


def _merge(win: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    return {
        **win,
        "count": win["count"] + part["count"],
        "min": min(win["min"], part["min"]),
        "max": max(win["max"], part["max"]),
        "sum": win["sum"] + part["sum"],
        "last": part["last"],
        "last_step": part["last_step"],
    }


def _action(
    ctx: dict[str, Any], name: str, split: str | None, win: dict[str, Any], window_us: int, prefix: str
) -> Action:
    return rollup_action(
        ctx,
        name=name,
        split=split,
        window_start_us=win["id"] * window_us,
        window_us=window_us,
        count=win["count"],
        minimum=win["min"],
        maximum=win["max"],
        mean=win["sum"] / win["count"],
        last=win["last"],
        first_step=win["first_step"],
        last_step=win["last_step"],
        prefix=prefix,
    )
