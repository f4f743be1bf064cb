"""Causal, robust anomaly scores for one numeric series.

The idea
--------
For each new point we ask "how far is it from what the recent past says, in units
of the recent past's own noise?", using only statistics that outliers cannot move:

* **long window** (``window`` points, default 64): median ``med_l`` and noise
  ``sd = 1.4826 * MAD``; when more than half the window is one value (counts,
  quantized or sparse series) the MAD is 0 and the RMS deviation from the median
  takes over;
* **recent window** (``window // 4`` points): median ``med_s``, the level a new
  point is compared with. Its lag is a quarter of the long window's, so a
  trending series (a falling loss) is not mistaken for a shift.

Four components are scored and the largest wins (its name is the reason code):

* ``spike`` / ``dip``: ``z = (x - med_s) / sd``;
* ``level_shift``: ``(med_s - med_l) / sd``, the recent level against the long
  one: it rises once half the recent window sits at a new level and fades as the
  long window follows;
* ``variance_change``: ``log(sd_recent / sd)``, the recent window noisier than
  the long one;
* ``flat``: a run of exactly repeated values, scored as run length times
  ``-log P(repeat)``, where ``P(repeat)`` is how often adjacent values in the
  long window were equal when the run began, so a quantized series that repeats
  often needs a much longer run than a continuous one.

Non-finite values (NaN, +-Inf) score exactly 1.0 and never enter the windows;
so do finite values beyond 1e300 in magnitude (reason ``inf``), whose differences
would overflow float64.
The long window's median and noise are brought up to date every 16 accepted
points (every ``window`` points for shorter windows) with one linear merge; that,
and keeping every scalar in registers, is what makes the kernel run at millions
of points per second. The recent window is exact at every point.

Scores are in [0, 1] and rank: every component maps its statistic ``s`` through
``s**2 / (s**2 + h**2)``, which is 0.5 at the component's own decision level
``h`` and reaches 1.0 in floating point only for ``s > ~1e8 * h``. So ``0.5`` is
the natural default threshold; ties at 1.0 are reserved for non-finite input and
for a change after a perfectly constant window. Level and variance evidence is
shared by neighbouring points, so the point's own residual breaks ties there.

How the defaults were chosen
----------------------------
``window=64``: the median and MAD of 64 points resist up to 31 outliers, estimate
the noise to about +-13 %, and follow a new level within 32 points; the recent
window of 16 resists 7 outliers in a row. ``threshold=5`` (robust z that scores
0.5), ``shift_h=3`` (level moved by 3 noise sd), ``var_h=log 3`` (noise tripled)
and ``flat_h=log 1e6`` (a run with a one-in-a-million chance) were picked on the
labelled synthetic series in ``tests/test_detect_anomaly.py`` (Gaussian,
Student-t(3), Laplace, AR(1) and quantized noise; scales from 1e-9 to 1e12 with
offsets) as values that keep precision >= 0.8 and recall >= 0.95 on all of them
at once, and fewer than 1 in 1000 points flagged on pure Gaussian noise. Every
statistic is location/scale equivariant, so the same defaults hold for a loss
around 1e-3 and a latency around 1e5 us.

What the defaults find (measured by those tests, unit noise sd): single spikes
and dips from about 6 sd, all of them; flat runs within 3 points in a continuous
series; NaN/Inf always; noise tripled, about 9 times in 10 within 12 points; level
shifts of 6 sd and more within 12 points, of 3-5 sd about 2 times in 3 within 24
points (smaller shifts are the price of not flooding on wandering series: a pure
random walk still gets about 5 % of its points flagged, an AR(1) with phi = 0.9
about 0.5 %, a decaying loss curve 0.01 %). Slow explosions that the windows ride
along with (a gradient norm growing 5 % per step) are the monitors' job:
:class:`aitrace.detect.SeriesMonitor` compares the level with a slow baseline.

Example
-------
>>> import numpy as np
>>> from aitrace.detect import anomaly_scores
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(10.0, 1.0, 500)
>>> x[300] = 40.0
>>> s = anomaly_scores(x)
>>> int(np.argmax(s)), bool(s[300] > 0.9), bool(np.median(s) < 0.1)
(300, True, True)
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from aitrace.detect.anomaly_kernel import (
    _F_SD_L,
    _I_HEADL,
    _I_HEADS,
    _I_NEVICTED,
    _I_NL,
    _I_NS,
    _I_NSORTED,
    _I_PENDING,
    _I_RUN,
    _I_SEEN,
    _N_F,
    _N_I,
    _REFRESH,
    RESTORE_ERRORS,
    _pack_windows,
    _restore_windows,
    _score_kernel,
    buffer_size,
)
from aitrace.detect.sorted_window import _median_sorted


# --------------------------------------------------------------------------- public surface
@dataclass(frozen=True)
class AnomalyParams:
    """Tuning knobs of :class:`AnomalyDetector` (see the module docstring for how defaults were chosen).

    window: points of history for the long median/MAD (>= 8); the recent level is
        the median of the last ``window // 4`` points.
    threshold: robust |z| of a single point that scores 0.5.
    shift_h: distance between the recent and the long median, in noise sd, that scores 0.5.
    var_h: log of the recent-to-long noise ratio that scores 0.5 (default log 3).
    flat_h: nats of evidence (run length x -log P(repeat)) that score 0.5 for a flat line.
    min_periods: accepted points needed before anything but NaN/Inf is scored
        (default min(16, window)).
    """

    window: int = 64
    threshold: float = 5.0
    shift_h: float = 3.0
    var_h: float = 1.0986122886681098
    flat_h: float = 13.815510557964274
    min_periods: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or int(self.window) != self.window or self.window < 8:
            raise ValueError(f"window must be an integer >= 8, got {self.window!r}")
        if self.min_periods is None:
            object.__setattr__(self, "min_periods", min(16, int(self.window)))
        for name in ("threshold", "shift_h", "var_h", "flat_h"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        min_periods = cast(int, self.min_periods)  # set just above when it was None
        if int(min_periods) != min_periods or not 2 <= min_periods <= self.window:
            raise ValueError(f"min_periods must be an integer in [2, window], got {self.min_periods!r}")

    @property
    def short_window(self) -> int:
        """Points whose median is the level a new point is compared with."""
        return int(self.window) // 4


def _as_float_array(values: Any) -> np.ndarray:
    if type(values) is np.ndarray and values.dtype == _F64 and values.ndim == 1 and values.flags.c_contiguous:
        return values  # the worker's case, checked in a fraction of the general path's time
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"values must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


class AnomalyDetector:
    """Stateful, chunked form of :func:`anomaly_scores`.

    Feed a series in chunks of any size; the scores equal one call over the whole
    series, bit for bit. The state is two small windows bounded by ``window`` and
    round-trips through :meth:`to_state` / :meth:`from_state` as a small JSON- and
    pickle-safe dict (ints, and the windows' floats packed in one base64 string),
    which is what a Faust table stores between batches.

    Parameters are those of :class:`AnomalyParams`.

    Example
    -------
    >>> import json
    >>> import numpy as np
    >>> from aitrace.detect import AnomalyDetector, anomaly_scores
    >>> x = np.random.default_rng(1).normal(size=1000)
    >>> det = AnomalyDetector(window=32)
    >>> a = det.score(x[:400])
    >>> det = AnomalyDetector.from_state(json.loads(json.dumps(det.to_state())))
    >>> b = det.score(x[400:])
    >>> bool(np.array_equal(np.concatenate([a, b]), anomaly_scores(x, window=32)))
    True
    >>> det.n_seen
    1000
    """

    STATE_VERSION = 2  # 1: every window as a list of floats (still loads)

    def __init__(self, **params: Any) -> None:
        self._setup(_cached_params(params))

    def _setup(self, params: AnomalyParams) -> None:
        # One zeroed buffer holds every float of the state, and the kernels slice it
        # themselves: a detector restored per Kafka batch then costs one allocation,
        # and no views are made on that path (each costs about what 2 points do).
        self.params = params
        self._w = int(params.window)
        self._buf = np.zeros(buffer_size(self._w))
        self._is = np.zeros(_N_I, dtype=np.int64)
        self._kernel_params = _kernel_params(params)
        self.last_codes, self.last_z, self.last_level, self.last_noise = _NO_CODES, _NO_FLOATS, _NO_FLOATS, _NO_FLOATS

    def _view(self, k: int) -> np.ndarray:
        """Part k of the buffer: 0 ring_l, 1 sort_l, 2 evicted, 3 ring_s, 4 sort_s, 5 the float scalars."""
        w, m = self._w, self._w // 4
        bounds = (0, w, 2 * w, 2 * w + _REFRESH, 2 * w + _REFRESH + m, 2 * w + _REFRESH + 2 * m, self._buf.size)
        return self._buf[bounds[k] : bounds[k + 1]]

    @property
    def _ring_l(self) -> np.ndarray:
        return self._view(0)

    @property
    def _sort_l(self) -> np.ndarray:
        return self._view(1)

    @property
    def _evicted(self) -> np.ndarray:
        return self._view(2)

    @property
    def _ring_s(self) -> np.ndarray:
        return self._view(3)

    @property
    def _sort_s(self) -> np.ndarray:
        return self._view(4)

    @property
    def _fs(self) -> np.ndarray:
        return self._view(5)

    # -- inspection -------------------------------------------------------
    @property
    def n_seen(self) -> int:
        """Finite points accepted so far."""
        return int(self._is[_I_SEEN])

    @property
    def window_values(self) -> np.ndarray:
        """The accepted values in the long window, oldest first (a copy)."""
        return _chronological(self._ring_l, int(self._is[_I_NL]), int(self._is[_I_HEADL]))

    @property
    def level(self) -> float:
        """Median of the recent (short) window, the level the next point is compared with; NaN if empty."""
        n = int(self._is[_I_NS])
        return float(_median_sorted(self._sort_s, n)) if n else math.nan

    @property
    def noise(self) -> float:
        """Robust sd of the long window (MAD-based) as of its last block update; NaN before one."""
        return float(self._fs[_F_SD_L]) if self._is[_I_NSORTED] else math.nan

    @property
    def flat_run(self) -> int:
        """How many consecutive points repeated the previous value exactly."""
        return int(self._is[_I_RUN])

    # -- scoring ----------------------------------------------------------
    def score(self, values: Any, *, details: bool = True) -> np.ndarray:
        """Score the next chunk; return float64 scores in [0, 1], one per value.

        With ``details`` (the default) the reason code, signed robust z (of the recent
        level against the long one for a level code, of the point otherwise), and the
        level and noise scale each point was compared with (NaN while warming up)
        are kept in :attr:`last_codes`, :attr:`last_z`, :attr:`last_level` and
        :attr:`last_noise` (code names in :data:`CODE_NAMES`); ``details=False``
        skips z, level and noise (about 10 % faster) and leaves them empty.
        """
        x = _as_float_array(values)
        n = x.shape[0]
        out = np.empty(n)
        codes = np.empty(n, dtype=np.int8)
        if details:
            zs, levels, noises = np.empty(n), np.empty(n), np.empty(n)
        else:
            zs = levels = noises = _NO_FLOATS
        _score_kernel(x, self._buf, self._is, self._kernel_params, out, codes, zs, levels, noises, details)
        self.last_codes = codes
        self.last_z = zs
        self.last_level = levels
        self.last_noise = noises
        return out

    update = score

    # -- state ------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """A JSON-safe dict that :meth:`from_state` restores exactly.

        The windows travel as one base64 string of little-endian float64 (``data``:
        the float scalars, the long window oldest first, the values waiting to leave
        its sorted copy, the recent window oldest first; ``ints`` gives their
        lengths): about ``1.3 * window`` floats, far cheaper to build, encode and parse
        than lists of Python floats. The sorted copy is not stored: it holds the long
        window but for its newest ``pending`` values, plus the waiting ones, and a
        multiset has one sorted order, so :meth:`from_state` rebuilds it exactly.
        """
        blob = _pack_windows(self._buf, self._is, self._w).astype(_WIRE_FLOAT, copy=False)
        return {
            "version": self.STATE_VERSION,
            "params": dict(_params_dict(self.params)),
            "ints": self._canonical_ints(),
            "data": binascii.b2a_base64(blob.tobytes(), newline=False).decode("ascii"),
        }

    def _canonical_ints(self) -> list[int]:
        # The rings are written oldest-first, so the heads are stored as they will be
        # after a restore: equal states serialize to equal dicts.
        ints: list[int] = self._is.tolist()
        ints[_I_HEADL] = ints[_I_NL] % self._w
        ints[_I_HEADS] = ints[_I_NS] % (self._w // 4)
        return ints

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AnomalyDetector:
        """Rebuild a detector from :meth:`to_state` output; raise ValueError on a malformed state.

        States of version 1 (the windows as lists of floats, written before the
        compact layout) load too and give the same scores.
        """
        det = cls.__new__(cls)
        try:
            version = state["version"]
            if version not in (1, 2):
                raise ValueError(f"unsupported state version {version!r}")
            det._setup(_cached_params(state["params"]))
            ints = np.array(state["ints"], dtype=np.int64)
            if ints.shape != (_N_I,):
                raise ValueError(f"malformed anomaly detector state: ints of shape {ints.shape}, expected {_N_I}")
            flat, long_sorted = (_unpack_v2(state["data"]), None) if version == 2 else _unpack_v1(state, ints)
            det._restore(ints, flat, long_sorted)
        except (AttributeError, KeyError, TypeError, OverflowError, binascii.Error) as exc:
            raise ValueError(f"malformed anomaly detector state: {exc!r}") from exc
        return det

    def _restore(self, ints: np.ndarray, flat: np.ndarray, long_sorted: np.ndarray | None) -> None:
        """Fill the windows from ``flat`` (the ``data`` layout of :meth:`to_state`) and ``ints``;
        the long window's sorted copy is rebuilt, or taken from ``long_sorted`` (version 1)."""
        self._is[:] = ints
        problem = _restore_windows(flat, self._buf, self._is, self._w)
        if problem:
            sizes = {k: int(ints[i]) for k, i in (("long", _I_NL), ("evicted", _I_NEVICTED), ("recent", _I_NS))}
            raise ValueError(
                f"malformed anomaly detector state: {RESTORE_ERRORS[problem]} ({flat.size} floats, {sizes},"
                f" pending {int(ints[_I_PENDING])}, window {self.params.window})"
            )
        if long_sorted is not None:  # version 1 stored it: keep it as it was (its size is checked)
            if not bool(np.isfinite(long_sorted).all()):
                raise ValueError("malformed anomaly detector state: non-finite entries in the sorted window")
            self._sort_l[: long_sorted.size] = long_sorted

    def __repr__(self) -> str:
        return f"AnomalyDetector(window={self.params.window}, n_seen={self.n_seen}, level={self.level:.6g})"


def _chronological(ring: np.ndarray, n: int, head: int) -> np.ndarray:
    if n < ring.shape[0]:
        return ring[:n].copy()
    return np.concatenate([ring[head:], ring[:head]])


_WIRE_FLOAT = np.dtype("<f8")
_F64 = np.dtype(np.float64)
_NO_CODES = np.empty(0, dtype=np.int8)
_NO_FLOATS = np.empty(0)  # zero-length, so sharing it between detectors and calls is safe
_PARAMS: dict[tuple[tuple[str, Any], ...], AnomalyParams] = {}
_PARAMS_LIMIT = 1024


def _cached_params(params: dict[str, Any]) -> AnomalyParams:
    """One validated AnomalyParams per distinct parameter dict: restoring a state per batch
    would otherwise validate the same settings again every time."""
    try:
        key = tuple(params.items())
        cached = _PARAMS.get(key)
    except TypeError:  # an unhashable value: let AnomalyParams say what is wrong with it
        return AnomalyParams(**params)
    if cached is None:
        cached = AnomalyParams(**params)
        if len(_PARAMS) >= _PARAMS_LIMIT:
            _PARAMS.clear()
        _PARAMS[key] = cached
    return cached


_PARAMS_DICTS: dict[AnomalyParams, dict[str, Any]] = {}


def _kernel_params(params: AnomalyParams) -> np.ndarray:
    """The parameter vector of :func:`aitrace.detect.anomaly_kernel._score_kernel` (shared: never written)."""
    found = _KERNEL_PARAMS.get(params)
    if found is None:
        if len(_KERNEL_PARAMS) >= _PARAMS_LIMIT:
            _KERNEL_PARAMS.clear()
        min_periods = cast(int, params.min_periods)  # never None after __post_init__
        fields = (params.threshold, params.shift_h, params.var_h, params.flat_h, min_periods, params.window)
        found = _KERNEL_PARAMS[params] = np.array([float(v) for v in fields])
    return found


_KERNEL_PARAMS: dict[AnomalyParams, np.ndarray] = {}


def _params_dict(params: AnomalyParams) -> dict[str, Any]:
    found = _PARAMS_DICTS.get(params)
    if found is None:
        if len(_PARAMS_DICTS) >= _PARAMS_LIMIT:
            _PARAMS_DICTS.clear()
        found = _PARAMS_DICTS[params] = {k: getattr(params, k) for k in AnomalyParams.__dataclass_fields__}
    return found


def _unpack_v2(data: str) -> np.ndarray:
    """The floats of a version-2 state, from their base64 string."""
    return np.frombuffer(binascii.a2b_base64(data, strict_mode=True), dtype=_WIRE_FLOAT)


def _unpack_v1(state: dict[str, Any], ints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The floats of a version-1 state (lists of floats) in the version-2 layout, and its sorted window.

    Version 1 took the windows' lengths from its lists, not from ``ints``: they are
    written into ``ints`` here, as the old loader did.
    """
    keys = ("floats", "long", "evicted", "recent", "long_sorted")
    parts = [np.asarray(state[k], dtype=np.float64) for k in keys]
    if any(p.ndim != 1 for p in parts) or parts[0].shape != (_N_F,):
        raise ValueError("malformed anomaly detector state: bad shapes")
    ints[_I_NL], ints[_I_NEVICTED], ints[_I_NS], ints[_I_NSORTED] = (len(p) for p in parts[1:])
    flat = np.concatenate(parts[:4])
    flat.setflags(write=False)  # as version 2's buffer is: one compiled signature of the restore kernel
    return flat, parts[4]


def anomaly_details(values: Any, **params: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, reason codes (int8, see ``CODE_NAMES``) and signed robust z for each point."""
    det = AnomalyDetector(**params)
    scores = det.score(values)
    return scores, det.last_codes, det.last_z


def anomaly_scores(values: Any, *, window: int = 64, **params: Any) -> np.ndarray:
    """Causal anomaly score in [0, 1] for each point of a numeric series.

    ``score[i]`` depends only on ``values[: i + 1]``. Parameters are those of
    :class:`AnomalyParams`; see the module docstring for the method. NaN and
    +-Inf score 1.0; the first ``min_periods`` finite points score 0 (no history).

    >>> import numpy as np
    >>> s = anomaly_scores(np.r_[np.ones(20) + np.arange(20) % 3 * 0.1, 9.0])
    >>> bool(s[-1] > 0.95), bool(s[:-1].max() < 0.5)
    (True, True)
    """
    return AnomalyDetector(window=window, **params).score(values, details=False)


def explain(metric: str, reason: str, value: float, det: AnomalyDetector, k: int) -> str:
    """What moved, by how much, against what: point ``k`` of the detector's last chunk."""
    level, noise, z = float(det.last_level[k]), float(det.last_noise[k]), float(det.last_z[k])
    if reason in ("nan", "inf"):
        return f"{metric} is {value}"
    if reason == "flat":
        return f"{metric} has repeated {value:g} for longer than it usually repeats a value"
    if reason == "variance_change":
        return f"{metric} became noisier than its usual spread ({noise:.3g}) around {level:.4g}"
    if reason == "level_shift":  # z is the level's: the recent median against the long window's
        return (
            f"{metric}'s recent level {level:.4g} against {level - z * noise:.4g} before it "
            f"(usual spread {noise:.3g}, {z:+.3g} of it)"
        )
    return f"{metric} {value:.4g} against a recent level of {level:.4g} (usual spread {noise:.3g}, {z:+.3g} of it)"
