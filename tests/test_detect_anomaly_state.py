"""AnomalyDetector state: the compact layout (version 2), the list layout before it (version 1), bad states."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from aitrace.detect import AnomalyDetector, anomaly_details
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

PARTS = ("floats", "long", "evicted", "recent")
LENGTH_INTS = {"long": 0, "evicted": 10, "recent": 2}  # index in "ints" of each part's length

# Written by the version-1 code (main at f257ad3): AnomalyDetector(window=8) after scoring OLD_INPUT.
OLD_INPUT = [0.0, 3.37, 3.64, 0.56, -3.03, -3.84, -1.12, 2.63, 3.96, 1.65, -2.18]
OLD_INPUT += [-4.0, -2.15, 1.68, 3.96, 2.6, -1.15, -3.85, -3.0, 0.6, 3.65]
OLD_STATE = json.loads(
    '{"version": 1, "params": {"window": 8, "threshold": 5.0, "shift_h": 3.0, "var_h": 1.0986122886681098,'
    ' "flat_h": 13.815510557964274, "min_periods": 8}, "long": [1.68, 3.96, 2.6, -1.15, -3.85, -3.0, 0.6, 3.65],'
    ' "long_sorted": [-4.0, -2.18, -2.15, 1.65, 1.68, 2.6, 3.96, 3.96], "evicted": [3.96, 1.65, -2.18, -4.0, -2.15],'
    ' "recent": [0.6, 3.65], "floats": [3.65, 0.0, 3.4025720914703568, 1.0081695085838094, 1.665],'
    ' "ints": [8, 0, 2, 0, 1, 0, 0, 21, 5, 8, 5]}'
)


def state_windows(state: dict[str, Any]) -> dict[str, np.ndarray]:
    """The named float parts of a version-2 state (its ``data`` split by the lengths in ``ints``)."""
    flat = np.frombuffer(base64.b64decode(state["data"]), dtype="<f8")
    sizes = [5] + [state["ints"][LENGTH_INTS[k]] for k in PARTS[1:]]
    return dict(zip(PARTS, np.split(flat, np.cumsum(sizes)[:-1]), strict=True))


def as_version_1(det: AnomalyDetector) -> dict[str, Any]:
    """The detector's state in the list layout that version 1 wrote (with the kernel's own sorted window,
    which version 2 no longer stores)."""
    state = det.to_state()
    windows = state_windows(state)
    old = {"version": 1, "params": dict(state["params"])}
    old.update({k: windows[k].tolist() for k in ("long", "evicted", "recent", "floats")})
    old["long_sorted"] = det._sort_l[: state["ints"][9]].tolist()
    old["ints"] = list(state["ints"])
    return old


def _continue(state: dict[str, Any], more: np.ndarray) -> tuple[np.ndarray, ...]:
    det = AnomalyDetector.from_state(json.loads(json.dumps(state)))
    scores = det.score(more)
    return scores, det.last_codes, det.last_z, det.last_level, det.last_noise


def test_state_written_by_version_1_loads_and_scores_the_same() -> None:
    det = AnomalyDetector(window=8)
    det.score(OLD_INPUT)
    assert as_version_1(det) == OLD_STATE  # the converter writes exactly the old layout
    more = np.r_[np.sin(np.arange(21, 80)) * 4, 40.0, np.full(10, 1.0)]
    old = _continue(OLD_STATE, more)
    new = _continue(det.to_state(), more)
    for a, b in zip(old, new, strict=True):
        np.testing.assert_array_equal(a, b)
    assert AnomalyDetector.from_state(OLD_STATE).to_state() == det.to_state()
    whole, _, _ = anomaly_details(np.r_[OLD_INPUT, more], window=8)
    np.testing.assert_array_equal(old[0], whole[len(OLD_INPUT) :])


finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(0, 300), elements=st.one_of(finite, st.integers(-2, 2).map(float))),
    more=hnp.arrays(np.float64, st.integers(1, 100), elements=st.one_of(finite, st.just(math.nan))),
    window=st.sampled_from([8, 12, 16, 33, 64]),
)
def test_old_and_new_layouts_give_identical_scores(values, more, window) -> None:
    det = AnomalyDetector(window=window)
    det.score(values)
    state = det.to_state()
    for a, b in zip(_continue(as_version_1(det), more), _continue(state, more), strict=True):
        np.testing.assert_array_equal(a, b)


def test_compact_state_is_smaller_than_the_list_layout() -> None:
    det = AnomalyDetector()
    det.score(np.random.default_rng(0).normal(size=10_000))
    state = det.to_state()
    assert set(state) == {"version", "params", "ints", "data"}
    assert len(json.dumps(state)) < 0.5 * len(json.dumps(as_version_1(det)))


def _set_int(k: int, v: int) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["ints"].__setitem__(k, v)


def _set_data(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, Any]], None]:
    def mutate(s: dict[str, Any]) -> None:
        flat = np.frombuffer(base64.b64decode(s["data"]), dtype="<f8")
        s["data"] = base64.b64encode(fn(flat.copy()).astype("<f8").tobytes()).decode("ascii")

    return mutate


def _nan_at_end(a: np.ndarray) -> np.ndarray:
    a[-1] = math.nan
    return a


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.pop("data"),
        lambda s: s.update(version=99),
        lambda s: s.update(data="not base64!"),
        lambda s: s.update(data=7),
        lambda s: s.update(params=[1]),
        lambda s: s.update(ints=[1, 2]),
        _set_data(lambda a: a[:-1]),  # one float short of the lengths in ints
        _set_data(_nan_at_end),
        _set_int(9, 3),  # a sorted window that does not match the long one
        _set_int(7, 2**70),  # beyond int64
        _set_int(0, 1000),  # a long window beyond its size
        _set_int(0, -1),
        _set_int(8, 99),  # pending beyond a block
        _set_int(7, 0),  # fewer points seen than the window holds
        _set_int(6, -1),  # negative repeat count
    ],
)
def test_malformed_state_raises_value_error(mutate) -> None:
    det = AnomalyDetector()
    det.score(np.arange(100.0))
    state = json.loads(json.dumps(det.to_state()))
    mutate(state)
    with pytest.raises(ValueError):
        AnomalyDetector.from_state(state)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.pop("long"),
        lambda s: s.update(long=[1.0] * 1000),
        lambda s: s.update(recent=[math.nan]),
        lambda s: s.update(floats=[1.0]),
        lambda s: s.update(long=[[1.0]]),
        _set_int(8, 99),
        lambda s: s.update(long_sorted=s["long_sorted"][:-1]),
    ],
)
def test_malformed_version_1_state_raises_value_error(mutate) -> None:
    state = json.loads(json.dumps(OLD_STATE))
    mutate(state)
    with pytest.raises(ValueError):
        AnomalyDetector.from_state(state)
