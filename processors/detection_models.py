"""Model (inference) series: latency and confidence anomalies, latency level shifts, error and
wrong-prediction rates, input feature drift, ground-truth labels joined to their prediction.

Chunks of entity ``model/<name>`` (see :mod:`aitrace.processors.chunks`); every rule comes
from :mod:`aitrace.detect` (its window checks from :mod:`aitrace.detect.windows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aitrace.detect import windows as K
from aitrace.detect.calibrate import ScoreCalibrator
from aitrace.detect.level import LatencyShiftMonitor
from aitrace.detect.series import explain
from aitrace.detect.training import metric_role
from aitrace.processors.detection_state import Chunk, ChunkResult, SeriesStateBase, State
from aitrace.processors.incidents import Finding, SeriesContext


def _may_stall(state: State, name: str) -> bool:
    """Whether a flat run is news: not for schedules (detect's name rule: lr is constant between
    steps by design), not for a series that never varied (a constant logged as a metric)."""
    return metric_role(name) != "schedule" and bool(state.get("varied"))


def _note_variation(state: State, values: np.ndarray) -> None:
    """Remember whether the series ever took two different values (across chunks)."""
    if state.get("varied"):
        return
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    first = state.setdefault("first", float(finite[0]))
    state["varied"] = bool(np.any(finite != first))


class ModelSeriesDetectors(SeriesStateBase):
    """The series of a model in service (entity ``model/<name>``)."""

    def _model(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        model, service = chunk["model"], chunk["service"]
        times = np.asarray(chunk["times"], dtype=np.int64)
        if times.size:
            self._model_numeric(
                chunk, result, source, offset, "latency", np.asarray(chunk["latency"], dtype=np.float64)
            )
            conf = np.asarray(chunk["confidence"], dtype=np.float64)
            finite = np.isfinite(conf)
            if finite.any():
                sub = {**chunk, "times": times[finite]}
                self._model_numeric(sub, result, source, offset, "confidence", conf[finite])
            errors = np.asarray(chunk["errors"], dtype=np.float64)
            self._rate(f"model/{model}/error_rate", model, service, "error_rate", errors, times, result, source, offset)
        features = chunk["features"]
        for name, values in features.items():
            self._feature_drift(
                model, service, name, np.asarray(values, dtype=np.float64), times, len(features), result, source, offset
            )
        if chunk["requests"] or chunk["labels"]:
            self._join_labels(chunk, result, source, offset)

    def _model_numeric(
        self, chunk: Chunk, result: ChunkResult, source: str, offset: int, metric: str, values: np.ndarray
    ) -> None:
        model = chunk["model"]
        key = f"model/{model}/{metric}"
        ctx = SeriesContext(key, chunk["service"], None, model, metric, None)

        def work(state: State) -> None:
            outcome = self._anomaly(state, values, chunk["times"], None, metric, f"model {model}", "anomaly")
            if metric == "latency":
                shift = self._latency_shift(state, values, chunk["times"], model)
                if shift is not None and (outcome[0] is None or outcome[0].severity != "critical"):
                    outcome = (shift, 0, outcome[2])
            self._publish(result, state, ctx, outcome)

        self._with_state(key, source, offset, result, work)

    def _latency_shift(self, state: State, values: np.ndarray, times: Any, model: str) -> Finding | None:
        """The median latency moved to a new level and stays there (a slower backing store)."""
        det = LatencyShiftMonitor.from_state(state["latency"]) if "latency" in state else LatencyShiftMonitor()
        shifts = det.update(times, values)
        state["latency"] = det.to_state()
        if not shifts:
            return None
        shift = max(shifts, key=lambda s: s.ratio)
        i = shift.index - (det.n_seen - values.size)  # position in this chunk
        return Finding(
            kind="anomaly",
            detector="level_shift",
            severity="critical" if shift.ratio >= 3 else "warning",
            title=f"latency of model {model}: {shift.describe('latency (ms)')}",
            time_us=int(np.asarray(times, dtype=np.int64)[i]),
            score=shift.ratio,
            statistic=shift.z,
            threshold=det.sustained.params["min_ratio"],
            evidence=[shift.baseline_median, shift.recent_median],
            details={"baseline_median_ms": f"{shift.baseline_median:.4g}", "median_ms": f"{shift.recent_median:.4g}"},
        )

    def _rate(
        self,
        key: str,
        model: str,
        service: str,
        what: str,
        flags: np.ndarray,
        times: np.ndarray,
        result: ChunkResult,
        source: str,
        offset: int,
    ) -> None:
        """Windowed rate of bad outcomes (errors, wrong predictions) against its own baseline."""
        cfg = self.config
        ctx = SeriesContext(key, service, None, model, what, None)

        def work(state: State) -> None:
            out = K.rate_windows(state, flags, times, window=cfg.rate_window, min_events=cfg.rate_min_events)
            finding = None
            worst, clean, last_time = out
            if worst is not None:
                rate, baseline, limit, time_us, errors = worst
                severity = "critical" if rate >= max(0.5, 4 * limit) else "warning"
                label = "error rate" if what == "error_rate" else "wrong-prediction rate"
                finding = Finding(
                    kind="error_rate" if what == "error_rate" else "anomaly",
                    detector=f"{what}_burst",
                    severity=severity,
                    title=f"{label} {rate:.0%} for model {model} (baseline {baseline:.1%})",
                    time_us=time_us,
                    score=rate,
                    statistic=rate,
                    threshold=limit,
                    evidence=[rate, baseline, float(errors)],
                    details={"window": str(cfg.rate_window)},
                )
            self._publish(result, state, ctx, (finding, clean, last_time))

        self._with_state(key, source, offset, result, work)

    def _feature_drift(
        self,
        model: str,
        service: str,
        feature: str,
        values: np.ndarray,
        times: np.ndarray,
        n_features: int,
        result: ChunkResult,
        source: str,
        offset: int,
    ) -> None:
        cfg = self.config
        key = f"model/{model}/feature/{feature}"
        ctx = SeriesContext(key, service, None, model, feature, None)
        alpha = cfg.drift_alpha / max(1, n_features)
        last_time = int(times[-1]) if times.size else 0

        def work(state: State) -> None:
            tests = K.window_drift(state, values, window=cfg.drift_window, alpha=alpha, name=feature)
            if not tests:
                return
            worst: Finding | None = None
            clean = 0
            for verdict in tests:
                if verdict.drifted:
                    psi_value = verdict.psi if verdict.psi is not None else 0.0
                    stat = verdict.details.get("ks_distance", verdict.statistic)
                    severity = "critical" if psi_value >= cfg.psi_critical else "warning"
                    worst = Finding(
                        kind="drift",
                        detector=verdict.test,
                        severity=severity,
                        title=f"input drift of {feature!r} for model {model} (KS {stat:.2f}, PSI {psi_value:.2f})",
                        time_us=last_time,
                        score=stat,
                        statistic=stat,
                        threshold=cfg.drift_min_effect,
                        pvalue=verdict.pvalue,
                        evidence=[stat, psi_value],
                        details={
                            "alpha": f"{alpha:.3g}",
                            "window": str(cfg.drift_window),
                            "why": verdict.message,
                        },
                    )
                    clean = 0
                else:
                    clean += cfg.drift_window
            self._publish(result, state, ctx, (worst, clean, last_time))

        self._with_state(key, source, offset, result, work)

    def _join_labels(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        """Join delayed ground-truth labels to their prediction by request id; windowed accuracy."""
        model = chunk["model"]
        key = f"model/{model}/labels"
        cfg = self.config
        outcomes: list[tuple[int, float]] = []

        def work(state: State) -> None:
            joined = K.join_labels(state, chunk["requests"], chunk["labels"], limit=cfg.pending_limit)
            for event, prediction in joined:
                result.label_events.append((event, prediction))
                if prediction is not None:
                    outcomes.append((event["time"], float(prediction[0] != event["payload"][1]["label"])))

        self._with_state(key, source, offset, result, work)
        if outcomes:
            outcomes.sort()
            times = np.asarray([t for t, _ in outcomes], dtype=np.int64)
            wrong = np.asarray([w for _, w in outcomes], dtype=np.float64)
            self._rate(
                f"model/{model}/wrong_predictions",
                model,
                chunk["service"],
                "wrong_predictions",
                wrong,
                times,
                result,
                source,
                offset,
            )

    def _anomaly(
        self,
        state: State,
        values: np.ndarray,
        times: Any,
        steps: Any,
        what: str,
        where: str,
        kind: str,
    ) -> tuple[Finding | None, int, int]:
        """Score a chunk of one series; the worst point above the threshold is the finding."""
        cfg = self.config
        det = K.anomaly_detector(state.get("det"))
        cal = ScoreCalibrator.from_state(state["cal"]) if "cal" in state else ScoreCalibrator()
        raw = det.score(values)
        # a point pages only when it is rare for this series too (its normal bursts do not)
        scores = np.where(cal.rare(raw, det.last_codes, threshold=cfg.anomaly_threshold), raw, 0.0)
        state["det"], state["cal"] = det.to_state(), cal.to_state()
        _note_variation(state, values)
        times = np.asarray(times, dtype=np.int64)
        if scores.size == 0:
            return None, 0, 0
        last_time = int(times[-1])
        worst = int(np.argmax(scores))
        score = float(scores[worst])
        if score < cfg.anomaly_threshold:
            return None, int(scores.size), last_time
        code = K.code_name(int(det.last_codes[worst]))
        if code == "flat" and not _may_stall(state, what):
            return None, int(scores.size), last_time
        severity = "critical" if score >= cfg.critical_score or code in ("nan", "inf") else "warning"
        lo = max(0, worst - 15)
        step = None if steps is None else int(np.asarray(steps)[worst])
        finding = Finding(
            kind=kind if kind != "training" else ("training" if code in ("nan", "inf") else "anomaly"),
            detector=code,
            severity=severity,
            title=f"{what}: {code.replace('_', ' ')} in {where}" + (f" at step {step}" if step is not None else ""),
            time_us=int(times[worst]),
            score=score,
            statistic=float(det.last_z[worst]),
            threshold=cfg.anomaly_threshold,
            step=step,
            evidence=values[lo : worst + 1].tolist(),
            details={"value": repr(float(values[worst])), "why": explain(what, code, float(values[worst]), det, worst)},
        )
        clean = int(np.count_nonzero(scores[worst + 1 :] < cfg.anomaly_threshold))
        return finding, clean, last_time
