"""The compiled rolling median gives NumPy's medians, float for float."""

from __future__ import annotations

import numpy as np
import pytest
from aitrace.detect.rolling import rolling_median
from numpy.lib.stride_tricks import sliding_window_view


def _numpy(x: np.ndarray, w: int) -> np.ndarray:
    """What the training checks computed before (main's code)."""
    return np.median(sliding_window_view(x, w), axis=1) if x.size >= w else x[:0]


@pytest.mark.parametrize("w", [1, 2, 3, 16, 32])
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 33, 1000])
def test_same_floats_as_numpy(w: int, n: int) -> None:
    rng = np.random.default_rng(w * 1000 + n)
    for x in (
        rng.normal(size=n),
        rng.integers(0, 3, n).astype(np.float64),  # ties: a removed value equal to others
        rng.lognormal(0.0, 8.0, n),  # wide range: the mean of two middle values rounds
        np.cumsum(rng.normal(size=n)),
    ):
        got, want = rolling_median(x, w), _numpy(x, w)
        assert got.shape == want.shape
        assert np.array_equal(got, want)


def test_rejects_empty_window() -> None:
    with pytest.raises(ValueError):
        rolling_median(np.ones(3), 0)


def _run(checks: list, chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list:
    plateau, run = checks
    out = []
    for steps, loss, norms in chunks:
        out.append(plateau.update(steps, loss))
        out += [
            (f.step, f.reason, f.value, f.message)
            for f in run.update({"loss": (steps, loss), "grad_norm": (steps, norms)})
        ]
    return out


def test_checks_find_what_numpys_median_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """PlateauCheck and RunChecks' collapse, over chunks, with main's median and with this one."""
    from aitrace.detect import run_checks, training

    rng = np.random.default_rng(7)
    steps = np.arange(3000)
    fall = 2.3 * np.exp(-np.arange(900) / 200)
    loss = np.concatenate([np.full(1100, 2.3), fall, np.full(1000, fall[-1])]) * (1 + 0.01 * rng.normal(size=3000))
    loss[rng.integers(0, 3000, 20)] = np.nan
    norms = np.concatenate([rng.lognormal(0.0, 0.3, 1000), rng.lognormal(-9.0, 0.3, 2000)])
    cuts = np.unique([1050, *rng.choice(np.arange(1, 3000), 12)])  # a chunk ends while the loss is at its start
    chunks = list(zip(*(np.split(a, cuts) for a in (steps, loss, norms)), strict=True))

    def fresh() -> list:
        return [training.PlateauCheck(), run_checks.RunChecks()]

    ours = _run(fresh(), chunks)
    monkeypatch.setattr(training, "rolling_median", _numpy)
    monkeypatch.setattr(run_checks, "rolling_median", _numpy)
    reasons = {f[1] if len(f) == 4 and isinstance(f[1], str) else "plateau" for f in ours if f is not None}
    assert reasons == {"vanishing", "plateau"}  # both checks decided on the medians
    assert _run(fresh(), chunks) == ours
