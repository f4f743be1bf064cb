"""Per-window rollups of fast metric series, with the open window kept in the series state.

An open window held only in memory would lose, when the worker is killed, the part of it
whose records were already committed. Here the open window lives in the same Faust-table
state as the series' detector, so it survives a restart and a redelivery cannot count a
point twice (the caller skips chunks that are not newer). Windows are aligned to the epoch
(``time // window``) and documents are built by :func:`aitrace.sinks.documents.rollup_action`,
so the same points give the same ``_id`` after a redelivery.

NaN/Inf points are data (a diverged loss), but a mean or a minimum of them says nothing:
the window summarises its finite points (``count``, min, max, mean, first, last) and counts the
others (``nonfinite``), so no point is silently dropped. The detectors see every point.

A window is indexed when a later window starts, and the open window is re-indexed (same
``_id``, growing counts) :data:`REWRITES` times per window length of event time at most, and
once more when the run ends (:func:`flush`, on its lifecycle event), so a series that stops
without an end leaves at most the last tenth of a window's time out of the index. The client
sends a batch's events before its metric blocks, so a run's end usually comes a record before
its last points: points dated at or before the end that come after it are written at once.

Raw or rollup is decided per block and series by the block's own rate (points per second
over its time span), so the decision is the same on every redelivery.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from aitrace.sinks.documents import Action, rollup_action

REWRITES = 10  # times per window length of event time an open window is indexed again at most


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
    documents: bool = True,
) -> list[Action]:
    """Fold points into the series' windows; return rollup actions for windows to (re)index.

    ``documents=False`` (a worker that does not index) moves the windows the same way and
    builds no document: the state is the same either way."""
    if times.size == 0:
        return []
    if times.size > 1 and not bool(np.all(times[1:] >= times[:-1])):  # a stable sort of sorted times is a no-op
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
        if win is not None and documents:  # a later window starts: the open one is complete
            out.append(_action(ctx, name, split, win, window_us))
        win = {**part, "written_at": None}
    assert win is not None  # at least one point is left, so at least one part
    last_time = int(times[-1])
    ended_at, tail = state.get("ended_at"), state.get("tail_writes", 0)
    # a tail is the points of a few records: an end dated far ahead (a client's clock) writes no more than REWRITES
    in_tail = type(ended_at) is int and last_time <= ended_at and type(tail) is int and tail < REWRITES
    due = _due(win, last_time, window_us)
    if due or in_tail:
        if not due:
            state["tail_writes"] = tail + 1
        if documents:
            out.append(_action(ctx, name, split, win, window_us))
        win["written_at"], win["written_n"] = last_time, _points(win)
    state["win"] = win
    state["win_of"] = {"ctx": ctx, "name": name, "split": split, "window_us": window_us}  # what flush writes
    return out


def flush(state: dict[str, Any], ended_at: int) -> list[Action]:
    """The open window's document again where points came after its last write: when the run ends (its
    lifecycle event, dated ``ended_at``). Its last window is written when a later one starts, or again after a
    tenth of a window length of event time, and a run that ended within that left its tail out of the index for
    good (the README's Lightning example: 8 training steps, steps 4-7 never indexed, ``compare`` said the run
    ended at step 3). The end is kept: points dated before it that come after it (the client sends a batch's
    events before its metric blocks) are written by :func:`update` at once. Nothing for a state without an open
    window, or with one written in full, or of a shape no worker wrote."""
    win, of = state.get("win"), state.get("win_of")
    if isinstance(win, dict):
        state["ended_at"], state["tail_writes"] = ended_at, 0
    if not (isinstance(win, dict) and isinstance(of, dict)) or win.get("written_n") == _points(win):
        return []
    ctx, name, split, window_us = of.get("ctx"), of.get("name"), of.get("split"), of.get("window_us")
    if not (isinstance(ctx, dict) and isinstance(name, str) and (split is None or isinstance(split, str))):
        return []
    if type(window_us) is not int or window_us <= 0:
        return []
    try:
        action = _action(ctx, name, split, win, window_us)
    except Exception:  # a window or a context of a shape no worker wrote (labels a string: AttributeError)
        return []
    win["written_n"] = _points(win)
    return [action]


_NUMBERS = ("min", "max", "sum", "first", "last")  # a window's values: a float, or None (no finite point)
_INTS = ("id", "count", "first_step", "last_step")


def sound_window(win: Any) -> bool:
    """Whether a series state's open window (``state["win"]``, restored from a changelog any client can write) has
    the shape :func:`update` writes: one of another shape (a text, an id that is a text, no count) made every later
    chunk of its run raise and go to the dead-letter topic, the whole run's detection with it (/work/rev-ae D2)."""
    if type(win) is not dict or any(type(win.get(k)) is not int for k in _INTS) or win["count"] < 0:
        return False
    if any(type(win.get(k, 0)) is not int for k in ("nonfinite", "written_n")):
        return False
    written = win.get("written_at")
    return (written is None or type(written) is int) and all(
        v is None or type(v) is float for v in map(win.get, _NUMBERS)
    )


def _points(win: dict[str, Any]) -> Any:
    try:
        return win["count"] + win.get("nonfinite", 0)
    except (KeyError, TypeError):
        return None


def _due(win: dict[str, Any], last_time: int, window_us: int) -> bool:
    """Whether the open window is indexed again: never written, or :data:`REWRITES` times a window length of event
    time. Once a window length, as it was, is once per window: a run's last window stayed as its first chunk left
    it (a 100,000-step run read as ending at step 2,000, /work/rev-w D6)."""
    return win["written_at"] is None or last_time - win["written_at"] >= window_us // REWRITES


def _parts(steps: np.ndarray, values: np.ndarray, wid: np.ndarray) -> list[dict[str, Any]]:
    """One summary per run of equal window ids (points sorted by time): array work, no per-point loop.

    min/max/sum/last are over the finite points (None where a window has none);
    ``nonfinite`` counts the NaN/Inf points. A sum that overflows a double is None (:func:`_add`).
    """
    finite = np.isfinite(values)
    starts = np.flatnonzero(wid[1:] != wid[:-1]) + 1
    starts = np.concatenate([np.zeros(1, dtype=starts.dtype), starts])
    ends = np.append(starts[1:], wid.size)
    n_finite = np.add.reduceat(finite.astype(np.int64), starts)
    mins = np.minimum.reduceat(np.where(finite, values, np.inf), starts)
    maxs = np.maximum.reduceat(np.where(finite, values, -np.inf), starts)
    sums = np.add.reduceat(np.where(finite, values, 0.0), starts)
    last_finite = np.maximum.reduceat(np.where(finite, np.arange(wid.size), -1), starts)
    first_finite = np.minimum.reduceat(np.where(finite, np.arange(wid.size), wid.size), starts)
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
                "sum": _add(0.0, float(sums[j])),
                "first": float(values[first_finite[j]]) if has else None,
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


def _add(a: float | None, b: float | None) -> float | None:
    """A window's running sum, None once it overflows a double. The state is JSON in the table, which
    has no Inf: an Inf sum came back null and the next point's sum raised TypeError, on every later
    chunk of the run (two points of 1e308 were enough)."""
    if a is None or b is None:
        return None
    total = a + b
    return total if math.isfinite(total) else None


def _merge(win: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    return {
        **win,
        "count": win["count"] + part["count"],
        "nonfinite": win.get("nonfinite", 0) + part["nonfinite"],  # state written before the count existed
        "min": _pick(min, win["min"], part["min"]),
        "max": _pick(max, win["max"], part["max"]),
        "sum": _add(win["sum"], part["sum"]),
        # a window kept before its first value was: unknown, unless it had no finite point yet
        "first": win["first"] if "first" in win else (part["first"] if win["count"] == 0 else None),
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
        mean=win["sum"] / win["count"] if win["count"] and win["sum"] is not None else None,
        first=win.get("first"),
        last=win["last"],
        first_step=win["first_step"],
        last_step=win["last_step"],
        nonfinite=win.get("nonfinite", 0),
    )
