"""Idle expiry of the series table's entities (runs, models, data stages): :class:`EntityExpiry`.

Without it a deployment that starts new runs forever grew the table, and its changelog, by
every run's series for good. Each entity's value keeps, beside its series, a *touch mark*
under :data:`MARK`:

- ``t``: the worker's wall-clock time (epoch s) of the last chunk that changed the entity. Never
  an event's time: a client sets those, and a far-future one would have kept an entity for ever;
- ``p``: the changelog partitions its writes went to, the last one the partition its chunks
  come on (a client may write an entity's chunks to any partition, and a tombstone must reach
  every partition that holds a value of the key, or a restore brings it back);
- ``end``: whether its run has ended (a lifecycle FINISHED, FAILED or KILLED seen; STARTED or
  RUNNING after it opens it again).

Kept in the table, the mark survives restarts: an index of times held in memory only would
start again at every restart, and a worker restarted more often than the idle time would never
expire anything. An entity idle past its class's time (:class:`ExpiryPolicy`) is deleted, a
tombstone to each of its partitions. A run, a model or a data stage that comes back afterwards
starts afresh: new baselines, a new drift reference.

The sweep runs in the series agent, on a :data:`~aitrace.processors.chunk_wire.SWEEP` record the
records agent sends to each series partition at most every ``expiry_interval_s`` (on ticks), so
the deletes are staged and written like every other table write. Per partition, entities of one
idle time sit in the order of their last touch: a sweep looks at the due ones only. The index is
built from the table the first time a partition is swept (after a start or a rebalance), as
:meth:`~aitrace.processors.pipeline.Pipeline.tick` does for traces.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

MARK = "@touch"  # no series key is like it: theirs start with the entity's kind (run/, model/, data/)
ENDED = frozenset({"FINISHED", "FAILED", "KILLED"})
_OPEN = frozenset({"STARTED", "RUNNING"})  # a run resumed after its end; UNKNOWN changes nothing

Home = Callable[[str], int | None]  # the changelog partition a key was restored from (None: unknown)
Expired = list[tuple[str, list[int]]]  # entities deleted, each with the other partitions its writes went to


@dataclass(frozen=True)
class ExpiryPolicy:
    """Seconds without a change after which an entity's state is dropped (0: never); see ``WorkerOptions``."""

    run_idle_s: float = 7 * 86400.0
    ended_run_idle_s: float = 86400.0
    model_idle_s: float = 14 * 86400.0
    data_idle_s: float = 14 * 86400.0

    def idle_s(self, entity: str, ended: bool) -> float:
        """The idle time of ``entity`` (by its key's kind; a key of no known kind counts as a data stage)."""
        if entity.startswith("run/"):
            return self.ended_run_idle_s if ended else self.run_idle_s
        return self.model_idle_s if entity.startswith("model/") else self.data_idle_s

    @property
    def enabled(self) -> bool:
        return max(self.run_idle_s, self.ended_run_idle_s, self.model_idle_s, self.data_idle_s) > 0


@dataclass
class _Index:
    """One partition's entities: per idle time, each entity and its last touch in the order of touch."""

    queues: dict[float, OrderedDict[str, float]]
    where: dict[str, float]  # entity -> its idle time (its queue)


class EntityExpiry:
    """The touch marks, the per-partition index and the sweep (see the module doc)."""

    def __init__(self, policy: ExpiryPolicy, partitions: int) -> None:
        self.policy = policy
        self.partitions = partitions
        self._index: dict[int, _Index] = {}  # absent: rebuilt from the table at the partition's next sweep

    def touch(self, entity: str, mark: Any, now: float, partition: int, status: Any = None) -> dict[str, Any]:
        """The new mark of ``entity`` changed now by a chunk on ``partition`` (``status``: its run's lifecycle)."""
        old = self.valid(mark)
        ended = bool(old and old["end"])
        if isinstance(status, str):
            ended = True if status in ENDED else False if status in _OPEN else ended
        written = [p for p in (old["p"] if old else []) if p != partition] + [partition]
        if old and old["p"][-1] != partition:
            self._remove(entity, old["p"][-1])
        new = {"t": now, "p": written, "end": ended}
        index = self._index.get(partition)
        if index is not None:
            self._place(index, entity, now, self.policy.idle_s(entity, ended))
        return new

    def valid(self, mark: Any) -> dict[str, Any] | None:
        """``mark`` if it is one this class wrote (the changelog is a topic any client can write to), else None."""
        if not isinstance(mark, dict) or not isinstance(mark.get("end"), bool):
            return None
        t, parts = mark.get("t"), mark.get("p")
        if not isinstance(t, int | float) or not math.isfinite(t) or not isinstance(parts, list) or not parts:
            return None
        ok = all(type(p) is int and 0 <= p < self.partitions for p in parts)
        return mark if ok else None

    def sweep(self, partition: int, table: MutableMapping[str, Any], now: float, home: Home) -> Expired:
        """Delete the entities of ``partition`` idle past their time from ``table``.

        Returns each one deleted with the other partitions its writes went to (the caller sends
        them a tombstone too; ``table``'s delete goes to ``partition``). ``home``: where a key
        without a mark (written before marks were) was restored from.
        """
        index = self._index.get(partition)
        if index is None:
            index = self._index[partition] = self._rebuild(partition, table, now, home)
        gone: Expired = []
        for idle, queue in list(index.queues.items()):  # (a re-placed entity may open a queue)
            while queue:
                entity, touched = next(iter(queue.items()))
                if touched + idle > now:
                    break
                del queue[entity], index.where[entity]
                value = table.get(entity)
                mark = self.valid(value.get(MARK)) if isinstance(value, dict) else None
                if mark is None or mark["p"][-1] != partition:
                    continue  # gone already, or moved to another partition's index
                fresh = self.policy.idle_s(entity, mark["end"])
                if fresh <= 0 or mark["t"] + fresh > now:  # the table has the last word: never expired early
                    self._place(index, entity, mark["t"], fresh)
                    continue
                del table[entity]
                gone.append((entity, mark["p"][:-1]))
        return gone

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved away (or a batch that swept them failed): rebuilt from the table at their next sweep."""
        for p in partitions:
            self._index.pop(p, None)

    def _rebuild(self, partition: int, table: MutableMapping[str, Any], now: float, home: Home) -> _Index:
        """The index of ``partition`` from ``table``; an entity without a mark gets one, touched now."""
        found: list[tuple[float, str, float]] = []
        for entity in list(table):
            value = table.get(entity)
            # the changelog's keys are JSON: a client's record keyed b"5" restores as the key 5, no entity
            if not isinstance(entity, str) or not isinstance(value, dict):
                continue
            mark = self.valid(value.get(MARK))
            if mark is None:
                if home(entity) != partition:
                    continue
                mark = {"t": now, "p": [partition], "end": False}
                table[entity] = {**value, MARK: mark}  # written once, so the next restart keeps its clock
            elif mark["p"][-1] != partition:
                continue
            found.append((mark["t"], entity, self.policy.idle_s(entity, mark["end"])))
        index = _Index({}, {})
        for touched, entity, idle in sorted(found):
            self._place(index, entity, touched, idle)
        return index

    def _place(self, index: _Index, entity: str, touched: float, idle: float) -> None:
        """``entity`` last in its queue, touched at ``touched`` (out of every queue when it never expires)."""
        old = index.where.pop(entity, None)
        if old is not None:
            del index.queues[old][entity]
        if idle > 0:
            index.queues.setdefault(idle, OrderedDict())[entity] = touched
            index.where[entity] = idle

    def _remove(self, entity: str, partition: int) -> None:
        index = self._index.get(partition)
        if index is not None:
            self._place(index, entity, 0.0, 0.0)
