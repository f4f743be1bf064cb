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

:class:`StepClock` counts a restart only where the steps show an epoch: a stretch of training (the steps
between two places where they go back) that began within one logging gap of the run's first step (where a
loop logs every few batches: 0, 8, 6, 4 ...) ends within one gap of where the stretch before it ended, and
that one began so too. The count then goes on after the furthest step so far (and the stretch before, not
known for an epoch until this one ended, is counted as come after it too). Any other step back keeps the
run's own steps: a resume, which sends steps again from its checkpoint; a loss logged once at a low step (an
epoch's mean at step = epoch, a stray point); a job restarted from scratch under the same run. Read as
restarts, each of those moved every later step past the whole run so far, and healthy runs were called
stalled. :func:`resumes` tells a resume apart for the fitting rules' ranks
(:func:`aitrace.detect.windows._order`), which see the stretch's next step too.

Example
-------
>>> import numpy as np
>>> clock = StepClock()
>>> clock.progress(np.tile(np.arange(6), 3)).tolist()   # the batch index: known for one at the third epoch
[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0]
>>> clock.progress(np.array([0, 1, 2, 3, 2, 3, 4, 5])).tolist()  # the fourth, dead at 3, resumed from 2
[18.0, 19.0, 20.0, 21.0, 20.0, 21.0, 22.0, 23.0]
>>> StepClock().progress(np.r_[np.arange(40), 0, np.arange(40, 45)]).tolist()[38:]  # a stray point: no restart
[38.0, 39.0, 0.0, 40.0, 41.0, 42.0, 43.0, 44.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

KEPT_ENDS = 8  # where the last stretches ended: epochs of a batch index end at one step


def resumes(step: float, after: float, first: float, stride: float, end: float, ends: list[float]) -> bool:
    """Whether a stretch of training starting at ``step`` (then ``after``; NaN: not come yet) resumes the run
    from a checkpoint: it starts past the run's ``first`` step by more than a logging ``stride``, goes on
    within the steps sent before (a stray point is followed by a step past them), and the stretch before
    ended (at ``end``) elsewhere than those before it (``ends``: epochs of a batch index end at one step)."""
    return step > first + stride and after <= end and end not in ends


class StepClock:
    """Turns a series' logged steps into its progress (see the module's docstring).

    ``progress(steps)`` returns the chunk's steps as progress, in order (NaN stays NaN); ``offset`` is
    what the restarts so far added (0: the steps are the run's own); ``to_state`` / ``from_state``.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self.first = math.nan  # the lowest step logged, before any step back
        self.stride = math.inf  # the smallest step forward between two logged steps
        self.last = math.nan
        self.peak = math.nan  # the furthest progress so far
        self.ends: list[float] = []  # where the last stretches ended (what resumes() reads)
        self.began = math.nan  # where the stretch going on began, if it began as an epoch would (else NaN)
        self.owed = False  # ...and whether it was counted as the run's own steps (not known for an epoch yet)
        self.since = math.nan  # its first logged step, and how many it logged
        self.points = 0

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
                if not self.ends:  # the run's own steps so far: its first is theirs
                    self.first = float(np.fmin(self.first, part.min()))
                if math.isnan(self.since):
                    self.since = float(part[0])
                self.points += int(part.size)
                self.last = float(part[-1])
                out[finite[lo:b]] = part + self.offset
                self.peak = float(np.fmax(self.peak, part.max() + self.offset))
            if b < vals.size:
                self._back(float(vals[b]))
            lo = b
        return out

    def _back(self, step: float) -> None:
        """The steps went back to ``step``: an epoch's restart (count on), or the run's own steps again."""
        stride = self.stride if math.isfinite(self.stride) else 1.0
        gap = (self.last - self.since) / (self.points - 1) if self.points > 1 else stride  # the stretch's logging
        like_epoch = step <= self.first + max(gap, stride)
        ends_alike = bool(self.ends) and abs(self.last - self.ends[-1]) <= max(gap, stride)
        if like_epoch and math.isfinite(self.began) and ends_alike:
            # the stretch that ended, begun as an epoch but not known for one yet, is counted after the others
            owed = self.last - self.began + stride if self.owed else 0.0
            self.offset, self.owed = self.peak + stride - step + owed, False
        else:
            self.owed = like_epoch  # counted as the run's own steps, until the next stretch tells
        self.began = step if like_epoch else math.nan
        self.ends = [*self.ends, self.last][-KEPT_ENDS:]
        self.since, self.points = step, 0

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
            "began": saved(self.began),
            "since": saved(self.since),
            "points": self.points,
            "owed": self.owed,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StepClock:
        def read(x: Any, *, empty: bool = True) -> float:
            if x is None and empty:
                return math.nan
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or abs(x) > 2.0**63:
                raise ValueError(f"a step clock's steps are finite numbers, got {x!r}")
            return float(x)

        clock = cls()
        clock.offset = read(state["offset"], empty=False)
        clock.first, clock.last, clock.peak = (read(state[k]) for k in ("first", "last", "peak"))
        clock.began, clock.since = read(state.get("began")), read(state.get("since"))
        points = state.get("points", 0)
        if isinstance(points, bool) or not isinstance(points, int) or points < 0:
            raise ValueError(f"a step clock's points are a count, got {points!r}")
        clock.points, clock.owed = points, bool(state.get("owed", False))
        clock.stride = math.inf if state["stride"] is None else read(state["stride"], empty=False)
        if clock.stride <= 0:
            raise ValueError(f"a step clock's stride is positive, got {clock.stride!r}")
        if not isinstance(state["ends"], list):
            raise ValueError(f"a step clock's ends are a list, got {state['ends']!r}")
        clock.ends = [read(x, empty=False) for x in state["ends"][-KEPT_ENDS:]]
        return clock
