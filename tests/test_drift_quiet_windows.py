"""The batched drift windows let through exactly the windows detect_drift's own KS test keeps quiet."""

from __future__ import annotations

import numpy as np
import pytest
from aitrace.detect.batched import _quiet_windows
from aitrace.detect.drift_monitor import DriftConfig
from aitrace.detect.drift_tests import _is_categorical
from aitrace.detect.ks import ks_2samp
from aitrace.detect.service import DriftWindows


def _expected(windows: list) -> list[bool]:
    """One window at a time, as detect_drift decides whether to run its KS test on it."""
    cfg = DriftConfig()
    out = []
    for rule, (_, cur) in windows:
        ref = rule.ref
        tested = min(ref.size, cur.size) >= cfg.min_samples and not _is_categorical(ref, cfg.max_categories_numeric)
        out.append(tested and ks_2samp(ref, cur)[1] >= rule.alpha)
    return out


def _sample(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    if kind == 0:
        return rng.normal(size=n)
    if kind == 1:  # just below and at the categorical bound of distinct values
        return rng.integers(0, DriftConfig().max_categories_numeric + int(rng.integers(0, 2)), n).astype(float)
    if kind == 2:  # ties and signed zeros
        return np.where(rng.random(n) < 0.5, -0.0, np.round(rng.normal(size=n), 1))
    return rng.normal(0.4, 1.0, n)  # a shifted current: some windows drift


@pytest.mark.parametrize("seed", range(8))
def test_quiet_flags_match_detect_drift_per_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    windows = []
    for k in range(30):
        size = int(rng.choice([5, 50, 200, 201]))
        rule = DriftWindows(f"f{k}", window=max(size, 2), alpha=float(rng.choice([1e-3, 0.05, 0.5])))
        rule.ref = _sample(rng, int(rng.integers(0, 3)), size)
        windows.append((rule, (k, _sample(rng, int(rng.integers(0, 4)), size))))
    want = _expected(windows)
    assert _quiet_windows(windows) == want
    assert any(want) and not all(want)  # both verdicts were there to get wrong
