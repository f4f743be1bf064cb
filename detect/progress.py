"""A run's logged steps as its progress: a step that restarts every epoch, or goes back on a resume.

The idea
--------
Rules that wait a number of steps (a stall: 150 steps at the start level; a plateau: 100 steps and
a quarter of the run without a new best) read the step a run logs as its progress. Most loops log a
global step, but a hand-written one often logs the batch index (``for i, batch in
enumerate(loader): log(step=i)``), which restarts every epoch: with 22 batches an epoch no wait of
100 steps ever ends, and on the bench's recorded runs logged that way the training loss's own stall
and plateau rules never paged. A run resumed from its checkpoint also goes back, once, to a recent
step, and sends again what it did since.

:class:`StepClock` tells the two apart where the steps go back (a *stretch* of training ends there).
A loop logging the batch index goes back to the run's first step (or within one logging stride of it,
where it logs every few batches: 0, 5, 0, 5 ...), and its stretches, its epochs, end at one step. A
resumed run goes back to its checkpoint, past the run's first step, and the stretch it left ended
where no stretch had: it carries that stretch on (its steps are progress already, sent again); any
other restart continues the count after the furthest step so far. A checkpoint taken in an earlier
epoch of a loop logging the batch index cannot be told from that loop's next epoch, and a job that
dies at the same step every time and resumes reads as one whose steps restart. :func:`carries_on` is
that test, which the fitting rules' ranks use too (:func:`aitrace.detect.windows._order`).

Example
-------
>>> import numpy as np
>>> clock = StepClock()
>>> clock.progress(np.r_[np.arange(6), np.arange(6)]).tolist()   # the batch index of two epochs
[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
>>> clock.progress(np.array([0, 1, 2, 3, 2, 3, 4, 5])).tolist()  # the third, dead at 3, resumed from 2
[12.0, 13.0, 14.0, 15.0, 14.0, 15.0, 16.0, 17.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

KEPT_ENDS = 8  # where the last stretches ended: epochs of a batch index end at one step


def carries_on(step: float, first: float, stride: float, end: float, ends: list[float]) -> bool:
    """Whether a stretch of training starting at ``step`` carries on the one before it (a resume) rather than
    restarting: it starts past the run's ``first`` step by more than a logging ``stride``, and the stretch
    before ended (at ``end``) elsewhere than those before it (``ends``)."""
    return step > first + stride and end not in ends


class StepClock:
    """Turns a series' logged steps into its progress (see the module's docstring).

    ``progress(steps)`` returns the chunk's steps as progress, in order (NaN stays NaN); ``offset`` is
    what the restarts so far added (0: the steps are the run's own); ``to_state`` / ``from_state``.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self.first = math.nan  # the lowest step logged, before any restart
        self.stride = math.inf  # the smallest step forward between two logged steps
        self.last = math.nan
        self.peak = math.nan  # the furthest progress so far
        self.ends: list[float] = []

    def progress(self, steps: Any) -> np.ndarray:
        raw = np.asarray(steps, dtype=np.float64).reshape(-1)
        out = np.full(raw.size, math.nan)
        finite = np.flatnonzero(np.isfinite(raw))
        vals = raw[finite]
        if not vals.size:
            return out
        moves = np.diff(np.concatenate([[self.last], vals]))  # NaN after a fresh clock: no move
        back = np.flatnonzero(moves < 0)
        forward = moves[moves > 0]
        if forward.size:
            self.stride = min(self.stride, float(forward.min()))
        lo = 0
        for b in [*back.tolist(), vals.size]:
            if lo < b:
                part = vals[lo:b]
                if not self.ends and not self.offset:  # the run's own steps so far: its first is theirs
                    self.first = float(np.fmin(self.first, part.min()))
                self.last = float(part[-1])
                out[finite[lo:b]] = part + self.offset
                self.peak = float(np.fmax(self.peak, part.max() + self.offset))
            if b < vals.size:
                self._back(float(vals[b]))
            lo = b
        return out

    def _back(self, step: float) -> None:
        stride = self.stride if math.isfinite(self.stride) else 1.0
        if not carries_on(step, self.first, stride, self.last, self.ends):
            self.offset = self.peak + stride - step
        self.ends = [*self.ends, self.last][-KEPT_ENDS:]

    def to_state(self) -> dict[str, Any]:
        def saved(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "offset": self.offset,
            "first": saved(self.first),
            "stride": None if math.isinf(self.stride) else self.stride,
            "last": saved(self.last),
            "peak": saved(self.peak),
            "ends": list(self.ends),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StepClock:
        def read(x: Any) -> float:
            if x is None:
                return math.nan
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise ValueError(f"a step clock's steps are finite numbers, got {x!r}")
            return float(x)

        clock = cls()
        clock.offset = read(state["offset"])
        clock.first, clock.last, clock.peak = (read(state[k]) for k in ("first", "last", "peak"))
        clock.stride = math.inf if state["stride"] is None else read(state["stride"])
        clock.ends = [read(x) for x in state["ends"]][-KEPT_ENDS:]
        return clock
