"""The y axis of a training chart: where the runs are comparable, not where one of them exploded.

A diverging run reaches 1e35 while a healthy one moves between 0.04 and 0.15; an axis over
both draws the healthy run as a flat line. So each series keeps its *own normal range*: a
point is off the axis when it exceeds :data:`OFF_FACTOR` times the running median of the
series' earlier on-axis points. The axis spans the on-axis points of every series; the points
above it are not drawn to scale: the page marks each with an arrow on the top edge (its true
value in the arrow's title) and the chart's note says which series left and from which step.

Only upward departures count: a falling loss or a collapsing gradient stays on the axis,
which therefore reaches down to the lowest finite value of any series.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aitrace.infra.report_data import Series

# A divergence climbs an order of magnitude every few steps: by the time a point is 100x the
# median (the demo's loss: 4.09 at step 154) it has already stretched the axis 80-fold. A
# healthy run's noise, warm-up or 10x learning-rate step stays within 10x its running median.
OFF_FACTOR = 10.0
MIN_REFERENCE = 10  # points a series needs before it can leave its range: no verdict on its first steps
LOG_DECADES = 1e3  # a log axis when the drawn values span three decades or more


@dataclass
class Clip:
    """Where one series leaves the axis: its first off-axis step, how many points are off, the highest."""

    series: str
    first_x: float
    count: int
    peak: float


@dataclass
class Axis:
    """``limits`` is None when every point is on the axis (the page then fits all values)."""

    log: bool
    limits: list[float] | None = None
    clips: list[Clip] = field(default_factory=list)

    def note(self) -> str:
        """One sentence per series that left the axis, for the chart's note."""
        return " ".join(
            f"{c.series} leaves the axis at step {c.first_x:g}: {c.count} point{'s' if c.count > 1 else ''} "
            f"above it (up to {c.peak:.3g}), arrows on the top edge."
            for c in self.clips
        )


class _RunningMedian:
    """Median of the values added so far, in O(log n) per value (two heaps)."""

    def __init__(self) -> None:
        self._low: list[float] = []  # negated: a max-heap of the lower half
        self._high: list[float] = []

    def __len__(self) -> int:
        return len(self._low) + len(self._high)

    def add(self, value: float) -> None:
        heapq.heappush(self._low, -heapq.heappushpop(self._high, value))
        if len(self._low) > len(self._high):
            heapq.heappush(self._high, -heapq.heappop(self._low))

    def median(self) -> float:
        if len(self._high) > len(self._low):
            return self._high[0]
        return (self._high[0] - self._low[0]) / 2


def off_axis(values: Sequence[float]) -> list[bool]:
    """For each value (in step order): is it above ``OFF_FACTOR`` x the median of the on-axis ones before it?

    Off-axis values do not enter the median, so a long divergence never becomes the new normal.
    """
    reference = _RunningMedian()
    flags = []
    for value in values:
        off = len(reference) >= MIN_REFERENCE and (median := reference.median()) > 0 and value > OFF_FACTOR * median
        if not off:
            reference.add(value)
        flags.append(off)
    return flags


def training_axis(series: Sequence[Series]) -> Axis:
    """The y axis of one training chart over ``series`` (points in step order, ``None`` values skipped)."""
    on: list[float] = []
    clips: list[Clip] = []
    for s in series:
        points = [(float(p[0] or 0), float(p[1])) for p in s.points if p[1] is not None]
        flags = off_axis([y for _, y in points])
        on += [y for (_, y), off in zip(points, flags, strict=True) if not off]
        off_points = [p for p, off in zip(points, flags, strict=True) if off]
        if off_points:
            clips.append(Clip(s.name, off_points[0][0], len(off_points), max(y for _, y in off_points)))
    bands = [v for s in series for b in s.band for v in b[1:] if v is not None]
    if not clips:
        return Axis(_wants_log(on + bands))
    # A series only leaves after MIN_REFERENCE on-axis points, so ``on`` is never empty here.
    high = max(on)
    on += [v for v in bands if v <= high]  # the page cuts a rollup's band at the top edge
    return Axis(_wants_log(on), [min(on), high], clips)


def _wants_log(values: Sequence[float]) -> bool:
    """Log scale when every value is positive and they span three decades or more."""
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) >= LOG_DECADES
