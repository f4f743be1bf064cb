"""Detectors wired to series: what each kind of event is checked for, with state per series.

The entity-keyed side of the series repartition (see :mod:`aitrace.processors.app`; the
trace-keyed side, which cuts a batch into chunks, is :mod:`aitrace.processors.chunks`):
:class:`SeriesDetectors` folds a chunk into the state of each series
  of the entity (one table key per series: ``run/<run>/<split>/<metric>``,
  ``model/<m>/latency``, ``model/<m>/feature/<f>``, ``data/<ds>/<stage>/<feature>``...) and
  returns alert versions (through :class:`~aitrace.processors.incidents.IncidentTracker`) and
  documents to index (ground-truth labels joined to their prediction).

Each kind of entity has its module: training runs :mod:`aitrace.processors.detection_runs`,
models in service :mod:`aitrace.processors.detection_models`, data pipelines
:mod:`aitrace.processors.detection_data`; the series state they share, its idempotence on
redelivery and the thresholds (:class:`~aitrace.processors.detection_state.DetectionConfig`)
are :mod:`aitrace.processors.detection_state`.

Every rule comes from :mod:`aitrace.detect` (its window checks from :mod:`aitrace.detect.windows`).
"""

from __future__ import annotations

from collections.abc import Callable

from aitrace.processors.detection_data import DataSeriesDetectors
from aitrace.processors.detection_models import ModelSeriesDetectors
from aitrace.processors.detection_runs import RunSeriesDetectors
from aitrace.processors.detection_state import Chunk, ChunkResult


class SeriesDetectors(RunSeriesDetectors, ModelSeriesDetectors, DataSeriesDetectors):
    """Apply chunks to per-series state held in ``table`` (a Faust table or any mutable mapping)."""

    def apply(self, chunk: Chunk, *, source: str, offset: int, batch_id: str | None = None) -> ChunkResult:
        """Fold one chunk (decoded from the repartition topic) into its series.

        Idempotent: skipped per series when its source offset is not newer than the last
        applied one, or when its batch id is among the series' recent ones.
        """
        result = ChunkResult()
        self._batch_id = batch_id
        self._result = result
        handler: Callable[[Chunk, ChunkResult, str, int], None] = {
            "run": self._run,
            "model": self._model,
            "data": self._data,
        }[chunk["kind"]]
        handler(chunk, result, source, offset)
        return result

    def apply_group(self, chunks: list[Chunk]) -> list[ChunkResult]:
        """:meth:`apply` on each of a group's chunks (one entity's) in turn: the same results and state,
        each series' rules saved once (:meth:`defer_saving`), and a model's latency and confidence updated
        for the whole group at its first chunk (``ServiceSeries.update_chunks``: ~65 us a 200-point chunk,
        where a call per chunk cost ~135). A group that raises must be dropped whole (see defer_saving).
        """
        self.defer_saving()
        results = []
        for i, chunk in enumerate(chunks):
            self._later = chunks[i + 1 :]
            results.append(self.apply(chunk, source=chunk["src"], offset=chunk["off"], batch_id=chunk.get("bid")))
        self._later = []
        if self._ahead:  # a chunk the look-ahead counted on was not applied to its series: never expected
            raise RuntimeError(f"series {next(iter(self._ahead))!r}: updates computed ahead for chunks not applied")
        self.save_deferred()
        return results
