"""Training-run series: each metric's rules, overfitting and vanishing gradients, rollups of fast series.

Chunks of entity ``run/<run_id>`` (see :mod:`aitrace.processors.chunks`); every rule comes
from :mod:`aitrace.detect` (:class:`~aitrace.detect.series.TrainingSeries`, the rules
``aitrace backtest --metric`` runs).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from aitrace.detect import windows as K
from aitrace.detect.finding import Finding
from aitrace.detect.run_checks import RunChecks
from aitrace.detect.series import TRAIN_SPLITS, TrainingSeries
from aitrace.detect.training import (
    VANISHING_DECADES,
    classifier_score,
    layer_spread,
    metric_role,
    run_loss_name,
    series_name,
)
from aitrace.detect.underfit import UNDERFIT_MIN_LEVEL
from aitrace.processors import rollup
from aitrace.processors.detection_state import Chunk, ChunkResult, SeriesStateBase, State
from aitrace.processors.expiry import ENDED
from aitrace.processors.incidents import SeriesContext

_VAL_SPLITS = frozenset({"val", "valid", "validation", "eval", "test", "dev"})
_TRAINING_DETECTORS = frozenset({"nan", "inf", "stalled", "plateau", "vanishing"})
LOSS_NAME = "loss_name"  # in the run's checks' state: the series that stands for its loss ("": none)
RUN_END = "ended_at"  # and the time of its end (a lifecycle FINISHED, FAILED or KILLED), for series first seen after
Named = dict[tuple[str, str], Any]  # a run chunk's series by (split, name) as the rules read them: _by_rule_name


class RunSeriesDetectors(SeriesStateBase):
    """The series of a training run (entity ``run/<run_id>``)."""

    rollup_documents = True  # False in a worker that does not index: rollup windows move, no document is built

    def _run(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        run_id = chunk["run_id"]
        status = chunk.get("status")  # (the series topic is any client's: a status may be any value)
        # the run's end: its rolled-up windows indexed in full (at the lifecycle event's time: a forged chunk's is
        # not trusted to be an int)
        end = chunk.get("status_time") if isinstance(status, str) and status in ENDED else None
        ended_at = end if type(end) is int else None
        named = _by_rule_name(chunk["series"])
        admitted, opening = [], 0  # the series' keys take the run's slots before its checks' key, as they did
        for name, s in chunk["series"].items():
            split, metric = name.split("|", 1)
            key = f"run/{run_id}/{split or 'train'}/{metric}"
            if self._admit(key, result, opening):
                admitted.append((key, split, metric, s))
                opening += key not in self.table
        alias, decided = self._loss_alias(run_id, named, admitted)
        if alias is not None:  # a run's loss by another name (mse) is its loss to the run's rules
            for split in {split for split, _ in named}:
                if (split, alias) in named:
                    named.setdefault((split, "loss"), named[(split, alias)])
        # then the run's checks: a stall or plateau they paged is not paged again by the training loss's own rule
        reported = self._run_checks(chunk, named, result, source, offset, decided, ended_at)
        run_end = ended_at if ended_at is not None else self._run_end(run_id)
        for key, split, metric, s in admitted:
            ctx = SeriesContext(key, chunk["service"], run_id, None, metric, chunk["trace_id"])
            values = np.asarray(s["values"], dtype=np.float64)
            rule_split, rule_name = series_name(split, metric)
            role = metric_role(rule_name)
            loss = role == "loss"
            # the run's loss, or each of its losses where none stands for it (a VAE's, an actor-critic's); another
            # loss beside the run's (mse beside loss, as Keras sends them) is no second stall
            checked = rule_name in ("loss", alias) or ("train", "loss") not in named
            paged = reported if loss and rule_split in TRAIN_SPLITS else {}
            # what the series' rules read beside it: a loss the run's lr, the global gradient norm the loss
            beside: dict[str, np.ndarray | None] = {}
            if loss:
                beside["lr"] = _named_at(named, rule_split, "lr", s["steps"], s["times"])
            elif role == "grad_norm" and "/" not in rule_name:
                beside["loss"] = _named_at(named, rule_split, "loss", s["steps"], s["times"], gone=math.inf)

            def work(
                state: State,
                s: dict[str, Any] = s,
                ctx: SeriesContext = ctx,
                metric: str = metric,
                split: str = split,
                values: np.ndarray = values,
                beside: dict[str, np.ndarray | None] = beside,
                paged: dict[str, float] = paged,
                checked: bool = checked,
            ) -> None:
                at = (s["times"], s["steps"], beside)
                outcome = self._training(ctx.series, state, values, at, (metric, split, paged, checked), run_id)
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
                            documents=self.rollup_documents,
                        )
                    )
                # a series first seen after its run's end (the client sends a batch's events before its blocks)
                # has its points dated before it written as they come, as its siblings have
                end = ended_at if ended_at is not None or "ended_at" in state else run_end
                if end is not None and self.rollup_documents:
                    result.actions.extend(rollup.flush(state, end))

            self._with_state(key, source, offset, result, work)
        if ended_at is not None and self.rollup_documents:
            self._flush_rollups(run_id, {key for key, *_ in admitted}, ended_at, result, source, offset)
        self._fitting(chunk, named, result, source, offset)
        self._layers(chunk, named, result, source, offset)

    def _flush_rollups(
        self, run_id: str, done: set[str], ended_at: int, result: ChunkResult, source: str, offset: int
    ) -> None:
        """The run ended (its lifecycle event): the open rolled-up window of each of its series this chunk did
        not carry, indexed in full (:func:`~aitrace.processors.rollup.flush`)."""
        prefix = f"run/{run_id}/"

        def flush(state: State) -> None:
            result.actions.extend(rollup.flush(state, ended_at))

        for key, state in list(self.table.items()):
            if key.startswith(prefix) and key not in done and isinstance(state, dict) and state.get("win_of"):
                self._with_state(key, source, offset, result, flush)

    def _training(
        self,
        key: str,
        state: State,
        values: np.ndarray,
        at: tuple[Any, Any, dict[str, np.ndarray | None]],
        what: tuple[str, str, dict[str, float], bool],
        run_id: str,
    ) -> tuple[Finding | None, int, int]:
        """One training series through detect's TrainingSeries (the rules ``aitrace backtest --metric`` runs).

        ``at``: the chunk's times, steps and what the rules read beside the series at those steps; ``what``:
        the metric, its split, the verdicts the run's checks already paged, at their steps (not paged again
        here while the episode they were paged in lasts), and whether it is the run's loss (a loss beside it
        gets no stall or plateau check of its own)."""
        times, steps, beside = at
        metric, split, paged, checked = what
        rules = self._restore(key, state, "rules", TrainingSeries)
        threshold = self.config.anomaly_threshold
        rules = rules or TrainingSeries(metric, split=split, threshold=threshold, checks=checked)
        times = np.asarray(times, dtype=np.int64)
        found = [f for f in rules.update(steps, values, times=times, **beside) if not _repeats(f, paged)]
        self._save(key, state, "rules", rules)
        last_time = int(times[-1]) if times.size else 0
        top = rules.headline(found)
        if top is None:
            return None, int(values.size), last_time
        i = top.index - (rules.n_seen - values.size)  # position in this chunk
        detector = top.reason
        if not math.isfinite(top.value):
            detector = "nan" if math.isnan(top.value) else "inf"
        finding = replace(
            top,
            reason=detector,
            message=f"{metric}: {detector.replace('_', ' ')} in run {run_id} at step {int(top.step)}: {top.message}",
            category="training" if detector in _TRAINING_DETECTORS else "anomaly",
            time_us=int(times[i]),
            evidence=tuple(values[max(0, i - 15) : i + 1].tolist()),
            details={"value": repr(top.value), "why": top.message},
        )
        after = sum(1 for f in found if f.index > top.index)
        return finding, int(values.size - 1 - i - after), last_time

    def _loss_alias(self, run_id: str, named: Named, admitted: list[Any]) -> tuple[str | None, str | None]:
        """The name that stands for the run's loss in this chunk where none is named ``loss``
        (:func:`~aitrace.detect.training.run_loss_name`), and the decision this chunk makes (None: none made
        here), kept in the run's checks' state: made once, at the first chunk that has one, so that every later
        chunk reads the same series, whatever names it carries (``mae`` every 25 steps beside ``mse`` read as
        the loss in those chunks: a stall found 60 steps late). A series older than that decision (a run the
        worker saw before it read such names) stays as it was: the run's checks and fitting would start mid-run,
        its start the converged loss at the upgrade (false under-fitting on 10 of 120 healthy runs, /work/rev-aa)."""
        if ("train", "loss") in named:  # (a validation loss alone leaves the training one to be found)
            return None, None
        kept = self._checks_state(run_id).get(LOSS_NAME)
        if isinstance(kept, str):
            return kept or None, None
        alias = run_loss_name(name for split, name in named if split == "train")
        if alias is None:
            return None, None
        series = named[("train", alias)]
        key = next((key for key, _split, _metric, s in admitted if s is series), None)
        fresh = key is not None and key not in self.table  # (a series refused a state never stands for it)
        return (alias, alias) if fresh else (None, "")

    def _checks_state(self, run_id: str) -> dict[str, Any]:
        """The run's checks' state as the table holds it; empty where it is of another shape (a client's
        changelog record) or absent."""
        checks = self.table.get(f"run/{run_id}/checks")
        return checks if type(checks) is dict else {}

    def _run_end(self, run_id: str) -> int | None:
        """The time of the run's end kept in its checks' state."""
        end = self._checks_state(run_id).get(RUN_END)
        return end if type(end) is int and 0 <= end < 2**63 else None  # (a forged one: no overflow downstream)

    def _run_checks(
        self,
        chunk: Chunk,
        named: Named,
        result: ChunkResult,
        source: str,
        offset: int,
        decided: str | None = None,
        ended_at: int | None = None,
    ) -> dict[str, float]:
        """Stall, plateau and vanishing gradients told across the run's training series (detect.run_checks),
        by the names the rules read them by (``named``); the verdicts the run's checks have paged so far.
        ``decided``: the name that stands for the run's loss, decided by this chunk (:meth:`_loss_alias`)."""
        series = {name: (s["steps"], s["values"]) for (split, name), s in named.items() if split == "train"}
        run_id = chunk["run_id"]
        key = f"run/{run_id}/checks"
        if not series:
            if ended_at is not None and key in self.table:  # (the end's chunk carries no series, often)
                self._with_state(key, source, offset, result, lambda state: state.__setitem__(RUN_END, ended_at))
            return {}
        paged: dict[str, float] = {}
        ctx = SeriesContext(key, chunk["service"], run_id, None, "loss", chunk["trace_id"])
        last_time = max(int(np.asarray(s["times"], dtype=np.int64)[-1]) for s in chunk["series"].values())

        def work(state: State) -> None:
            if decided is not None:
                state[LOSS_NAME] = decided
            if ended_at is not None:
                state[RUN_END] = ended_at
            checks = self._restore(key, state, "checks", RunChecks) or RunChecks()
            found = checks.update(series)
            paged.update(checks.reported)
            self._save(key, state, "checks", checks)
            finding = None
            if found:
                top = found[0]
                finding = replace(
                    top,
                    message=f"{top.reason.replace('_', ' ')} in run {run_id} at step {int(top.step)}: {top.message}",
                    category="training",
                    time_us=last_time,
                    details={"why": top.message},
                )
            self._publish(result, state, ctx, (finding, 0 if finding else 10, last_time))

        self._with_state(key, source, offset, result, work)
        return paged

    def _layers(self, chunk: Chunk, named: Named, result: ChunkResult, source: str, offset: int) -> None:
        """Vanishing gradients: per-layer gradient norms decades apart (the first layers starve)."""
        norms = {
            name.split("/", 1)[1]: s["values"]
            for (split, name), s in named.items()
            if split == "train" and name.startswith("grad_norm/")
        }
        spread = layer_spread(norms)
        if spread is None:
            return
        run_id = chunk["run_id"]
        key = f"run/{run_id}/layers"
        ctx = SeriesContext(key, chunk["service"], run_id, None, "grad_norm", chunk["trace_id"])
        decades, low, high = spread
        some = named[("train", f"grad_norm/{low}")]
        last_time = int(np.asarray(some["times"], dtype=np.int64)[-1])

        def work(state: State) -> None:
            finding = None
            if decades >= VANISHING_DECADES:
                finding = Finding(
                    0,
                    float(np.asarray(some["steps"])[-1]),
                    decades,
                    math.nan,
                    "vanishing_gradients",
                    f"vanishing gradients in run {run_id}: layer {low} gets 1e-{decades:.0f} of layer {high}'s",
                    VANISHING_DECADES,
                    "grad_norm",
                    category="training",
                    time_us=last_time,
                    statistic=decades,
                    details={"why": f"median gradient norm of {low} is {decades:.1f} decades below {high}'s"},
                )
            self._publish(result, state, ctx, (finding, 0 if finding else 10, last_time))

        self._with_state(key, source, offset, result, work)

    def _fitting(self, chunk: Chunk, named: Named, result: ChunkResult, source: str, offset: int) -> None:
        """Over-fitting (validation loss rising while training loss falls) and under-fitting (a
        classifier's training loss levelling off far above zero, validation on it), per run."""
        train = named.get(("train", "loss"))
        val = next((s for (split, name), s in named.items() if name == "loss" and split in _VAL_SPLITS), None)
        if train is None and val is None:
            return
        scored = any(classifier_score(name) for _split, name in named)
        run_id = chunk["run_id"]
        key = f"run/{run_id}/overfitting"  # one state for both: the losses they read are kept once
        contexts = [SeriesContext(f"run/{run_id}/{rule}", chunk["service"], run_id, None, "loss", chunk["trace_id"])
                    for rule in ("overfitting", "underfitting")]  # fmt: skip

        def work(state: State) -> None:
            # the under-fitting incident lives beside the over-fitting one, in a part of the state of its own
            state["underfitting"] = under = dict(state.get("underfitting") or {"incident": None})
            incident_of = (state, under)
            for rule, ctx, holder, outcome in zip(
                ("overfitting", "underfitting"),
                contexts,
                incident_of,
                K.fitting_update(state, train, val, scored),
                strict=True,
            ):
                if outcome is not None:
                    found, clean, last_time = outcome
                    finding = None if found is None else _fit_finding(rule, run_id, *found)
                    self._publish(result, holder, ctx, (finding, clean, last_time))

        self._with_state(key, source, offset, result, work)


def _repeats(finding: Finding, paged: dict[str, float]) -> bool:
    """Whether the run's checks paged this verdict in the same episode: at or after the step the loss's
    episode began (a plateau's: the first loss of its best level's window; a stall's: the run's first step).
    A later plateau, after the loss learned again, is news."""
    since = finding.details.get("since_step")
    at = paged.get(finding.reason)
    return at is not None and since is not None and at >= float(since)


def _by_rule_name(series: dict[str, Any]) -> Named:
    """A run chunk's series by the split (``train`` for every training one) and the name the run's rules
    read them by (:func:`~aitrace.detect.training.series_name`: ``val/loss`` sent without a split is the
    validation loss, Lightning's ``lr-Adam`` the lr). Where two names read the same (``loss`` beside
    ``train/loss``), the one sent under the rules' name keeps it, else the first."""
    named: Named = {}
    later = []
    for name, s in series.items():
        split, metric = name.split("|", 1)
        rule_split, rule_name = series_name(split, metric)
        key = ("train" if rule_split in TRAIN_SPLITS else rule_split, rule_name)
        if metric == rule_name:
            named.setdefault(key, s)
        else:
            later.append((key, s))
    for key, s in later:
        named.setdefault(key, s)
    return named


def _named_at(named: Named, split: str, name: str, steps: Any, times: Any, gone: float = math.nan) -> np.ndarray | None:
    """The split's series of rule name ``name`` in this chunk (``lr``: ``learning_rate``, ``lr-Adam``, ...;
    ``loss``: ``train/loss``, ...) at each of ``steps``, NaN where it was not logged at that step; None when
    the chunk has none. A loss plateau at an lr that did not collapse is convergence, not a stop
    (:class:`~aitrace.detect.training.PlateauCheck`); a gradient norm that rises while the loss falls is a
    model leaving its flat start, not an explosion (:class:`~aitrace.detect.series.TrainingSeries`), so a loss
    logged as NaN reads as ``gone`` there (inf: diverged), not as a step it was not logged at. Where the chunk
    holds a step twice (a batch index, two epochs), the value sent at that step nearest in time (``times``)."""
    s = named.get(("train" if split in TRAIN_SPLITS else split, name))
    if s is None or not len(s["steps"]):
        return None
    at, rates = np.asarray(s["steps"], dtype=np.int64), np.asarray(s["values"], dtype=np.float64)
    want = np.asarray(steps, dtype=np.int64)
    if np.array_equal(at, want):  # logged at the same steps, point for point (a batch index repeats its steps)
        return np.where(np.isnan(rates), gone, rates)
    order = np.argsort(at, kind="stable")
    at, rates = at[order], rates[order]
    k = np.minimum(np.searchsorted(at, want), at.size - 1)
    out = np.where(at[k] == want, np.where(np.isnan(rates[k]), gone, rates[k]), np.nan)
    steps_seen, counts = np.unique(at, return_counts=True)
    if (counts > 1).any():  # the nearest in time of the values sent at that step: another epoch's is not it
        by_step: dict[int, list[tuple[int, float]]] = {}
        for step, time_us, x in zip(at.tolist(), np.asarray(s["times"])[order].tolist(), rates.tolist(), strict=True):
            by_step.setdefault(step, []).append((time_us, x))
        wanted_times = np.asarray(times).tolist()
        for i in np.flatnonzero(np.isin(want, steps_seen[counts > 1])).tolist():
            x = min(by_step[int(want[i])], key=lambda sent: abs(sent[0] - wanted_times[i]))[1]
            out[i] = gone if math.isnan(x) else x
    return out


def _fit_finding(rule: str, run_id: str, value: float, step: int, time_us: int, evidence: list[float]) -> Finding:
    """The finding of an over- or under-fitting verdict at the validation point ``step``."""
    if rule == "overfitting":
        message = f"overfitting in run {run_id}: validation loss rising while training loss falls"
        threshold, severity = K.OVERFIT_MIN_RISE, "warning"
    else:
        message = (
            f"underfitting in run {run_id}: the training loss levelled off at {value:.0%} of its start and the "
            f"validation loss ({evidence[-1]:.4g}) sits on it: too little capacity, too much regularisation, "
            "a learning rate too small to go further, or inputs that carry little of the labels' signal"
        )
        threshold, severity = UNDERFIT_MIN_LEVEL, "info"  # advice about the run, not an incident to wake anyone
    return Finding(0, float(step), value, math.nan, rule, message, threshold, "loss", severity, category="training",
                   time_us=time_us, statistic=value, evidence=tuple(evidence))  # fmt: skip
