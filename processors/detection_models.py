"""Model (inference) series: latency and confidence anomalies, latency level shifts, error and
wrong-prediction rates, input feature drift, ground-truth labels joined to their prediction.

Chunks of entity ``model/<name>`` (see :mod:`aitrace.processors.chunks`); every rule is one
object of :mod:`aitrace.detect.service` per series (the rules ``aitrace backtest --service``
runs), kept in the series state under ``rules``; this module only wires them and names the
model in the alert.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
from aitrace.detect import windows as K
from aitrace.detect.batched import update_drift_windows_chunks
from aitrace.detect.finding import Finding
from aitrace.detect.service import DriftWindows, RateSeries, ServiceSeries
from aitrace.processors.detection_state import (
    Chunk,
    ChunkResult,
    SeriesStateBase,
    State,
    mark_applied,
    redelivered,
)
from aitrace.processors.incidents import SeriesContext

Rules = ServiceSeries | RateSeries | DriftWindows
_Points = tuple[np.ndarray, np.ndarray]  # a series' times (us) and values in one chunk
_Open = tuple[str, State, DriftWindows, np.ndarray]  # a feature's series key, state, rules, values in the chunk


class ModelSeriesDetectors(SeriesStateBase):
    """The series of a model in service (entity ``model/<name>``)."""

    def _model(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        model, service = chunk["model"], chunk["service"]
        times = np.asarray(chunk["times"], dtype=np.int64)
        if times.size:
            for metric, points in _numeric(chunk).items():
                self._model_numeric(chunk, result, (source, offset), metric, points)
            errors = np.asarray(chunk["errors"], dtype=np.float64)
            key, at = f"model/{model}/error_rate", (source, offset)
            self._rate(key, model, service, "error_rate", (times, errors), result, at, chunk)
        if chunk["features"]:
            self._feature_drift(chunk, result, source, offset)
        if chunk["requests"] or chunk["labels"]:
            self._join_labels(chunk, result, source, offset)

    def _model_numeric(
        self, chunk: Chunk, result: ChunkResult, where: tuple[str, int], metric: str, points: _Points
    ) -> None:
        model = chunk["model"]
        key = f"model/{model}/{metric}"
        ctx = SeriesContext(key, chunk["service"], None, model, metric, None)
        cfg = self.config

        def work(state: State) -> None:
            rules = self._restore(key, state, "rules", ServiceSeries)
            rules = rules or ServiceSeries(metric, threshold=cfg.anomaly_threshold, critical=cfg.critical_score)
            found, clean = self._update_ahead(key, rules, chunk, points, (state, where), _numeric_points(metric))
            self._publish_rules(result, state, ctx, rules, rules.headline(found), points[0], model, clean)

        self._with_state(key, *where, result, work)

    def _update_ahead(
        self,
        key: str,
        rules: ServiceSeries | RateSeries,
        chunk: Chunk,
        points: _Points,
        opened: tuple[State, tuple[str, int]],
        points_of: Callable[[Chunk], Any],
    ) -> tuple[list[Finding], int]:
        """The chunk's findings and clean count for series ``key`` (``opened``: its state before the chunk, and
        where the chunk is from): computed at an earlier chunk of the group, or now, for this chunk and every
        later chunk of the group that will apply to the series (``points_of``: a chunk's points of it), in one call."""
        done = self._computed_ahead(key, chunk)
        if done is not None:
            return done
        later = self._later_chunks(*opened, points_of)
        if not later:
            return rules.update(*points), rules.clean
        found = rules.update_chunks([points, *(p for _, p in later)])
        self._ahead[key] = [(c, (f, k)) for (c, _), f, k in zip(later, found[1:], rules.cleans[1:], strict=True)]
        return found[0], rules.cleans[0]

    def _computed_ahead(self, key: str, chunk: Chunk) -> Any:
        """What an earlier chunk of the group computed for series ``key`` and this chunk (None: nothing)."""
        ahead = self._ahead.pop(key, None)
        if not ahead:
            return None
        (expected, outcome), rest = ahead[0], ahead[1:]
        if expected is not chunk:
            raise RuntimeError(f"series {key!r}: a chunk of the group was not applied as looked ahead")
        if rest:
            self._ahead[key] = rest
        return outcome

    def _later_chunks(
        self, state: State, where: tuple[str, int], points_of: Callable[[Chunk], Any]
    ) -> list[tuple[Chunk, Any]]:
        """The group's later chunks that will apply to a series (its ``state`` before this chunk, which is at
        ``where``), judged as :meth:`_open_state` will judge them, with their points: those that have some
        (``points_of``: None for a chunk without)."""
        if not self._later:
            return []
        seen = {"applied": dict(state["applied"]), "bids": list(state.get("bids", []))}
        mark_applied(seen, *where, self._batch_id)
        out = []
        for chunk in self._later:
            points = points_of(chunk) if chunk["kind"] == "model" else None
            if points is not None and not redelivered(seen, chunk["src"], chunk["off"], chunk.get("bid")):
                mark_applied(seen, chunk["src"], chunk["off"], chunk.get("bid"))
                out.append((chunk, points))
        return out

    def _publish_rules(
        self,
        result: ChunkResult,
        state: State,
        ctx: SeriesContext,
        rules: Rules,
        top: Finding | None,
        times: Any,
        model: str,
        clean: int,
    ) -> None:
        """Keep the rules' state, and publish the batch's headline finding under the model's name (``clean``:
        the points judged normal after it, the rules' ``clean`` of this chunk)."""
        self._save(ctx.series, state, "rules", rules)
        times = np.asarray(times, dtype=np.int64)
        last_time = int(times[-1]) if times.size else 0
        if top is not None:
            top = replace(top, step=float("nan"), message=_title(top, model), details=_details(top))
        self._publish(result, state, ctx, (top, clean, last_time))

    def _rate(
        self,
        key: str,
        model: str,
        service: str,
        what: str,
        points: _Points,
        result: ChunkResult,
        where: tuple[str, int],
        chunk: Chunk | None = None,
    ) -> None:
        """Windowed rate of bad outcomes (errors, wrong predictions; ``points``: times and 0/1 outcomes) against
        its own baseline. ``chunk``: the requests' chunk, of a model's errors (whose later chunks of the group
        can be looked ahead: :meth:`_update_ahead`)."""
        cfg = self.config
        ctx = SeriesContext(key, service, None, model, what, None)

        def work(state: State) -> None:
            rules = self._restore(key, state, "rules", RateSeries)
            rules = rules or RateSeries(what, window=cfg.rate_window, min_events=cfg.rate_min_events)
            if chunk is None:
                found, clean = rules.update(*points), rules.clean
            else:
                found, clean = self._update_ahead(key, rules, chunk, points, (state, where), _error_points)
            top = max(found, key=lambda f: f.value, default=None)
            self._publish_rules(result, state, ctx, rules, top, points[0], model, clean)

        self._with_state(key, *where, result, work)

    def _feature_drift(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        """Every input feature's drift windows, the chunk's completed windows tested in one KS call."""
        model, service, features = chunk["model"], chunk["service"], chunk["features"]
        times = np.asarray(chunk["times"], dtype=np.int64)
        cfg = self.config
        open_: list[_Open] = []
        new = 0  # features of the chunk not tracked yet: their states are written after the loop
        for feature, values in features.items():
            key = f"model/{model}/feature/{feature}"
            if key not in self.table:
                if not self._admit(key, result, new):
                    continue
                new += 1
            state = self._open_state(key, source, offset, result)
            if state is None:
                continue
            rules = self._restore(key, state, "rules", DriftWindows)
            rules = rules or DriftWindows(
                feature,
                window=cfg.drift_window,
                alpha=cfg.drift_alpha / max(1, len(features)),
                min_effect=cfg.drift_min_effect,
                psi_critical=cfg.psi_critical,
            )
            open_.append((key, state, rules, np.asarray(values, dtype=np.float64)))
        for (key, state, rules, _), (hits, clean) in zip(
            open_, self._drift(chunk, open_, (source, offset)), strict=True
        ):
            if hits or clean:
                ctx = SeriesContext(key, service, None, model, rules.feature, None)
                top = hits[-1] if hits else None
                self._publish_rules(result, state, ctx, rules, top, times, model, clean)
            else:
                self._save(key, state, "rules", rules)  # no window completed: nothing to tell an incident
            self._close_state(key, state, source, offset, result)

    def _drift(self, chunk: Chunk, open_: list[_Open], where: tuple[str, int]) -> list[tuple[list[Finding], int]]:
        """Each open feature's findings and clean count for the chunk: computed at an earlier chunk of the group,
        or now, for this chunk and the later chunks of the group that will apply to the feature (in a group,
        ~30 us a chunk for its four features' windows where a call per chunk cost ~95); the features with the
        same later chunks (all, as a rule) in one call."""
        outcomes: dict[str, tuple[list[Finding], int]] = {}
        calls: dict[tuple[int, ...], tuple[list[Chunk], list[_Open]]] = {}
        for entry in open_:
            done = self._computed_ahead(entry[0], chunk)
            if done is not None:
                outcomes[entry[0]] = done
                continue
            later = [c for c, _ in self._later_chunks(entry[1], where, _feature_values(entry[2].feature))]
            calls.setdefault(tuple(map(id, later)), (later, []))[1].append(entry)
        for later, members in calls.values():
            rules = [r for _, _, r, _ in members]
            parts = [(chunk["times"], [v for *_, v in members])]
            parts += [(c["times"], [c["features"][r.feature] for r in rules]) for c in later]
            for (key, _, rule, _), hits in zip(members, update_drift_windows_chunks(rules, parts), strict=True):
                outcomes[key] = (hits[0], rule.cleans[0])
                if later:
                    self._ahead[key] = [(c, (h, k)) for c, h, k in zip(later, hits[1:], rule.cleans[1:], strict=True)]
        return [outcomes[key] for key, *_ in open_]

    def _join_labels(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        """Join delayed ground-truth labels to their prediction by request id; windowed accuracy."""
        model = chunk["model"]
        key = f"model/{model}/labels"
        cfg = self.config
        outcomes: list[tuple[int, float]] = []

        def work(state: State) -> None:
            # what the rooms may hold, over-counted: entries put in, not those taken out by a join
            grown = state["grown"] = [a + b for a, b in zip(state.get("grown") or (0, 0), _sizes(chunk), strict=True)]
            joined = K.join_labels(state, chunk["requests"], chunk["labels"], limit=cfg.pending_limit)
            for i, room in enumerate(("pred", "wait")):
                if grown[i] > cfg.pending_bytes:
                    grown[i], evicted = _trim(state[room], cfg.pending_bytes * 3 // 4)
                    result.evicted += evicted
            for event, prediction in joined:
                result.label_events.append((event, prediction))
                if prediction is not None:
                    outcomes.append((event["time"], float(prediction[0] != event["payload"][1]["label"])))

        self._with_state(key, source, offset, result, work)
        if outcomes:
            outcomes.sort()
            times = np.asarray([t for t, _ in outcomes], dtype=np.int64)
            wrong = np.asarray([w for _, w in outcomes], dtype=np.float64)
            key = f"model/{model}/wrong_predictions"
            self._rate(key, model, chunk["service"], "wrong_predictions", (times, wrong), result, (source, offset))


def _numeric_points(metric: str) -> Callable[[Chunk], _Points | None]:
    """A model chunk's points of its numeric series ``metric`` (None: it has none)."""
    return lambda chunk: _numeric(chunk).get(metric)


def _error_points(chunk: Chunk) -> _Points | None:
    """A model chunk's request times and error outcomes (None: no requests)."""
    times = np.asarray(chunk["times"], dtype=np.int64)
    return (times, np.asarray(chunk["errors"], dtype=np.float64)) if times.size else None


def _feature_values(feature: str) -> Callable[[Chunk], Any]:
    """A model chunk's values of input feature ``feature`` (None: the chunk has none)."""
    return lambda chunk: chunk["features"].get(feature)


def _numeric(chunk: Chunk) -> dict[str, _Points]:
    """A model chunk's numeric series and their points (times, values): the latency of every request
    (none without requests), the confidence of those that have one (none if no request has)."""
    times = np.asarray(chunk["times"], dtype=np.int64)
    if not times.size:
        return {}
    out = {"latency": (times, np.asarray(chunk["latency"], dtype=np.float64))}
    conf = np.asarray(chunk["confidence"], dtype=np.float64)
    finite = np.isfinite(conf)
    if finite.any():
        out["confidence"] = (times[finite], conf[finite])
    return out


def _sizes(chunk: Chunk) -> tuple[int, int]:
    """At least the bytes the chunk's predictions and labels take in their waiting rooms (as :func:`_trim`
    counts them): a request is its room key and entry in one list; a label's key is not in its event."""
    keys = sum(len(orjson.dumps(event["payload"][1]["request_id"])) + 2 for event in chunk["labels"])
    return len(orjson.dumps(chunk["requests"])), len(orjson.dumps(chunk["labels"])) + keys


def _trim(room: dict[str, Any], target: int) -> tuple[int, int]:
    """Put the oldest entries of a waiting room out until its JSON is ``target`` bytes or less: its size, and
    how many went. Measuring a room costs its size, so it is measured only once the bytes put in since it
    last was pass ``pending_bytes``, and left at 3/4 of that: the work stays proportional to what comes in."""
    sizes = [len(orjson.dumps(key)) + len(orjson.dumps(value)) + 2 for key, value in room.items()]
    total, n = sum(sizes) + 2, 0
    while total > target:  # insertion order: the oldest first
        total -= sizes[n]
        n += 1
    for key in list(itertools.islice(room, n)):
        del room[key]
    return total, n


def _title(f: Finding, model: str) -> str:
    """The alert's title: the rule's words, with the model they are about."""
    if f.category == "drift" or f.reason.endswith("_burst"):
        return f"{f.message} for model {model}"
    if f.reason == "level_shift":
        return f"{f.kind} of model {model}: {f.message}"
    # a page's first line says what moved against what (the rule's words), not only the rule's name
    return f"{f.kind} {f.reason.replace('_', ' ')} in model {model}: {f.message}"


def _details(f: Finding) -> dict[str, str]:
    if f.category == "drift" or f.reason.endswith("_burst") or f.reason == "level_shift":
        return dict(f.details)
    return {"value": repr(f.value), "why": f.message}
