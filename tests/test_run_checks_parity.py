"""RunChecks finds what main's RunChecks found, and carries the same state, chunk by chunk.

``MainRunChecks`` is a copy of main's code for the methods this branch made faster (the loss
medians in Python, the grad-norm levels through :func:`aitrace.detect.rolling.rolling_median`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from aitrace.detect.finding import Finding
from aitrace.detect.run_checks import _LEARNT, RunChecks, _median
from numpy.lib.stride_tricks import sliding_window_view


class MainRunChecks(RunChecks):
    """main's methods, verbatim."""

    def _losses(self, values: Any) -> None:
        head = self.params["head"]
        finite = [x for x in np.asarray(values, dtype=np.float64).tolist() if math.isfinite(x)]
        self.start += finite[: head - len(self.start)]
        self.recent = [*self.recent, *finite][-head:]
        self.seen += len(finite)  # (the count the plateau's rule keeps since)

    def _at_start(self) -> tuple[float, float] | None:
        """(start, now) loss levels while the loss has not left its start, else None."""
        if len(self.start) < self.params["head"] or not self.recent:
            return None
        start, now = float(np.median(self.start)), float(np.median(self.recent))
        return (start, now) if now >= start - self.params["min_drop"] * abs(start) else None

    def _collapse(self, steps: Any, values: Any, losses: tuple[np.ndarray, np.ndarray]) -> list[Finding]:
        """main's levels (NumPy medians of sliding windows); the verdict as RunChecks' since 2026-12-06."""
        p = self.params
        vals = np.asarray(values, dtype=np.float64).ravel()
        ok = np.isfinite(vals) & (vals > 0)
        self._norm_window(np.asarray(steps, dtype=np.float64).ravel()[ok])  # the cadence the state keeps (16 here)
        logs = [math.log10(x) for x in vals[ok].tolist()]
        norms = np.asarray(self.norms + logs)
        self.norms = norms[-p["head"] :].tolist()
        if norms.size < p["head"]:
            return []
        levels = np.median(sliding_window_view(norms, p["head"]), axis=1)[-len(logs) :] if logs else norms[:0]
        at = np.asarray(steps, dtype=np.float64).ravel()[ok][len(logs) - levels.size :]
        loss = losses[1][np.searchsorted(losses[0], at, side="right") - 1]
        running = np.maximum.accumulate(np.concatenate([[self.peak], levels]))
        before, peaks = running[:-1], running[1:]
        renewed = np.maximum.accumulate(np.where(levels > before, np.arange(levels.size), -1))
        kept_loss = self.peak_loss if self.peak_loss is not None else _median(self.start) if self.start else math.nan
        ref = np.where(renewed >= 0, loss[np.maximum(renewed, 0)], kept_loss)
        unexplained = peaks - levels - self._explained(ref, loss)
        ready = len(self.start) >= p["head"]
        start = self.start[0] if ready else math.nan
        learnt = (loss < _LEARNT * start) if start > 0 else np.zeros(loss.shape, dtype=bool)
        hit = np.flatnonzero((unexplained >= p["decades"]) & ~learnt) if ready else levels[:0]
        if not hit.size:
            self.peak = float(peaks[-1]) if peaks.size else self.peak
            self.peak_loss = float(ref[-1]) if ref.size and math.isfinite(ref[-1]) else self.peak_loss
            return []
        k = int(hit[0])
        self.peak, level, then, now = float(peaks[k]), float(levels[k]), float(ref[k]), float(loss[k])
        self.peak_loss = then if math.isfinite(then) else self.peak_loss
        k += len(logs) - levels.size
        self.norms = norms[: norms.size - len(logs) + k + 1][-p["head"] :].tolist()
        self.vanished = True
        step, x = np.asarray(steps).ravel()[ok][k].item(), float(vals[ok][k])
        msg = (
            f"gradient norm fell {self.peak - level:.1f} decades (10^{self.peak:.1f} to 10^{level:.1f}) while the "
            f"loss went from {then:.4g} to {now:.4g}: a collapse the loss does not explain"
        )
        return [Finding(0, float(step), x, 1.0, "vanishing", msg, p["decades"], "grad_norm", "critical")]


def _run(kind: type[RunChecks], chunks: list[dict[str, Any]]) -> list[Any]:
    checks, out = kind(), []
    for chunk in chunks:
        out.append([(f.step, f.reason, f.value, f.message, f.severity) for f in checks.update(chunk)])
        out.append(checks.to_state())
        checks = kind.from_state(checks.to_state())
    return out


def _scenario(seed: int, n: int = 2400) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    start = int(rng.integers(200, 1200))
    loss = np.where(steps < start, 2.3, 2.3 * np.exp(-(steps - start) / 300.0)) * (1 + 0.01 * rng.normal(size=n))
    loss[rng.integers(0, n, 10)] = np.nan
    fall = int(rng.integers(100, 2000))
    norms = np.where(steps < fall, rng.lognormal(0.0, 0.4, n), rng.lognormal(-8.0, 0.4, n))
    norms[rng.integers(0, n, 10)] = rng.choice([np.nan, np.inf, 0.0, -1.0], 10)
    every = 10
    ratio = np.where(steps[::every] < int(rng.integers(0, n)), 10.0 ** rng.uniform(-7, -2), 10.0 ** rng.uniform(-9, -6))
    cuts = np.unique(rng.integers(1, n, 15))
    chunks = []
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        chunk: dict[str, Any] = {"loss": (steps[a:b], loss[a:b]), "grad_norm": (steps[a:b], norms[a:b])}
        k = np.flatnonzero(steps[a:b] % every == 0) + a
        for layer in range(3):
            chunk[f"update_ratio/l{layer}"] = (steps[k], ratio[k // every] * (1 + 0.1 * layer))
        chunks.append(chunk)
    return chunks


@pytest.mark.parametrize("seed", range(12))
def test_same_findings_and_states_as_main(seed: int) -> None:
    chunks = _scenario(seed)
    assert _run(RunChecks, chunks) == _run(MainRunChecks, chunks)


def test_scenarios_reach_every_verdict() -> None:
    """The comparison above is not of empty lists: the scenarios raise each of the three findings."""
    reasons = set()
    for seed in range(12):
        for item in _run(RunChecks, _scenario(seed)):
            reasons |= {f[1] for f in item} if isinstance(item, list) else set()
    assert reasons == {"stalled", "plateau", "vanishing"}


def test_median_is_numpys() -> None:
    rng = np.random.default_rng(0)
    for n in range(1, 40):
        x = rng.lognormal(0.0, 6.0, n).tolist()
        assert _median(x) == float(np.median(x))
