"""Detectors wired to series: what each kind of event is checked for, with state per series.

The entity-keyed side of the series repartition (see :mod:`aitrace.processors.app`; the
trace-keyed side, which cuts a batch into chunks, is :mod:`aitrace.processors.chunks`):
:class:`SeriesDetectors` folds a chunk into the state of each series
  of the entity (one table key per series: ``run/<run>/<split>/<metric>``,
  ``model/<m>/latency``, ``model/<m>/feature/<f>``, ``data/<ds>/<stage>/<feature>``...) and
  returns alert versions (through :class:`~aitrace.processors.alerts.IncidentTracker`) and
  documents to index (ground-truth labels joined to their prediction).

Every series state records, per source partition of the input topics, the last source
offset applied; a chunk that is not newer is skipped. Chunks of one source partition and
one entity keep their order through the repartition topic (same key, same partition), so
this is exact for redeliveries on either side.

Every rule comes from :mod:`aitrace.detect` (its window checks from :mod:`aitrace.detect.windows`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from aitrace.detect import windows as K
from aitrace.detect.calibrate import ScoreCalibrator
from aitrace.detect.level import LatencyShiftMonitor
from aitrace.detect.series import TrainingSeries, explain, worst
from aitrace.detect.training import layer_spread, metric_role
from aitrace.processors import rollup
from aitrace.processors.alerts import Finding, IncidentPolicy, IncidentTracker, SeriesContext
from aitrace.sinks.documents import Action

Chunk = dict[str, Any]
State = dict[str, Any]

_VAL_SPLITS = frozenset({"val", "valid", "validation", "eval", "test", "dev"})
_TRAIN_SPLITS = frozenset({"", "train", "training"})


@dataclass(frozen=True)
class DetectionConfig:
    """Thresholds shared by the series detectors (defaults documented in the worker's --help)."""

    anomaly_threshold: float = 0.9  # detect's scores: 0.5 = its decision level; 0.9 keeps alerts rare
    critical_score: float = 0.999
    drift_window: int = 200  # reference and current window length (points) for inference features
    drift_alpha: float = 0.001  # family-wise per batch/window, Bonferroni over the features (detect_drift's rule)
    drift_min_effect: float = 0.1  # reported as the alert's threshold; the verdict is detect_drift's
    psi_warning: float = 0.2
    psi_critical: float = 0.5
    mean_shift: float = 0.5  # unused since drift on summaries is detect_drift's (kept for old configs)
    rate_window: int = 50  # requests per error-rate / accuracy window
    rate_min_events: int = 5
    missing_jump: float = 0.05
    pending_limit: int = 5_000  # predictions / labels waiting for their partner, per model (bounds the state)
    rollup_window_s: float = 10.0
    index_prefix: str = "aitrace"
    policy: IncidentPolicy = field(default_factory=IncidentPolicy)


_RECENT_BATCHES = 32
_TRAINING_DETECTORS = frozenset({"nan", "inf", "stalled", "plateau"})
VANISHING_DECADES = 5.0  # per-layer gradient norms this many decades apart (see detect.training.layer_spread)


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


# ---------------------------------------------------------------- entity-keyed side


@dataclass
class ChunkResult:
    """What one chunk produced: alert versions to publish and documents to index."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    label_events: list[tuple[dict[str, Any], list[Any] | None]] = field(default_factory=list)  # (label, prediction)
    actions: list[Action] = field(default_factory=list)  # rollup documents
    skipped: int = 0  # series for which this chunk was a redelivery
    applied: int = 0  # series whose state this chunk changed


class SeriesDetectors:
    """Apply chunks to per-series state held in ``table`` (a Faust table or any mutable mapping)."""

    def __init__(self, table: MutableMapping[str, Any], config: DetectionConfig | None = None) -> None:
        self.table = table
        self.config = config or DetectionConfig()
        self.incidents = IncidentTracker(self.config.policy)
        self._batch_id: str | None = None

    # -- plumbing ------------------------------------------------------
    def apply(self, chunk: Chunk, *, source: str, offset: int, batch_id: str | None = None) -> ChunkResult:
        """Fold one chunk (decoded from the repartition topic) into its series.

        Idempotent: skipped per series when its source offset is not newer than the last
        applied one, or when its batch id is among the series' recent ones.
        """
        result = ChunkResult()
        self._batch_id = batch_id
        handler: Callable[[Chunk, ChunkResult, str, int], None] = {
            "run": self._run,
            "model": self._model,
            "data": self._data,
        }[chunk["kind"]]
        handler(chunk, result, source, offset)
        return result

    def _with_state(
        self,
        key: str,
        source: str,
        offset: int,
        result: ChunkResult,
        work: Callable[[State], None],
    ) -> None:
        state = self.table.get(key)
        state = dict(state) if state else {"applied": {}, "incident": None}
        if offset <= state["applied"].get(source, -1) or (self._batch_id and self._batch_id in state.get("bids", ())):
            result.skipped += 1
            return
        work(state)
        result.applied += 1
        state["applied"][source] = offset
        if self._batch_id:
            state["bids"] = [*state.get("bids", [])[-(_RECENT_BATCHES - 1) :], self._batch_id]
        self.table[key] = state  # one changelog record per series and chunk

    def _publish(self, result: ChunkResult, state: State, ctx: SeriesContext, outcome: tuple[Any, ...]) -> None:
        finding, clean, last_time = outcome
        result.alerts.extend(self.incidents.observe(state, ctx, finding, clean=clean, last_time_us=last_time))

    # -- training runs -------------------------------------------------
    def _run(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        run_id = chunk["run_id"]
        for name, s in chunk["series"].items():
            split, metric = name.split("|", 1)
            key = f"run/{run_id}/{split or 'train'}/{metric}"
            ctx = SeriesContext(key, chunk["service"], run_id, None, metric, chunk["trace_id"])
            values = np.asarray(s["values"], dtype=np.float64)

            def work(
                state: State,
                s: dict[str, Any] = s,
                ctx: SeriesContext = ctx,
                metric: str = metric,
                split: str = split,
                values: np.ndarray = values,
            ) -> None:
                outcome = self._training(state, values, s["times"], s["steps"], metric, run_id, split)
                self._publish(result, state, ctx, outcome)
                if s.get("rollup") and chunk.get("ctx"):
                    result.actions.extend(
                        rollup.update(
                            state,
                            chunk["ctx"],
                            metric,
                            split or None,
                            np.asarray(s["steps"], dtype=np.int64),
                            np.asarray(s["times"], dtype=np.int64),
                            values,
                            window_us=int(self.config.rollup_window_s * 1_000_000),
                            prefix=self.config.index_prefix,
                        )
                    )

            self._with_state(key, source, offset, result, work)
        self._overfitting(chunk, result, source, offset)
        self._layers(chunk, result, source, offset)

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

    def _training(
        self, state: State, values: np.ndarray, times: Any, steps: Any, metric: str, run_id: str, split: str
    ) -> tuple[Finding | None, int, int]:
        """One training series through detect's TrainingSeries (the rules ``aitrace backtest --metric`` runs)."""
        rules = (
            TrainingSeries.from_state(state["rules"])
            if "rules" in state
            else TrainingSeries(metric, split=split, threshold=self.config.anomaly_threshold)
        )
        found = rules.update(steps, values)
        state["rules"] = rules.to_state()
        times = np.asarray(times, dtype=np.int64)
        last_time = int(times[-1]) if times.size else 0
        top = worst(found)
        if top is None:
            return None, int(values.size), last_time
        i = top.index - (rules.n_seen - values.size)  # position in this chunk
        detector = top.reason
        if not math.isfinite(top.value):
            detector = "nan" if math.isnan(top.value) else "inf"
        finding = Finding(
            kind="training" if detector in _TRAINING_DETECTORS else "anomaly",
            detector=detector,
            severity=top.severity,
            title=f"{metric}: {detector.replace('_', ' ')} in run {run_id} at step {int(top.step)}: {top.message}",
            time_us=int(times[i]),
            score=top.score,
            threshold=top.threshold,
            step=int(top.step),
            evidence=values[max(0, i - 15) : i + 1].tolist(),
            details={"value": repr(top.value), "why": top.message},
        )
        after = sum(1 for f in found if f.index > top.index)
        return finding, int(values.size - 1 - i - after), last_time

    def _layers(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        """Vanishing gradients: per-layer gradient norms decades apart (the first layers starve)."""
        norms = {
            name.split("|", 1)[1].split("/", 1)[1]: s["values"]
            for name, s in chunk["series"].items()
            if name.split("|", 1)[0] in _TRAIN_SPLITS and name.split("|", 1)[1].startswith("grad_norm/")
        }
        spread = layer_spread(norms)
        if spread is None:
            return
        run_id = chunk["run_id"]
        key = f"run/{run_id}/layers"
        ctx = SeriesContext(key, chunk["service"], run_id, None, "grad_norm", chunk["trace_id"])
        decades, low, high = spread
        some = next(s for n, s in chunk["series"].items() if n.endswith(f"grad_norm/{low}"))
        last_time = int(np.asarray(some["times"], dtype=np.int64)[-1])

        def work(state: State) -> None:
            finding = None
            if decades >= VANISHING_DECADES:
                finding = Finding(
                    kind="training",
                    detector="vanishing_gradients",
                    severity="warning",
                    title=f"vanishing gradients in run {run_id}: layer {low} gets 1e-{decades:.0f} of layer {high}'s",
                    time_us=last_time,
                    statistic=decades,
                    threshold=VANISHING_DECADES,
                    step=int(np.asarray(some["steps"])[-1]),
                    details={"why": f"median gradient norm of {low} is {decades:.1f} decades below {high}'s"},
                )
            self._publish(result, state, ctx, (finding, 0 if finding else 10, last_time))

        self._with_state(key, source, offset, result, work)

    def _overfitting(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        """Validation loss rising while training loss falls (per run)."""
        train = val = None
        for name, s in chunk["series"].items():
            split, metric = name.split("|", 1)
            if metric in ("loss", "train_loss") and split in _TRAIN_SPLITS:
                train = s
            elif (metric == "loss" and split in _VAL_SPLITS) or metric in ("val_loss", "eval_loss", "valid_loss"):
                val = s
        if train is None and val is None:
            return
        run_id = chunk["run_id"]
        key = f"run/{run_id}/overfitting"
        ctx = SeriesContext(key, chunk["service"], run_id, None, "loss", chunk["trace_id"])

        def work(state: State) -> None:
            outcome = K.overfitting_update(state, train, val)
            if outcome is None:
                return
            finding_stats, clean, last_time = outcome
            finding = None
            if finding_stats is not None:
                gap, step, time_us, evidence = finding_stats
                finding = Finding(
                    kind="training",
                    detector="overfitting",
                    severity="warning",
                    title=f"overfitting in run {run_id}: validation loss rising while training loss falls",
                    time_us=time_us,
                    statistic=gap,
                    threshold=K.OVERFIT_MIN_RISE,
                    step=step,
                    evidence=evidence,
                )
            self._publish(result, state, ctx, (finding, clean, last_time))

        self._with_state(key, source, offset, result, work)

    # -- inference -----------------------------------------------------
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

    # -- data pipelines ------------------------------------------------
    def _data(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        dataset, stage = chunk["dataset"], chunk["stage"]
        for time_us, service, trace_id, stats in chunk["stats"]:
            n_features = len(stats.get("features") or [])
            for feature in stats.get("features") or []:
                key = f"data/{dataset}/{stage}/{feature['name']}"
                ctx = SeriesContext(key, service, None, None, feature["name"], trace_id)
                self._data_series(
                    key,
                    ctx,
                    lambda st, f=feature, n=n_features: K.feature_checks(st, f, self.config, n),  # type: ignore[misc]
                    time_us,
                    result,
                    source,
                    offset,
                    current=feature.get("categories") or {},
                )
            if stats.get("class_counts"):
                key = f"data/{dataset}/{stage}/__label__"
                ctx = SeriesContext(key, service, None, None, stats.get("label") or "label", trace_id)
                counts = stats["class_counts"]
                self._data_series(
                    key,
                    ctx,
                    lambda st, c=counts: K.label_checks(st, c, self.config),  # type: ignore[misc]
                    time_us,
                    result,
                    source,
                    offset,
                    current=counts,
                )

    def _data_series(
        self,
        key: str,
        ctx: SeriesContext,
        check: Callable[[State], list[tuple[str, str, str, float, float, str]]],
        time_us: int,
        result: ChunkResult,
        source: str,
        offset: int,
        current: dict[str, int],
    ) -> None:
        """Run one stats series' checks and publish two incidents: values never seen before
        (their own series ``KEY/unseen``, so a PSI that an unseen class drives cannot hide them)
        and the worst of the other checks (series ``KEY``)."""
        cfg = self.config

        def work(state: State) -> None:
            problems = check(state)
            unseen = [p for p in problems if p[1] in _UNSEEN_DETECTORS]
            rest = [p for p in problems if p[1] not in _UNSEEN_DETECTORS]
            # Unseen values first: one batch yields both alerts with the same first_seen, and
            # the specific one should come first to whoever reads them in arrival order.
            sub = state.setdefault("unseen", {"incident": None})
            found = _unseen_finding(key, ctx, unseen, state.get("ref") or {}, current, time_us) if unseen else None
            unseen_ctx = replace(ctx, series=f"{key}/unseen")
            self._publish(result, sub, unseen_ctx, (found, 0 if unseen else cfg.policy.resolve_after, time_us))
            worst = _worst_finding(key, rest, time_us)
            self._publish(result, state, ctx, (worst, 0 if rest else cfg.policy.resolve_after, time_us))

        self._with_state(key, source, offset, result, work)


_UNSEEN_DETECTORS = frozenset({"unseen_label", "unseen_category"})


def _worst_finding(key: str, problems: list[tuple[str, str, str, float, float, str]], time_us: int) -> Finding | None:
    """The batch's worst check (critical first, then the largest statistic) as one finding."""
    if not problems:
        return None
    problems = sorted(problems, key=lambda p: (p[2] == "critical", p[3]), reverse=True)
    kind, detector, severity, statistic, threshold, text = problems[0]
    return Finding(
        kind=kind,
        detector=detector,
        severity=severity,
        title=f"{text} in {key.split('/', 1)[1]}",
        time_us=time_us,
        statistic=statistic,
        threshold=threshold,
        evidence=[p[3] for p in problems],
        details={"checks": ",".join(p[1] for p in problems)},
    )


def _unseen_finding(
    key: str,
    ctx: SeriesContext,
    problems: list[tuple[str, str, str, float, float, str]],
    ref: dict[str, Any],
    current: dict[str, int],
    time_us: int,
) -> Finding:
    """Name the values the reference batch never had and how many rows carry them.

    The kernel compared against ``ref["categories"]``; the same comparison here recovers the
    values and their row counts, which the kernel's share alone does not say.
    """
    kind, detector, severity, share, threshold, _ = problems[0]
    known = ref.get("categories") or {}
    values = sorted(k for k, n in current.items() if k not in known and n > 0)
    rows = sum(int(current[k]) for k in values)
    shown = ", ".join(repr(v) for v in values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")
    plural = "s" if len(values) != 1 else ""
    what = f"label value{plural} {shown}" if detector == "unseen_label" else f"value{plural} {shown} of {ctx.feature!r}"
    where = key.split("/", 1)[1].rsplit("/", 1)[0]
    return Finding(
        kind=kind,
        detector=detector,
        severity=severity,
        title=f"{what} never seen before in {where} ({rows} rows)",
        time_us=time_us,
        statistic=share,
        threshold=threshold,
        evidence=[float(current[k]) for k in values[:16]],
        details={"values": ",".join(values[:16]), "rows": str(rows), "checks": detector},
    )
