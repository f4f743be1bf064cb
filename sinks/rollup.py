"""Raw points for slow metric series, per-window rollups for fast ones.

DESIGN.md: index every raw point of a slow series, but only per-window rollups
(count, min, max, mean, last, first/last step) of a series above a configurable
rate, so a training loop logging every step does not drown a small cluster.
Raw points of a fast series stay available on demand (``raw=True`` or a lower
rate threshold).

A series is (trace_id, split, metric name). It is fast when the points of one
block come faster than the threshold, or when its latest window (counted over
all blocks) holds more than threshold x window points. A series that turns
fast mid-window has its earlier points of that window indexed raw and the rest
rolled up.
Windows are aligned to the epoch (``time // window``), so the same points give
the same rollup ``_id`` after a redelivery. A window is emitted once a block
carries a point past its end plus one window of grace, or on :meth:`flush`.

Work per block is array work (numpy ``reduceat`` over sorted window ids); the
Python loop is per (series, window), not per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from aitrace.sinks.documents import Action, DocumentError, block_context, metric_block_actions, rollup_action


@dataclass
class _Window:
    ctx: dict[str, Any]
    count: int
    minimum: float
    maximum: float
    total: float
    last: float
    last_time: int
    first_step: int
    last_step: int


class MetricRollup:
    """Turns MetricBlocks into bulk actions: raw for slow series, rollups for fast ones."""

    def __init__(
        self,
        *,
        window_s: float = 10.0,
        max_raw_rate: float = 2.0,
        prefix: str = "aitrace",
        raw: bool = False,
    ) -> None:
        if window_s <= 0 or max_raw_rate < 0:
            raise ValueError("window_s must be > 0 and max_raw_rate >= 0")
        self.window_us = int(window_s * 1_000_000)
        self.max_raw_rate = max_raw_rate
        self.prefix = prefix
        self.raw = raw
        self._open: dict[tuple[str, str, str, int], _Window] = {}
        # series -> (latest window id, points seen in it): the rate across blocks
        self._recent: dict[tuple[str, str, str], tuple[int, int]] = {}
        self._watermark = 0

    def add_block(self, block: dict[str, Any]) -> list[Action]:
        """Actions for one MetricBlock: raw points of slow series plus rollups of closed windows."""
        times = np.asarray(block.get("times", []), dtype=np.int64)
        if times.size == 0:
            return []
        slow: set[str] = set()
        ctx = block_context(block)
        for s in block.get("series", []):
            values = np.asarray(s["values"], dtype=np.float64)
            if values.shape != times.shape:
                raise DocumentError(f"MetricBlock {block.get('block_id')!r}: series {s['name']!r} length mismatch")
            if self.raw or not self._is_fast(block, s["name"], times, values):
                slow.add(s["name"])
            else:
                self._accumulate(ctx, block, s["name"], times, values)
        actions = metric_block_actions(block, prefix=self.prefix, series=slow) if slow else []
        self._watermark = max(self._watermark, int(times.max()))
        return actions + self._emit(self._watermark - self.window_us)

    def flush(self) -> list[Action]:
        """Rollups of every open window (at shutdown, or before committing offsets)."""
        return self._emit(None)

    @property
    def open_windows(self) -> int:
        return len(self._open)

    # ------------------------------------------------------------ internals

    def _series_key(self, block: dict[str, Any], name: str) -> tuple[str, str, str]:
        return (str(block.get("trace_id")), block.get("split") or "", name)

    def _is_fast(self, block: dict[str, Any], name: str, times: np.ndarray, values: np.ndarray) -> bool:
        """Above the rate within this block, or in the series' latest window (counting every block)."""
        present = times[np.isfinite(values)]
        if present.size == 0:
            return False
        span_s = max((int(present.max()) - int(present.min())) / 1e6, 1e-3)
        rate = (present.size - 1) / span_s if present.size > 1 else 0.0
        series = self._series_key(block, name)
        latest = int(present.max()) // self.window_us
        in_latest = int(np.count_nonzero(present // self.window_us == latest))
        window, count = self._recent.get(series, (latest, 0))
        count = count + in_latest if window == latest else in_latest
        self._recent[series] = (latest, count)
        return rate > self.max_raw_rate or count > self.max_raw_rate * self.window_us / 1e6

    def _accumulate(
        self, ctx: dict[str, Any], block: dict[str, Any], name: str, times: np.ndarray, values: np.ndarray
    ) -> None:
        steps = np.asarray(block["steps"], dtype=np.int64)
        keep = np.isfinite(values)
        t, v, st = times[keep], values[keep], steps[keep]
        if t.size == 0:
            return
        order = np.argsort(t, kind="stable")
        t, v, st = t[order], v[order], st[order]
        win = t // self.window_us
        starts = np.flatnonzero(np.r_[True, win[1:] != win[:-1]])
        ends = np.r_[starts[1:], t.size] - 1
        counts = np.diff(np.r_[starts, t.size])
        mins = np.minimum.reduceat(v, starts)
        maxs = np.maximum.reduceat(v, starts)
        sums = np.add.reduceat(v, starts)
        series = self._series_key(block, name)
        for i in range(starts.size):
            w = int(win[starts[i]])
            self._merge(series, w, ctx, int(counts[i]), float(mins[i]), float(maxs[i]), float(sums[i]),
                        float(v[ends[i]]), int(t[ends[i]]), int(st[starts[i]]), int(st[ends[i]]))  # fmt: skip

    def _merge(
        self,
        series: tuple[str, str, str],
        w: int,
        ctx: dict[str, Any],
        count: int,
        lo: float,
        hi: float,
        total: float,
        last: float,
        last_time: int,
        first_step: int,
        last_step: int,
    ) -> None:
        key = (*series, w)
        cur = self._open.get(key)
        if cur is None:
            self._open[key] = _Window(ctx, count, lo, hi, total, last, last_time, first_step, last_step)
        else:
            cur.count += count
            cur.minimum, cur.maximum, cur.total = min(cur.minimum, lo), max(cur.maximum, hi), cur.total + total
            if last_time >= cur.last_time:
                cur.last, cur.last_time = last, last_time
            cur.first_step, cur.last_step = min(cur.first_step, first_step), max(cur.last_step, last_step)

    def _emit(self, before_us: int | None) -> list[Action]:
        out = []
        for key in list(self._open):
            _trace_id, split, name, w = key
            if before_us is not None and (w + 1) * self.window_us > before_us:
                continue
            win = self._open.pop(key)
            out.append(
                rollup_action(
                    win.ctx,
                    name=name,
                    split=split or None,
                    window_start_us=w * self.window_us,
                    window_us=self.window_us,
                    count=win.count,
                    minimum=win.minimum,
                    maximum=win.maximum,
                    mean=win.total / win.count,
                    last=win.last,
                    first_step=win.first_step,
                    last_step=win.last_step,
                    prefix=self.prefix,
                )
            )
        return out
