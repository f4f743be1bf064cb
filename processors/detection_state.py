"""The series state behind every detector of the entity-keyed side: its settings, idempotence, incidents.

One table key per series (``run/<run>/<split>/<metric>``, ``model/<m>/latency``,
``model/<m>/feature/<f>``, ``data/<ds>/<stage>/<feature>``...). :class:`SeriesStateBase` reads
and writes that state and publishes alert versions through
:class:`~aitrace.processors.incidents.IncidentTracker`; the kinds of series build on it
(:mod:`aitrace.processors.detection_runs`, :mod:`aitrace.processors.detection_models`,
:mod:`aitrace.processors.detection_data`) and :class:`aitrace.processors.detection.SeriesDetectors`
joins them.

Every series state records, per source partition of the input topics, the last source
offset applied; a chunk that is not newer is skipped. Chunks of one source partition and
one entity keep their order through the repartition topic (same key, same partition), so
this is exact for redeliveries on either side.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

import orjson
from aitrace.processors import rollup
from aitrace.processors.incidents import IncidentPolicy, IncidentTracker, SeriesContext, sound_incident
from aitrace.sinks.documents import Action

Chunk = dict[str, Any]
State = dict[str, Any]


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
    # ... and their bytes (JSON), per room: at pending_limit a room of usual entries (a label 390 B, a
    # prediction 96 B) holds 2 MB at most; 5,000 labels of 64 KB that never meet their prediction held 320 MB
    pending_bytes: int = 2 << 20
    rollup_window_s: float = 10.0
    # Series one entity (a run, a model, a data stage) may track; new names past it are refused,
    # counted and logged. Runs log tens to a few hundred metrics, per-layer norms of a big model
    # about 1,000: twice that fits them. A run's series state is about 2.3 KB, a model feature's
    # 4.6 KB at full drift windows (measured; 8.2 KB as lists of floats), so an entity's table
    # value, rewritten on every chunk, stays under options.MAX_RECORD_BYTES; unbounded, one 0.9 MB
    # block of 50,000 names made 28 MB.
    max_series: int = 2_048
    max_model_series: int = 1_024  # a model's: its features' windows are the largest states
    # A series key (entity and name: run/<run>/<split>/<metric>) past this many characters is
    # refused too: its key is kept in the entity's value, and at the caps 2,048 names of 100 KB
    # made a value no changelog record could hold. Per-layer names of large models are ~100.
    # An entity (run/<run>, model/<model>, data/<dataset>/<stage>) is refused whole past half of it.
    max_key_chars: int = 1_024
    # A data stage's series keep their reference batch, categories by name: 2,048 features of 1,000
    # categories could not fit any record. A batch that would take its stage past this is left out.
    max_data_state_bytes: int = 12_000_000
    policy: IncidentPolicy = field(default_factory=IncidentPolicy)

    def series_cap(self, key: str) -> int:
        """How many series the entity of series (or entity) ``key`` may track."""
        return self.max_model_series if key.startswith("model/") else self.max_series


_RECENT_BATCHES = 32
_NON_STR = orjson.OPT_NON_STR_KEYS


class Saved(Protocol):
    """A rule object of :mod:`aitrace.detect` that keeps its state in a JSON-safe dict."""

    def to_state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self: ...


R = TypeVar("R", bound=Saved)


class LiveRules:
    """Rule objects kept alive between chunks, each beside the state dict it was last saved as.

    Rebuilding a series' rules from their state (``from_state``: the anomaly windows, the
    calibrator's histogram, a drift window's 200 floats) cost as much as scoring ten points.
    An object is reused only while the series' state in the table *is* the dict it was saved
    to (identity, not equality). Any other state, from the changelog after a restart or a
    rebalance, or the older one left in the table when a failed batch's writes were dropped,
    is restored from the dict as before. An object is taken out while it is updated and put
    back only once its new state is saved: one an exception left half-updated is never reused.
    At most ``size`` objects are kept, the least recently used go first (a latency series'
    objects take about 12 KB, restored; 2,048 of them some 25 MB beside the table).
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._live: dict[str, tuple[dict[str, Any], Any]] = {}

    def restore(self, key: str, saved: dict[str, Any], kind: type[R]) -> R:
        hit = self._live.pop(key, None)
        if hit is not None and hit[0] is saved and type(hit[1]) is kind:
            return hit[1]
        return kind.from_state(saved)

    def save(self, key: str, rules: Saved) -> dict[str, Any]:
        saved = rules.to_state()
        if self.size > 0:
            self._live[key] = (saved, rules)  # (re)inserted last: the dict's order is the recency
            if len(self._live) > self.size:
                del self._live[next(iter(self._live))]
        return saved

    def __len__(self) -> int:
        return len(self._live)


@dataclass
class ChunkResult:
    """What one chunk produced: alert versions to publish and documents to index."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    label_events: list[tuple[dict[str, Any], list[Any] | None]] = field(default_factory=list)  # (label, prediction)
    actions: list[Action] = field(default_factory=list)  # rollup documents
    skipped: int = 0  # series for which this chunk was a redelivery
    applied: int = 0  # series whose state this chunk changed
    refused: list[str] = field(default_factory=list)  # new series past the entity's max_series
    too_long: list[str] = field(default_factory=list)  # new series whose key passes max_key_chars
    evicted: int = 0  # labels / predictions put out of a full waiting room (pending_bytes)
    # (series, what was dropped, its value): series states (or their rules) restored in a shape never written
    corrupt: list[tuple[str, str, Any]] = field(default_factory=list)


# Parts of a series state only ever replaced whole (rules objects' states by _save, the batch ids by
# _close_state), never changed in place: a copy of the state may share them with the committed one.
_REPLACED = frozenset({"rules", "checks", "bids"})
# Parts changed in place only at their top level, whose values are replaced: a copy of the dict is a copy
# (the sources' offsets, by _close_state; the open incident, by IncidentTracker.observe; the waiting rooms
# of predictions and labels, entries put in and taken out by windows.join_labels and _trim, never changed:
# copied through JSON, two full rooms (2 MB) took a 10-feature model's batch from 1.8 to 15 ms, measured).
_FLAT = frozenset({"applied", "incident", "pred", "wait"})


def _own(state: State) -> State:
    """A copy of ``state`` that may be changed in place without changing ``state``: every part copied as deep
    as it is changed in place, the parts only ever replaced shared (the largest: a feature's drift windows,
    a metric's anomaly windows). A feature's state with an open incident: 0.6 us; through JSON 4.4 us."""
    owned = dict(state)
    deep = {}
    for k, v in state.items():
        if k in _FLAT:
            owned[k] = None if v is None else dict(v)
        elif k not in _REPLACED:
            deep[k] = v
    if deep:  # everything else (data references, losses, rollups...): through JSON
        owned.update(orjson.loads(orjson.dumps(deep, option=_NON_STR)))
    return owned


def unsound(state: Any, source: str) -> str | None:
    """What makes a series ``state`` read from the table unfit for a chunk from ``source`` (None: nothing).

    The table is restored from its changelog, a topic any client can write: a state of another shape made
    every later chunk of its entity raise. Checked as a series is opened for a chunk (~0.5 us): its parts
    read there (the source's applied offset, the recent batch ids, the open incident, the waiting rooms); the
    rules objects' states are checked as they are restored (:meth:`SeriesStateBase._restore`).
    """
    if type(state) is not dict:
        return "state"
    applied = state.get("applied")
    if type(applied) is not dict or type(applied.get(source, -1)) is not int:
        return "applied"
    if type(state.get("bids", [])) is not list:
        return "bids"
    incident = state.get("incident")
    if incident is not None and not sound_incident(incident):
        return "incident"
    for room in ("pred", "wait"):
        if type(state.get(room, {})) is not dict:
            return room
    if "win" in state and not rollup.sound_window(state["win"]):
        return "win"
    return None


def redelivered(state: State, source: str, offset: int, batch_id: str | None) -> bool:
    """Whether a chunk (its source position and batch id) was applied to the series ``state`` already."""
    return offset <= state["applied"].get(source, -1) or bool(batch_id and batch_id in state.get("bids", ()))


def mark_applied(state: State, source: str, offset: int, batch_id: str | None) -> None:
    """Record in the series ``state`` that the chunk was applied (what :func:`redelivered` reads)."""
    state["applied"][source] = offset
    if batch_id:
        state["bids"] = [*state.get("bids", [])[-(_RECENT_BATCHES - 1) :], batch_id]


class SeriesStateBase:
    """Per-series state held in ``table`` (a Faust table or any mutable mapping), applied once per chunk."""

    def __init__(
        self,
        table: MutableMapping[str, Any],
        config: DetectionConfig | None = None,
        live: LiveRules | None = None,
        *,
        copy_on_write: bool = False,
    ) -> None:
        """``copy_on_write``: ``table`` is a shallow copy of the committed one (the worker's
        :meth:`~aitrace.processors.pipeline.Staged.private`), whose series states must not change."""
        self.table = table
        self.config = config or DetectionConfig()
        self.live = live if live is not None else LiveRules(0)
        self.copy_on_write = copy_on_write
        self.incidents = IncidentTracker(self.config.policy)
        self._batch_id: str | None = None
        self._result: ChunkResult | None = None  # of the chunk being applied: where a dropped rules state is noted
        # None: each chunk saves its rules objects' states. A dict: the chunks of a group (:meth:`defer_saving`)
        # keep them here, (series, name) -> (state, object), each saved once by :meth:`save_deferred`
        self._deferred: dict[tuple[str, str], tuple[State, Saved]] | None = None
        # A group's chunks after the one being applied (SeriesDetectors.apply_group), and what a series'
        # update at an earlier chunk of the group computed for the later ones: series -> [(chunk, outcome)]
        self._later: list[Chunk] = []
        self._ahead: dict[str, list[tuple[Chunk, Any]]] = {}

    def defer_saving(self) -> None:
        """Apply the chunks that follow as one group: each series' rules objects are saved to its state once, by
        :meth:`save_deferred`, not once per chunk.

        Saving (``to_state``) a model's rules cost ~40 us a chunk and is only read when the table is written
        (once per batch) or the series is next restored. Between the group's chunks the table holds states
        whose rules are stale, so a group that raises must be dropped whole, the table put back as it was.
        """
        self._deferred = {}

    def save_deferred(self) -> None:
        """Save every rules object the group kept, in the order of their last use (the LRU order of
        :class:`LiveRules`, as chunk by chunk), into the state the series last wrote."""
        for (key, name), (state, rules) in (self._deferred or {}).items():
            state[name] = self.live.save(key, rules)
        self._deferred = {}

    def _with_state(
        self,
        key: str,
        source: str,
        offset: int,
        result: ChunkResult,
        work: Callable[[State], None],
    ) -> None:
        state = self._open_state(key, source, offset, result)
        if state is not None:
            work(state)
            self._close_state(key, state, source, offset, result)

    def _admit(self, key: str, result: ChunkResult, opening: int = 0) -> bool:
        """Whether series ``key`` may have state: a tracked one always, a new one while the entity
        tracks fewer than ``max_series`` (``opening``: new ones of this chunk not written yet).
        A refused one is noted in ``result.refused``, or ``result.too_long`` past ``max_key_chars``."""
        if key in self.table or len(self.table) + opening < self.config.series_cap(key):
            if len(key) <= self.config.max_key_chars or key in self.table:
                return True
            result.too_long.append(key)
            return False
        result.refused.append(key)
        return False

    def _open_state(self, key: str, source: str, offset: int, result: ChunkResult) -> State | None:
        """A copy of the series' state to apply this chunk to; None (counted skipped) for a redelivery."""
        state = self.table.get(key)
        if state and (part := unsound(state, source)) is not None:
            shown = state if part == "state" else state.get(part)
            result.corrupt.append((key, "the state" if part == "state" else f"the state (its {part})", shown))
            state = None  # dropped: the series starts afresh
        if not state:
            return {"applied": {}, "incident": None}
        if redelivered(state, source, offset, self._batch_id):
            result.skipped += 1
            return None
        return _own(state) if self.copy_on_write else dict(state)

    def _close_state(self, key: str, state: State, source: str, offset: int, result: ChunkResult) -> None:
        """Record the chunk as applied and write the state back."""
        result.applied += 1
        mark_applied(state, source, offset, self._batch_id)
        self.table[key] = state  # one changelog record per series and chunk

    def _restore(self, key: str, state: State, name: str, kind: type[R]) -> R | None:
        """The series' rules object ``state[name]`` (None: the series has none yet)."""
        kept = self._deferred.pop((key, name), None) if self._deferred is not None else None
        if kept is not None:  # the group's: newer than the state's (a series' key fixes its rules' kind)
            return kept[1]  # type: ignore[return-value]
        saved = state.get(name)
        if saved is None:
            return None
        try:
            return self.live.restore(key, saved, kind)
        except Exception:  # restored from the changelog in a shape never saved: the series' rules start afresh
            if self._result is None:
                raise
            self._result.corrupt.append((key, f"the {name}", saved))
            state[name] = None
            return None

    def _save(self, key: str, state: State, name: str, rules: Saved) -> None:
        if self._deferred is not None:
            self._deferred[(key, name)] = (state, rules)  # (re)inserted last: the order of last use
            state.setdefault(name, None)  # its place among the state's keys, as chunk by chunk (the same JSON)
        else:
            state[name] = self.live.save(key, rules)

    def _publish(self, result: ChunkResult, state: State, ctx: SeriesContext, outcome: tuple[Any, ...]) -> None:
        finding, clean, last_time = outcome
        result.alerts.extend(self.incidents.observe(state, ctx, finding, clean=clean, last_time_us=last_time))
