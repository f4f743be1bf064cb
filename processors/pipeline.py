"""The worker's work, free of Faust: what happens to one input record, one series chunk, one tick.

:mod:`aitrace.processors.app` wires these steps to Faust topics, tables and timers; tests and
the benchmark call them directly. Tables are any ``MutableMapping`` (a Faust table in the
worker, a dict in tests).

Input record (trace-keyed):

1. :meth:`Pipeline.decode` -> the valid part of the batch, plus a dead letter for what is
   invalid (the original bytes, whatever part failed);
2. :meth:`Pipeline.event_actions` -> documents of the events (raw metric points only for
   slow series; fast ones are rolled up on the series side);
3. :meth:`Pipeline.correlate` -> trace documents of traces that closed or changed after closing;
4. :meth:`Pipeline.chunks` -> ``(entity key, bytes)`` records for the series repartition topic.

Event times further from ingest time than :class:`TimeSkew` allows keep their ``@timestamp``
but index into the ingest day (a trace: the day of its first record), flagged in ``labels``;
the ingest time is the Kafka record's timestamp where it has one in that window
(:meth:`Pipeline.ingest_time`), so a redelivery indexes where the first delivery did.

Series chunk (entity-keyed): :meth:`Pipeline.series` -> alert records, alert documents,
ground-truth label documents (joined to their prediction), rollup documents.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import zlib
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from aitrace.processors import correlate
from aitrace.processors.block_columns import BlockColumns
from aitrace.processors.chunk_wire import CHUNK_MAX_BYTES, pack_chunk, unpack_chunk
from aitrace.processors.chunks import (
    column_chunks,
    cut_chunk,
    event_column_chunks,
    extract_chunks,
    fast_series,
    restore_axes,
    share_axes,
)
from aitrace.processors.decode import MIN_TIME_US, Decoded, RecordDecoder
from aitrace.processors.detection import SeriesDetectors
from aitrace.processors.detection_state import ChunkResult, DetectionConfig, LiveRules
from aitrace.processors.dlq import DeadLetter, DlqCounter, rejected_labels
from aitrace.processors.event_columns import EventColumns
from aitrace.processors.expiry import MARK, EntityExpiry, Expired, ExpiryPolicy, Home
from aitrace.processors.options import TimeSkew, WorkerOptions
from aitrace.schemas.codec import DecodeError
from aitrace.schemas.metric_block import MetricBlock
from aitrace.sinks.documents import (
    Action,
    DocumentError,
    IngestWindow,
    alert_action,
    event_actions,
    metric_block_actions,
    trace_action,
)

_GROUND_TRUTH = "aitrace.GroundTruth"
log = logging.getLogger("aitrace.processors")
_LONGEST_BATCH_ID = 64  # kept as it is (the producer's: 12 hex digits, "-", a hex counter); longer: its digest
_EXPIRED_LOGGED = 20  # entities named in the log per sweep (a client's million runs expire in one)


def _json_bytes(value: Any) -> int:
    """About the bytes of ``value`` as its changelog record (the tables' JSON)."""
    return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY))


_MAX_PIECES = 256  # an entity's chunk of a 16 MB record: 5-10 pieces as JSON escapes and names inflate it
_CUT_BUDGET = 8  # bytes packed while cutting, in chunks of the whole: about log2(pieces) levels of it


def _shown(name: str, most: int = 200) -> str:
    """A name as a log line shows it: a client's megabyte-long name is cut, its length said."""
    return name if len(name) <= most else f"{name[:most]}... ({len(name)} characters)"


def retry_key(batch_id: str, value: bytes) -> str:
    """What marks a producer's retry: the batch id and a checksum of the record's bytes.

    A retry writes the same bytes again; a batch id alone is trusted too far, as any client
    (or one with a broken id generator) can reuse one for different events, which were then
    skipped as duplicates. CRC-32 runs at about 5 GB/s, so it costs the worker little.
    A batch id longer than 64 characters (the producer's are about 20) is kept as a digest: the key is kept in
    every state the record changes (the last 32 of them per series and trace), and a client's
    1 MB id made each of those 32 MB.
    """
    if len(batch_id) > _LONGEST_BATCH_ID:
        batch_id = "#" + hashlib.blake2b(batch_id.encode(errors="surrogatepass"), digest_size=16).hexdigest()
    return f"{batch_id}/{zlib.crc32(value):08x}{len(value):x}"


# The event times a series chunk may hold: from the decoder's floor (no record it lets through is older) to the
# first day of the year 9999 (documents end with 9999-12-31; a year left for the windows added to a time).
CHUNK_TIMES_US = (MIN_TIME_US, 253_370_764_800_000_000)


def _check_times(chunk: dict[str, Any]) -> None:
    """Raise ValueError for a series chunk (as unpacked, its axes shared) holding an event time outside
    :data:`CHUNK_TIMES_US`.

    The worker's chunks come from decoded records, whose times are in range; any client can write the series
    topic. A chunk timed 2**62 us opened an incident whose every later version raised building its document
    (the alert's day), so the series' legitimate chunks after it failed as well. Checked before any state;
    ~3 us a model chunk of 60 requests and 45 labels.
    """
    kind = chunk["kind"]
    if kind == "model":
        parts = [chunk["times"], [r[2] for r in chunk["requests"]], [e["time"] for e in chunk["labels"]]]
    elif kind == "run":
        axes = chunk.get("axes")
        parts = [s["times"] for s in chunk["series"].values() if axes is None or "steps" in s]
        if axes is not None:
            parts.append(axes["times"])
    elif kind == "data":
        parts = [[s[0] for s in chunk["stats"]]]
    else:
        return  # not a kind the detectors take: they refuse it
    lo, hi = CHUNK_TIMES_US
    for times in parts:
        if isinstance(times, np.ndarray):
            if not times.size:
                continue
            if times.dtype.kind not in "iu":
                raise ValueError(f"series chunk of {_shown(str(chunk.get('entity')))}: event times of {times.dtype}")
            least, greatest = times.min(), times.max()
        elif times:
            least, greatest = min(times), max(times)  # a list: a time that is no number raises TypeError
        else:
            continue
        if not (lo <= least and greatest <= hi) or isinstance(least, bool) or isinstance(greatest, bool):
            raise ValueError(f"series chunk of {_shown(str(chunk.get('entity')))}: event times {least!r:.30}.."
                             f"{greatest!r:.30} us, out of {lo}..{hi}")  # fmt: skip


def _rows_by_trace(columns: EventColumns) -> dict[str, np.ndarray]:
    """The rows of each trace id, traces in the order the batch first has them."""
    return columns.split("trace_id", columns.all)


class Staged(MutableMapping[str, Any]):
    """A write-behind view of a table: writes stay here until :meth:`commit`.

    The worker commits after the record's documents are acknowledged, so a changelog
    record never says "applied" for output that was not delivered: if the worker dies in
    between, the redelivered record is applied again instead of being skipped.
    """

    _GONE = object()

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self.pending: dict[str, Any] = {}
        self.partition = 0  # partition of the record being processed: where its keys' changelog goes
        self._partitions: dict[str, int] = {}

    def __getitem__(self, key: str) -> Any:
        value = self.pending.get(key, None) if key in self.pending else self.table[key]
        if value is self._GONE:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending[key] = value
        self._partitions[key] = self.partition

    def __delitem__(self, key: str) -> None:
        self[key]  # raises KeyError for a missing key, as a mapping must
        self.pending[key] = self._GONE
        self._partitions[key] = self.partition

    def __iter__(self) -> Any:
        keys = [k for k in self.table if self.pending.get(k) is not self._GONE]
        return iter(keys + [k for k, v in self.pending.items() if v is not self._GONE and k not in self.table])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.pending:
            value = self.pending[key]
            return default if value is self._GONE else value
        return self.table.get(key, default)

    def private(self, key: str) -> Any:
        """The value under ``key`` to change: the staged one, else a shallow copy of the table's.

        A table value maps names to parts (a series entity: each series to its state), and
        the caller copies each part before it changes it (copy-on-write,
        :meth:`~aitrace.processors.detection_state.SeriesStateBase._open_state`): changing one
        of the table's in place would change the committed state before :meth:`commit`, so a
        batch dropped after a failure would leave its changes behind (its redelivered chunks
        were then skipped as applied). A deep copy of the whole value cost a model of 1,000
        features 22 ms a batch, most of it for series the batch did not change in place.
        One copy per key and batch: later reads get the staged copy.
        """
        if key in self.pending:
            return self.get(key)
        value = self.table.get(key)
        return None if value is None else dict(value)

    def commit(self, write: Any = None) -> None:
        """Write the staged changes through.

        ``write(key, value_or_None, partition)`` does the writing (the Faust app writes the
        store and the changelog partition of the record that made the change, since a batch
        of records spans partitions); by default the table is assigned to (None: deleted).
        """
        for key, value in self.pending.items():
            if write is not None:
                write(key, None if value is self._GONE else value, self._partitions[key])
            elif value is self._GONE:
                self.table.pop(key, None)
            else:
                self.table[key] = value
        self.pending.clear()
        self._partitions.clear()


@dataclass
class RecordOutput:
    """What one input record produced."""

    decoded: Decoded | None
    dead_letters: list[DeadLetter]
    actions: list[Action]
    chunks: list[tuple[str, bytes]]
    events: int = 0


class Pipeline:
    """Decode, validate, correlate and detect; the Faust app and the benchmark share it."""

    def __init__(
        self,
        options: WorkerOptions,
        *,
        decoder: RecordDecoder | None = None,
        skew: TimeSkew | None = None,
        live_rules: int = 2048,
    ):
        """``live_rules``: series whose rule objects stay alive between chunks (:class:`LiveRules`; 0: none)."""
        self.options = options
        self.skew = skew or TimeSkew.from_env()
        self.decoder = decoder or RecordDecoder()
        self.dlq = DlqCounter()
        self.correlation = correlate.CorrelationConfig(idle_timeout_s=options.idle_timeout_s, grace_s=options.grace_s)
        self.detection = DetectionConfig(
            anomaly_threshold=options.anomaly_threshold,
            drift_window=options.drift_window,
            rollup_window_s=options.rollup_window_s,
        )
        self.live_rules = LiveRules(live_rules)
        idle = (options.run_idle_s, options.ended_run_idle_s, options.model_idle_s, options.data_idle_s)
        self.expiry = EntityExpiry(ExpiryPolicy(*idle), options.partitions)
        # partition -> trace ids held in the trace table for it (rebuilt from the table when unknown)
        self._traces_by_partition: dict[int, set[str]] = {}
        self._warned: dict[tuple[str, str], float] = {}  # (entity, what) -> when last logged (monotonic s)
        self.counters = {"records": 0, "events": 0, "chunks": 0, "traces": 0, "alerts": 0, "duplicates": 0, "series": 0}
        self.counters["series_refused"] = 0  # new series of entities that tracked max_series already
        self.counters["pending_evicted"] = 0  # labels / predictions put out of a full waiting room
        self.counters["expired"] = 0  # entities idle past their time, their state dropped (expiry.py)
        self.counters["corrupt_state"] = 0  # table values restored in a shape never written, dropped

    # ------------------------------------------------------------ input records

    def process_record(
        self,
        value: bytes | None,
        *,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        traces: MutableMapping[str, Any],
        now: float,
        timestamp: float | None = None,
    ) -> RecordOutput:
        """All trace-keyed work for one record (see the module doc).

        ``now``: the worker's wall clock (epoch s); ``timestamp``: the Kafka record's (epoch s, None: it has none),
        its ingest time where :meth:`ingest_time` takes it.
        """
        self.counters["records"] += 1
        ingested = self.ingest_time(timestamp, now)
        if value is None:  # a tombstone (or a keyed null): nothing to decode, keep where it was
            reason = "tombstone" if key is None else "empty"
            self.dlq.add(reason)
            return RecordOutput(None, [DeadLetter(None, key, topic, partition, offset, reason, "null value")], [], [])
        try:
            decoded = self.decoder.decode(value)
        except DecodeError as exc:
            letter = DeadLetter(value, key, topic, partition, offset, exc.reason, exc.detail)
            self.dlq.add(exc.reason)
            return RecordOutput(None, [letter], [], [])
        letters: list[DeadLetter] = []
        if decoded.rejected:
            first = decoded.rejected[0]
            detail = f"{len(decoded.rejected)} invalid part(s) of batch {decoded.batch_id!r}; first: {first.detail}"
            letters.append(
                DeadLetter(
                    value, key, topic, partition, offset, first.reason, detail, rejected_labels(decoded.rejected)
                )
            )
            for r in decoded.rejected:
                self.dlq.add(r.reason)
        fast = [fast_series(b, self.options.max_raw_rate, self.options.raw_metrics) for b in decoded.metric_blocks]
        # --no-index: documents are not even built (their building is indexing work)
        actions, unindexable = self.event_actions(decoded, fast, now=ingested) if self.options.index else ([], [])
        if unindexable:
            letters.append(DeadLetter(value, key, topic, partition, offset, "unindexable", unindexable[0]))
            self.dlq.add("unindexable", len(unindexable))
        retry = retry_key(decoded.batch_id, value)
        actions.extend(
            self.correlate(
                decoded,
                traces,
                topic=topic,
                partition=partition,
                offset=offset,
                now=now,
                retry=retry,
                ingested=ingested,
            )
        )
        clashes: list[str] = []
        too_large: list[str] = []
        chunks = self.chunks(
            decoded, fast, topic=topic, partition=partition, offset=offset, retry=retry, clashes=clashes,
            too_large=too_large,
        )  # fmt: skip
        if clashes:
            detail = f"{len(clashes)} series of batch {decoded.batch_id!r} not checked; first: {clashes[0]}"
            letters.append(DeadLetter(value, key, topic, partition, offset, "series-clash", detail))
            self.dlq.add("series-clash", len(clashes))
        if too_large:
            detail = f"{len(too_large)} series chunk(s) of batch {decoded.batch_id!r} left out; first: {too_large[0]}"
            letters.append(DeadLetter(value, key, topic, partition, offset, "series-too-large", detail))
            self.dlq.add("series-too-large", len(too_large))
        n = decoded.event_count
        self.counters["events"] += n
        return RecordOutput(decoded, letters, actions, chunks, n)

    def event_actions(
        self, decoded: Decoded, fast: list[set[str]], *, now: float | None = None
    ) -> tuple[list[Action], list[str]]:
        """Documents of the batch's events and of its slow metric series; and what could not be indexed.

        ``now`` (ingest time, epoch seconds) routes events timed far from it to its day's index.
        """
        window = self.ingest_window(now) if now is not None else None
        actions: list[Action] = []
        problems: list[str] = []
        for event in decoded.events:
            if event["payload"][0] == _GROUND_TRUTH:
                continue  # indexed on the series side, joined to its prediction
            try:
                actions.extend(event_actions(event, window=window))
            except DocumentError as exc:
                problems.append(str(exc))
        for block, fast_names in zip(decoded.metric_blocks, fast, strict=True):
            slow = set(block.series) - fast_names
            if slow:
                actions.extend(metric_block_actions(block, series=slow, window=window))
        return actions, problems

    def ingest_time(self, timestamp: float | None, now: float) -> float:
        """A record's ingest time (epoch s): its Kafka timestamp, the same at every delivery, where it lies within
        the skew window around ``now`` (:class:`TimeSkew`); else ``now``, the wall clock.

        An event timed outside the window is indexed under the ingest day: by the wall clock, a record delivered
        again after midnight UTC (the worker died between the bulk request and the offset commit) put the same
        ``_id`` into a second daily index. The producer sets the timestamp (CreateTime): one further out would let
        a client pick any day's index, which the window is there to stop.
        """
        if timestamp is None or not math.isfinite(timestamp):
            return now
        return timestamp if now - self.skew.past_s <= timestamp <= now + self.skew.future_s else now

    def ingest_window(self, now: float) -> IngestWindow:
        """Event times indexed by their own day, around ingest time ``now`` (epoch seconds)."""
        return IngestWindow(int(now * 1e6), int(self.skew.past_s * 1e6), int(self.skew.future_s * 1e6))

    def correlate(
        self,
        decoded: Decoded,
        traces: MutableMapping[str, Any],
        *,
        topic: str,
        partition: int,
        offset: int,
        now: float,
        retry: str,
        ingested: float | None = None,
    ) -> list[Action]:
        """Fold the batch into its traces' state; trace documents to (re)index.

        ``retry``: the record's :func:`retry_key` (a producer's retry repeats it); ``ingested``: its ingest
        time (:meth:`ingest_time`; None: ``now``), kept by a trace it opens (the day it is indexed under when
        its times lie outside the skew window).
        """
        by_trace: dict[str, tuple[list[dict[str, Any]], list[MetricBlock], list[BlockColumns]]] = {}
        kept = decoded.event_columns
        rows = _rows_by_trace(kept) if kept is not None else {}
        for trace_id in rows:
            by_trace[trace_id] = ([], [], [])
        last_id: str | None = None  # a batch's events mostly come in runs of one trace
        last: list[dict[str, Any]] = []
        # column blocks and event columns: not one dict per event
        for event in [] if decoded.columns or kept is not None else decoded.events:
            if event["trace_id"] != last_id:
                last_id = event["trace_id"]
                last = by_trace.setdefault(last_id, ([], [], []))[0]
            last.append(event)
        for block in decoded.metric_blocks:
            by_trace.setdefault(block.trace_id, ([], [], []))[1].append(block)
        for columns in decoded.columns:
            by_trace.setdefault(columns.trace_id, ([], [], []))[2].append(columns)
        actions: list[Action] = []
        source = f"{topic}:{partition}"
        for trace_id, (events, blocks, column_blocks) in by_trace.items():
            state = traces.get(trace_id)
            if state is not None and not correlate.sound_state(state):
                self.corrupt_state(f"trace {trace_id}", state)
                state = None  # the trace starts afresh: the record's events are kept, the other traces' too
            if state is None:
                state = correlate.new_state(trace_id, partition, ingested=now if ingested is None else ingested)
            elif correlate.already_applied(state, source, offset, retry):
                self.counters["duplicates"] += 1
                continue
            trace = correlate.apply_record(
                state,
                events,
                blocks,
                source=source,
                offset=offset,
                now=now,
                config=self.correlation,
                batch_id=retry,
                column_blocks=column_blocks,
                event_rows=(kept, rows[trace_id]) if kept is not None and trace_id in rows else None,
            )
            traces[trace_id] = state
            known = self._traces_by_partition.get(partition)
            if known is not None:
                known.add(trace_id)
            if trace is not None:
                actions.extend(self._trace_action(trace, state))
        return actions

    def chunks(
        self,
        decoded: Decoded,
        fast: list[set[str]],
        *,
        topic: str,
        partition: int,
        offset: int,
        retry: str,
        clashes: list[str] | None = None,
        too_large: list[str] | None = None,
    ) -> list[tuple[str, bytes]]:
        """Records for the series topic: one per entity, tagged with the source position; several for an entity
        whose chunk would not fit one record (:meth:`_pieces`).

        ``clashes`` gets a line per run series left out for another's detector series (see chunks._claim);
        ``too_large`` one per piece of one event's worth still too large for a record, left out.
        """
        out = []
        source = f"{topic}:{partition}"
        if decoded.event_columns is not None:
            found = event_column_chunks(decoded.event_columns)
        elif decoded.columns:
            found = column_chunks(decoded.columns)
        else:
            found = extract_chunks(decoded.events, decoded.metric_blocks, fast, clashes)
        for key, chunk in found.items():
            chunk["src"] = source
            chunk["off"] = offset
            chunk["bid"] = retry
            chunk["entity"] = key
            packed = pack_chunk(share_axes(chunk))
            if len(packed) + 4 * len(key) <= CHUNK_MAX_BYTES:  # a character of the key is 4 bytes at most
                out.append((key, packed))
            else:
                out += self._pieces(key, chunk, packed, too_large if too_large is not None else [])
        self.counters["chunks"] += len(out)
        return out

    def _pieces(self, key: str, chunk: dict[str, Any], packed: bytes, too_large: list[str]) -> list[tuple[str, bytes]]:
        """The records of an entity's chunk that, with its key, may pass :data:`CHUNK_MAX_BYTES`: the chunk itself
        if it fits, else its pieces (:func:`chunks.cut_chunk`, cut until each fits), in order.

        The series side skips a chunk whose source offset or batch id a series has applied already, so the pieces
        of one record each have a source and a batch id of their own: the first piece the chunk's, piece k
        ``<source>#k`` and ``<batch id>#k``. A sibling is then no redelivery of the first piece, while a
        redelivered record (the same bytes, so the same pieces) is skipped piece by piece as a whole chunk is.
        A piece of one event's worth still too large goes with its texts as UTF-8 bytes, not JSON (``raw_texts``),
        and if it is too large even so is left out, a line in ``too_large`` for its dead letter.
        """
        room = CHUNK_MAX_BYTES - len(key.encode(errors="surrogatepass"))
        if len(packed) <= room:
            return [(key, packed)]
        slack = 2 * (len(str(len(packed))) + 1)  # what "#k" adds to the source and the batch id of a piece
        pieces: list[tuple[dict[str, Any], bool]] = []  # each piece, and whether its texts go raw
        todo: list[tuple[dict[str, Any], int]] = [(chunk, len(packed))]
        # A part every piece carries (a service name of millions of control characters) does not shrink with
        # cutting: one 2.7 MB record made 200 records of 540 MB. The pieces and their bytes are bounded.
        packed_bytes = 0
        while todo:  # depth first, so the pieces keep the chunk's order
            piece, size = todo.pop()
            cut = cut_chunk(piece) if size + slack > room else None
            if cut is not None:
                sizes = [len(pack_chunk(share_axes(part))) for part in cut]
                packed_bytes += sum(sizes)
                if packed_bytes > _CUT_BUDGET * len(packed) or len(pieces) + len(todo) + 2 > _MAX_PIECES:
                    too_large.append(f"{_shown(key)}: {len(packed)} bytes that cutting does not make fit")
                    return []
                todo += list(zip(reversed(cut), reversed(sizes), strict=True))
            elif size + slack <= room:
                pieces.append((piece, False))
            elif (raw := len(pack_chunk(share_axes(piece), raw_texts=True))) + slack <= room:
                pieces.append((piece, True))
            else:
                too_large.append(f"a piece of {raw} bytes of {_shown(key)}, one event's worth")
        out = []
        source, retry = chunk["src"], chunk["bid"]
        for k, (piece, raw_texts) in enumerate(pieces):
            if k:
                piece = {**piece, "src": f"{source}#{k}", "bid": f"{retry}#{k}"}
            out.append((key, pack_chunk(share_axes(piece), raw_texts=raw_texts)))
        return out

    def _trace_action(self, trace: dict[str, Any], state: dict[str, Any]) -> list[Action]:
        """The trace's document; none with ``--no-index`` (building it is indexing work)."""
        self.counters["traces"] += 1
        if not self.options.index:
            return []
        # the window is around the trace's first ingest (not now): the index stays the same on every update
        ingested = state.get("ingested")
        window = self.ingest_window(ingested) if ingested is not None else None
        return [trace_action(trace, context=state.get("context") or None, window=window)]

    # ------------------------------------------------------------ ticks

    def tick(self, partition: int, traces: MutableMapping[str, Any], *, now: float) -> list[Action]:
        """Close idle traces of ``partition``, update closed ones late records changed, evict long-closed
        ones; trace documents to index."""
        keys = self._traces_by_partition.get(partition)
        if keys is None:
            # None: a key evicted by a version whose tombstone was the JSON b"null", restored as holding None
            keys = {k for k, st in traces.items() if isinstance(st, dict) and st.get("partition") == partition}
            self._traces_by_partition[partition] = keys
        actions: list[Action] = []
        for trace_id in list(keys):
            state = traces.get(trace_id)
            if state is None:
                keys.discard(trace_id)
                continue
            try:
                verdict, trace = correlate.on_tick(state, now=now, config=self.correlation)
                done = self._trace_action(trace, state) if trace is not None else []
            except Exception:
                if correlate.sound_state(state):
                    raise
                # restored from the changelog in a shape it never had (checked here only when it fails: a tick
                # reads every trace of the partition): dropped, or the partition's every tick raised
                self.corrupt_state(f"trace {trace_id}", state)
                del traces[trace_id]
                keys.discard(trace_id)
                continue
            if trace is not None:  # closed, or a closed one changed by late records
                traces[trace_id] = state
                actions.extend(done)
            elif verdict == "evict":
                del traces[trace_id]
                keys.discard(trace_id)
        return actions

    def forget_partitions(self, partitions: set[int]) -> None:
        """Partitions moved away: their trace index is rebuilt from the table if they come back."""
        for p in partitions:
            self._traces_by_partition.pop(p, None)

    # ------------------------------------------------------------ series chunks

    def series(
        self, value: bytes, table: MutableMapping[str, Any], *, now: float | None = None
    ) -> tuple[list[dict[str, Any]], list[Action]]:
        """Apply one series chunk; return alert records and documents (alerts, labels, rollups).

        ``table`` is keyed by entity (``run/<id>``, ``model/<name>``, ``data/<ds>/<stage>``); its
        value maps each series of the entity to that series' state. One table write per chunk,
        so one changelog record, instead of one per series: on Tansu that was 3.5x the
        worker's throughput on training batches (4 metrics + the overfitting check).
        ``now`` (the worker's wall clock, epoch s): the entity's touch mark is renewed
        (:mod:`aitrace.processors.expiry`); without it (tests, benchmarks) no mark is written.
        A chunk that raises leaves a :class:`Staged` table as it was (all or nothing for the entity).
        """
        chunk = unpack_chunk(value)
        self.counters["series"] += 1
        entity = chunk["entity"]
        if len(entity) > self.detection.max_key_chars // 2:  # its own series' keys add to it
            self.counters["series_refused"] += 1
            self._warn(entity, "refused: an entity named past %d characters", self.detection.max_key_chars // 2)
            return [], []
        _check_times(chunk)
        chunk = restore_axes(chunk)
        staged = table if isinstance(table, Staged) else None
        states, corrupt = self._entity_states(entity, table)
        mark = states.pop(MARK, None)  # the entity's idle bookkeeping, no series: the detectors never see it
        # Staged by an earlier chunk of the batch, ``states`` is the staged value itself (Staged.private), so the
        # series a chunk closed before it raised stayed applied: its dead letter was skipped as a redelivery and
        # its alerts lost. The series states it replaces (copy-on-write, never changed) are put back instead.
        before = dict(states) if staged is not None and entity in staged.pending else None
        try:
            result = self._detect(entity, chunk, states, staged is not None)
            # before the write (as series_group): a document that raised after it (an alert's time out of range)
            # left the dead-lettered chunk applied, and its redelivery skipped
            documents = None if result is None else self._documents(result)
        except BaseException:
            if before is not None:
                states.clear()
                states.update(before)
            raise
        finally:  # a staged value keeps its mark whatever the chunk did
            tracked = bool(states)
            if mark is not None:
                states[MARK] = mark
        if corrupt is not None:
            self.corrupt_state(entity, corrupt)
        if result is None or documents is None:
            return [], []
        status = chunk.get("status") if chunk["kind"] == "run" else None  # a lifecycle event of the run
        self._write(entity, table, states, (mark, tracked, status), now=now, applied=result.applied > 0)
        self._count(entity, result)
        self.counters["alerts"] += len(result.alerts)
        return result.alerts, documents

    def series_group(
        self, values: list[bytes], table: Staged, *, now: float | None = None
    ) -> list[tuple[list[dict[str, Any]], list[Action]]] | None:
        """Apply the chunks of one series record (a group of one entity's chunks, see ``group_chunks``) as
        :meth:`series` applies each in turn, with the same outputs per chunk and the same state, but each
        series' rules saved once for the group and a model's latency and confidence updated in one call
        (:meth:`SeriesDetectors.apply_group`): ~40 + ~70 us a model's chunk.

        None: not a group this applies (chunks of several entities, a data stage, whose budget is checked
        per chunk, a run's lifecycle event, whose status the idle mark takes chunk by chunk, or an entity
        named too long); :meth:`series` then takes each chunk. A chunk that raises leaves the table as it
        was and the exception goes on: the caller applies the chunks one by one.
        """
        chunks = [unpack_chunk(value) for value in values]
        for chunk in chunks:
            _check_times(chunk)
        chunks = [restore_axes(chunk) for chunk in chunks]
        entity = chunks[0]["entity"]
        if len(entity) > self.detection.max_key_chars // 2 or any(
            c["entity"] != entity or c["kind"] not in ("model", "run") or c.get("status") is not None for c in chunks
        ):
            return None
        states, corrupt = self._entity_states(entity, table)
        mark = states.pop(MARK, None)
        before = dict(states)  # the series states the group replaces, never changes (copy-on-write)
        detectors = self._detectors(states, cow=True)
        try:
            results = detectors.apply_group(chunks)
            # before the write: documents that raise after it left every chunk applied, and chunk by chunk
            # then skipped them all as redeliveries (no dead letter, the others' outputs lost)
            documents = [self._documents(result) for result in results]
        except BaseException:
            states.clear()  # staged before this group (the same key twice in a batch): as it was
            states.update(before)
            raise
        finally:
            tracked = bool(states)
            if mark is not None:
                states[MARK] = mark
        if corrupt is not None:
            self.corrupt_state(entity, corrupt)
        # without a status, the marks chunk by chunk would end as this one (same clock, same partition)
        self._write(entity, table, states, (mark, tracked, None), now=now, applied=any(r.applied > 0 for r in results))
        self.counters["series"] += len(chunks)
        for result in results:
            self._count(entity, result)
            self.counters["alerts"] += len(result.alerts)
        return [(result.alerts, actions) for result, actions in zip(results, documents, strict=True)]

    def _entity_states(self, entity: str, table: MutableMapping[str, Any]) -> tuple[dict[str, Any], Any]:
        """The entity's value to change: of a Staged table (the worker's), a private copy whose series are
        copied before they change, so that a dropped batch changes nothing. A value that is no dict (restored
        from a changelog record the worker never wrote) is dropped: the entity starts afresh, and the value
        comes second (else None), for the caller to count once its chunk or group went through: counted as it
        was read, a group that raised counted it, then the first of its chunks applied one by one again. Its
        series states are checked as each is read (SeriesStateBase._open_state)."""
        value = table.get(entity)
        if value is not None and type(value) is not dict:
            return {}, value
        if isinstance(table, Staged):
            return table.private(entity) or {}, None
        return dict(value or {}), None

    def _detectors(self, states: dict[str, Any], *, cow: bool) -> SeriesDetectors:
        """The detectors that change an entity's series ``states``."""
        detectors = SeriesDetectors(states, self.detection, self.live_rules, copy_on_write=cow)
        detectors.rollup_documents = self.options.index  # --no-index: rollup documents are indexing work
        return detectors

    def _write(
        self, entity: str, table: MutableMapping[str, Any], states: dict[str, Any], touch: tuple[Any, bool, Any],
        *, now: float | None, applied: bool,
    ) -> None:  # fmt: skip
        """Write the entity's ``states`` if a chunk changed them; with ``now``, its idle mark renewed first.
        ``touch``: the mark it had, whether it tracks any series, the status of its run's lifecycle event."""
        mark, tracked, status = touch
        if now is not None and tracked and (applied or status is not None):
            partition = table.partition if isinstance(table, Staged) else 0
            states[MARK] = self.expiry.touch(entity, mark, now, partition, status)
            table[entity] = states
        elif applied:
            table[entity] = states

    def _documents(self, result: ChunkResult) -> list[Action]:
        """A chunk's documents: its rollups, alerts and labels."""
        actions = list(result.actions)
        actions.extend(alert_action(a) for a in result.alerts)
        for event, prediction in result.label_events:
            actions.extend(self._label_actions(event, prediction))
        return actions

    def _detect(self, entity: str, chunk: dict[str, Any], states: dict[str, Any], cow: bool) -> ChunkResult | None:
        """The chunk applied to the entity's series ``states``; None when a data stage's was undone (its budget)."""
        detectors = self._detectors(states, cow=cow)
        before = dict(states) if chunk["kind"] == "data" else None  # its series are copied on write
        result = detectors.apply(chunk, source=chunk["src"], offset=chunk["off"], batch_id=chunk.get("bid"))
        if before is not None and result.applied and self._undone_past_budget(entity, states, before):
            return None
        return result

    def sweep(self, partition: int, table: MutableMapping[str, Any], *, now: float, home: Home) -> Expired:
        """Delete the entities of series ``partition`` idle past their time (:meth:`EntityExpiry.sweep`); count, log."""
        gone = self.expiry.sweep(partition, table, now, home)
        self.counters["expired"] += len(gone)
        for entity, _ in gone[:_EXPIRED_LOGGED]:
            log.info("expired %s: no change for its idle time, its detector state dropped", _shown(entity))
        if len(gone) > _EXPIRED_LOGGED:
            log.info("expired %d more entities of series partition %d", len(gone) - _EXPIRED_LOGGED, partition)
        return gone

    def _undone_past_budget(self, entity: str, states: dict[str, Any], before: dict[str, Any]) -> bool:
        """Put a data stage back as it was ``before`` the chunk if the chunk took it past its budget."""
        if _json_bytes(states) <= self.detection.max_data_state_bytes:
            return False
        states.clear()
        states.update(before)
        self.counters["series_refused"] += 1
        self._warn(entity, "would keep more than %d bytes: a batch of statistics left out",
                   self.detection.max_data_state_bytes)  # fmt: skip
        return True

    def _count(self, entity: str, result: ChunkResult) -> None:
        """What the chunk skipped, refused or put out: counted, and logged once a minute per entity."""
        if result.skipped:
            self.counters["duplicates"] += result.skipped
        if result.refused:
            self.counters["series_refused"] += len(result.refused)
            refused, first = len(result.refused), _shown(result.refused[0])
            limit = self.detection.series_cap(entity)
            self._warn(entity, "tracks the most series it may (%d): %d new refused, first %s", limit, refused, first)
        if result.too_long:
            self.counters["series_refused"] += len(result.too_long)
            n, most, first = len(result.too_long), self.detection.max_key_chars, _shown(result.too_long[0])
            self._warn(entity, "refused %d series named past %d characters, first %s", n, most, first)
        for key, dropped, value in result.corrupt:
            self.corrupt_state(key, value, dropped)
        if result.evicted:
            self.counters["pending_evicted"] += result.evicted
            self._warn(entity, "%d labels / predictions waiting for their partner put out (%d bytes a room)",
                       result.evicted, self.detection.pending_bytes)  # fmt: skip

    def corrupt_state(self, name: str, value: Any, dropped: str = "the value") -> None:
        """``name``'s table value (``dropped``: which part of it), restored in a shape the worker never writes,
        dropped: counted (``corrupt_state``), logged at most once a minute. The tables are restored from their
        changelog topics, which any client can write: such a value made every later record of its key raise."""
        self.counters["corrupt_state"] += 1
        self._warn("changelog:", "%s of %s dropped, restored in a shape the worker never writes (%d so far): %s",
                   dropped, _shown(name), self.counters["corrupt_state"], _shown(repr(value), 80))  # fmt: skip

    def _warn(self, entity: str, message: str, *args: Any) -> None:
        """Log ``message`` about ``entity`` at most once a minute per entity (the counters count every
        time): a client that keeps writing to a full entity would otherwise write the log a line a chunk."""
        now, key = time.monotonic(), (entity, message)
        if now - self._warned.get(key, -math.inf) < 60.0:
            return
        self._warned.pop(key, None)
        self._warned[key] = now  # last: the dict's order is the recency
        if len(self._warned) > 1024:
            del self._warned[next(iter(self._warned))]
        log.warning("%s " + message, _shown(entity), *args)

    def _label_actions(self, event: dict[str, Any], prediction: list[Any] | None) -> list[Action]:
        event = {**event, "payload": tuple(event["payload"])}  # JSON made the union tuple a list
        actions = event_actions(event)
        if prediction is not None:
            truth = actions[0]["_source"].setdefault("aitrace", {}).setdefault("ground_truth", {})
            predicted, time_us, event_id, trace_id = prediction
            truth.update(
                {
                    "prediction": predicted,
                    "correct": predicted == event["payload"][1]["label"],
                    "prediction_event_id": event_id,
                    "prediction_trace_id": trace_id,
                    "delay_ms": (event["time"] - time_us) / 1000.0,
                }
            )
        return actions

    def stats_line(self) -> str:
        c = self.counters
        return (
            f"records={c['records']} events={c['events']} chunks={c['chunks']} series={c['series']} "
            f"traces={c['traces']} alerts={c['alerts']} duplicates_skipped={c['duplicates']} "
            f"series_refused={c['series_refused']} pending_evicted={c['pending_evicted']} expired={c['expired']} "
            f"corrupt_state={c['corrupt_state']} {self.dlq}"
        )
