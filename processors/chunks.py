"""The trace-keyed side of the series repartition: a decoded batch cut into one *chunk* per entity.

:func:`extract_chunks` makes ``run/<run_id>`` (training metrics), ``model/<name>`` (inference
records and ground-truth labels) and ``data/<dataset>/<stage>`` (data stats) chunks. A chunk
holds arrays, so a metric block becomes a few NumPy slices, not a loop over points; the
entity-keyed side (:class:`aitrace.processors.detection.SeriesDetectors`) folds each chunk
into its series' state.

A model's name keys its entity exactly as it arrives, case and all: the producer already drops
surrounding whitespace and sends a prediction without a name as ``unknown``
(:func:`aitrace.producers.events.model_name`), and decoding refuses an empty one. The worker
does not normalise again: a name reaches it through several decoders (events, columnar blocks,
the Numba checks) and goes into documents as well as into these keys; one rule where names
enter, in the producer, keeps them all equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from aitrace.detect.series import TRAIN_SPLITS
from aitrace.processors import event_checks, rollup
from aitrace.processors.block_columns import BlockColumns
from aitrace.processors.event_columns import INFERENCE, EventColumns
from aitrace.processors.fastcolumns import double_column, long_column
from aitrace.schemas.metric_block import MetricBlock
from aitrace.sinks.documents import block_context

Chunk = dict[str, Any]


def _group_key(run_id: str | None, trace_id: str) -> str:
    return f"run/{run_id or trace_id}"


def data_entity(dataset: str, stage: str) -> str:
    """``data/<dataset>/<stage>``, each name's ``%`` and ``/`` escaped as in a URL.

    A data stage is the one entity named by two free strings: unescaped, dataset ``a/b``
    stage ``c`` and dataset ``a`` stage ``b/c`` met in one entity and mixed their features'
    series. Names without either character keep the key they always had (and their state).
    """
    return f"data/{_escaped(dataset)}/{_escaped(stage)}"


def _escaped(name: str) -> str:
    return name.replace("%", "%25").replace("/", "%2F") if "/" in name or "%" in name else name


def fast_series(block: MetricBlock, max_raw_rate: float, raw: bool) -> set[str]:
    """Names of the block's series that are rolled up rather than indexed point by point.

    Every series of a block has a point at every step (NaN/Inf included: they are data),
    so the block's own rate decides for all of its series at once.
    """
    if raw or not rollup.is_fast(block.times, max_raw_rate):
        return set()
    return set(block.series)


def extract_chunks(
    events: list[dict[str, Any]],
    blocks: list[MetricBlock],
    fast: list[set[str]] | None = None,
    clashes: list[str] | None = None,
) -> dict[str, Chunk]:
    """Entity key -> chunk of arrays for the detectors, from one decoded batch.

    ``fast[i]`` names the series of ``blocks[i]`` whose rollups the entity side computes.
    ``clashes`` gets a line for each run series left out because an earlier one of the batch
    takes its detector series (see :func:`_claim`).
    """
    chunks: dict[str, Chunk] = {}
    models: dict[str, Chunk] = {}  # model name -> its chunk, without building the key per event
    for i, block in enumerate(blocks):
        _block_into(chunks, block, fast[i] if fast else set())
    inference: dict[str, list[dict[str, Any]]] = {}  # model name -> its events, taken a column at a time
    for event in events:
        kind, p = event["payload"]
        if kind == "aitrace.InferenceRecord":
            rows = inference.get(p["model_name"])
            if rows is None:
                models[p["model_name"]] = _model_chunk(chunks, p["model_name"], event)
                rows = inference[p["model_name"]] = []
            rows.append(event)
        elif kind == "aitrace.TrainingMetric":
            _metric_event_into(chunks, event, p)
        elif kind == "aitrace.GroundTruth":
            _model_chunk(chunks, p["model_name"], event)["labels"].append(event)
        elif kind == "aitrace.RunLifecycle":  # its end lets the run's state expire sooner (expiry.py)
            run = _run_chunk(chunks, event.get("run_id"), event["trace_id"], event["service"])
            run["status"], run["status_time"] = p["status"], event["time"]
        elif kind == "aitrace.DataStats":
            key = data_entity(p["dataset"], p["stage"])
            chunk = chunks.setdefault(key, {"kind": "data", "dataset": p["dataset"], "stage": p["stage"], "stats": []})
            chunk["stats"].append([event["time"], event["service"], event["trace_id"], p])
    for model, rows in inference.items():
        _inference_into(models[model], rows)
    for chunk in chunks.values():
        if chunk["kind"] == "model":
            _finish_model_chunk(chunk)
        elif chunk["kind"] == "run":
            (clashes if clashes is not None else []).extend(chunk.pop("clashes"))
            del chunk["claims"]
    return chunks


def column_chunks(blocks: list[BlockColumns]) -> dict[str, Chunk]:
    """What :func:`extract_chunks` makes of the blocks' events, from their columns: a chunk per model."""
    chunks: dict[str, Chunk] = {}
    for columns in blocks:
        if columns.kind != "aitrace.InferenceRecord":
            continue  # logs and spans feed no series
        index = long_column(columns.block, columns.arrays, "model_name_index")
        for m, rows in _rows_by_model(index):
            key = f"model/{columns.block['model_name'][m]}"
            part = _model_columns(columns, columns.block["model_name"][m], rows)
            chunks[key] = part if key not in chunks else _join_model_chunks(chunks[key], part)
    return chunks


def _rows_by_model(index: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """Each model index of a block with its rows, models in the order their first rows come.

    A client's block holds one model's records (its exporter cuts a block per trace, and a trace
    mostly calls one model): then every row is the model's, without the sort np.unique takes.
    """
    if index.size and (index == index[0]).all():
        return [(index[0], np.arange(index.size))]
    models, first = np.unique(index, return_index=True)
    return [(m, np.flatnonzero(index == m)) for m in models[np.argsort(first, kind="stable")]]


def event_column_chunks(c: EventColumns) -> dict[str, Chunk]:
    """What :func:`extract_chunks` makes of a batch of single events kept as columns: a chunk per model."""
    by_model = c.split(f"{INFERENCE}.model_name", c.rows(INFERENCE))
    return {f"model/{model}": _event_model_chunk(c, model, rows) for model, rows in by_model.items()}


def _event_model_chunk(c: EventColumns, model: str, rows: np.ndarray) -> Chunk:
    """The model chunk of the inference events at ``rows`` (one model's), as :func:`_finish_model_chunk` leaves one."""
    f = f"{INFERENCE}."
    times = c.long("time", rows)
    predicted = rows[c.present(f + "prediction", rows)]
    traces, trace_of = c.groups("trace_id", predicted)
    columns = (
        c.text(f + "request_id", predicted),
        c.text(f + "prediction", predicted),
        c.long("time", predicted).tolist(),
        c.text("event_id", predicted),
        [traces[g] for g in trace_of.tolist()],
    )
    requests = list(map(list, zip(*columns, strict=True)))
    errors = c.equals(f + "status", rows, "error")
    return {
        "kind": "model",
        "model": model,
        "service": c.text("service", rows[:1])[0],
        "features": _event_features(c, rows),
        "requests": requests,
        "labels": [],
        "times": np.ascontiguousarray(times),
        "latency": c.double(f + "latency_ms", rows),
        "errors": errors.astype(np.float64),
        "confidence": c.opt_double(f + "confidence", rows),
    }


def _event_features(c: EventColumns, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The features of the events at ``rows`` as :func:`_features_into` lines them up: a matrix read when
    every event has the same names in the same order, else event by event."""
    counts, starts = c.map_entries(f"{INFERENCE}.features", rows)
    k = int(counts[0])
    if not counts.any():
        return {}
    x, doubles = c.walked.x, c.walked.doubles
    if k and (counts == k).all() and event_checks.same_keys(c.buf, x, starts, k):
        entries = starts[:, None] + 4 * np.arange(k)  # each event's entries: key range, value index
        names = [c.d[x[e] : x[e + 1]] for e in entries[0].tolist()]
        if len(set(names)) == k:
            values = doubles[x[entries + 2]]
            return {name: np.ascontiguousarray(values[:, j]) for j, name in enumerate(names)}
    events = c.events()
    features: dict[str, list[float]] = {}
    _features_into(features, [events[i]["payload"][1]["features"] for i in rows.tolist()], 0)
    return {name: np.array(values, dtype=np.float64) for name, values in features.items()}


def _model_columns(columns: BlockColumns, model: str, rows: np.ndarray) -> Chunk:
    """The model chunk of a block's records ``rows`` (one model's), as :func:`_finish_model_chunk` leaves one."""
    b = columns.block
    statuses = np.asarray(b["status"])  # a table: the error flag is one lookup per distinct status
    confidence = (
        double_column(b, columns.arrays, "confidence")[rows] if b.get("confidence") else np.full(len(rows), math.nan)
    )
    requests: list[list[Any]] = []
    predictions = b.get("prediction_index")
    if predictions:
        trace, block_id = columns.trace_id, b["block_id"]
        for i in rows.tolist():
            if predictions[i] >= 0:
                time = int(columns.times[i])
                requests.append([b["request_id"][i], b["prediction"][predictions[i]], time, f"{block_id}:{i}", trace])
    return {
        "kind": "model",
        "model": model,
        "service": columns.service,
        "features": _feature_columns(b, columns.arrays, rows),
        "requests": requests,
        "labels": [],
        "times": columns.times[rows],
        "latency": double_column(b, columns.arrays, "latency_ms")[rows],
        "errors": (statuses[long_column(b, columns.arrays, "status_index")[rows]] == "error").astype(np.float64),
        "confidence": confidence,
    }


def _feature_columns(block: Mapping[str, Any], arrays: Mapping[str, Any], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Each feature's values at ``rows``, NaN where a record lacks it (None): every column lines up
    with the chunk's times, and the drift windows skip NaN as they skip any non-finite value.

    In the order the per-record path meets the names: by the first record that has each.
    """
    found: list[tuple[int, str, np.ndarray]] = []
    for name, column in (block.get("features") or {}).items():
        # a None reads as NaN: no NaN, no None (a search for None compared each float to it: ~6 us a feature of 200)
        floats = double_column(block, arrays, "features", name)
        if not np.isnan(floats).any():
            found.append((0, name, floats[rows]))
            continue
        values = np.asarray(column, dtype=object)[rows] if None in column else None
        if values is None:
            found.append((0, name, floats[rows]))
            continue
        present = np.flatnonzero(values != None)  # noqa: E711 (elementwise over objects)
        if len(present):
            aligned = np.full(len(rows), math.nan)
            aligned[present] = values[present].astype(np.float64)
            found.append((int(present[0]), name, aligned))
    found.sort(key=lambda f: f[0])  # stable: names first met in one record keep the column order
    return {name: values for _, name, values in found}


def _join_model_chunks(a: Chunk, b: Chunk) -> Chunk:
    """Two blocks' chunks of one model as one, in record order (a feature one of them lacks: NaN there)."""
    na, nb = len(a["times"]), len(b["times"])
    features = {}
    for name in {**a["features"], **b["features"]}:
        head = a["features"].get(name, np.full(na, math.nan))
        features[name] = np.concatenate([head, b["features"].get(name, np.full(nb, math.nan))])
    joined = {**a, "features": features, "requests": a["requests"] + b["requests"]}
    for name in ("times", "latency", "errors", "confidence"):
        joined[name] = np.concatenate([a[name], b[name]])
    return joined


def _run_chunk(chunks: dict[str, Chunk], run_id: str | None, trace_id: str, service: str) -> Chunk:
    key = _group_key(run_id, trace_id)
    chunk = chunks.get(key)
    if chunk is None:
        chunk = {
            "kind": "run",
            "run_id": run_id or trace_id,
            "service": service,
            "trace_id": trace_id,
            "series": {},
            "ctx": None,
            "claims": {},  # detector series (split/name) -> the split that has it
            "clashes": [],
        }
        chunks[key] = chunk
    return chunk


def _refused(chunk: Chunk, split: str, names: list[str]) -> set[str]:
    """Of ``names`` of ``split``, those left out of the run's chunk (noted in its ``clashes``): another
    split of the batch has their detector series.

    The entity side keys a series ``run/<run>/<split or 'train'>/<name>`` and tells the run's
    training series by name alone, so ``loss`` of no split and of ``train`` were one series: the
    second of a chunk was skipped there as a redelivery of the first, silently. ``a/b`` of split
    ``x`` and ``b`` of ``x/a`` met the same way, and ``a|b`` of ``x`` and ``b`` of ``x|a`` (the entity
    side reads a series' split up to the first ``|`` of ``<split>|<name>``). The first split to claim a
    series keeps it.
    """
    head, bar, rest = split.partition("|")
    prefix = f"{'train' if head in TRAIN_SPLITS else head}/{rest}{bar}"
    claims = chunk["claims"]
    owners = [claims.setdefault(prefix + name, split) for name in names]
    if owners.count(split) == len(owners):
        return set()
    refused = {name for name, owner in zip(names, owners, strict=True) if owner != split}
    chunk["clashes"].extend(
        f"run {chunk['run_id']}: {name!r} of split {split or None!r} has the detector series "
        f"{prefix}{name} of split {owner or None!r}, met earlier in the record: not checked"
        for name, owner in zip(names, owners, strict=True)
        if owner != split
    )
    return refused


def _append_series(chunk: Chunk, name: str, steps: Any, times: Any, values: Any, roll: bool = False) -> None:
    s = chunk["series"].get(name)
    if s is None:
        chunk["series"][name] = {"steps": steps, "times": times, "values": values, "rollup": roll}
        return
    s["rollup"] = s["rollup"] or roll
    s["steps"] = np.concatenate([s["steps"], steps])
    s["times"] = np.concatenate([s["times"], times])
    s["values"] = np.concatenate([s["values"], values])


def _block_into(chunks: dict[str, Chunk], block: MetricBlock, fast: set[str]) -> None:
    chunk = _run_chunk(chunks, block.run_id, block.trace_id, block.service)
    if fast and chunk["ctx"] is None:
        chunk["ctx"] = block_context(block)
    split = block.split or ""
    refused = _refused(chunk, split, list(block.series))
    for name, values in block.series.items():
        # Every cell is a value the caller sent (the producer starts a new block for a new
        # set of names): NaN/Inf are kept, so a diverged loss reaches the nan/inf detector.
        if name not in refused:
            _append_series(chunk, f"{split}|{name}", block.steps, block.times, values, name in fast)


def _metric_event_into(chunks: dict[str, Chunk], event: dict[str, Any], p: dict[str, Any]) -> None:
    # One event, a handful of metrics: NaN here is data (a diverged loss) and is kept, as in a block.
    chunk = _run_chunk(chunks, event.get("run_id"), event["trace_id"], event["service"])
    split = p.get("split") or ""
    one_step = np.array([p["step"]], dtype=np.int64)
    one_time = np.array([event["time"]], dtype=np.int64)
    refused = _refused(chunk, split, list(p["metrics"]))
    for name, value in p["metrics"].items():
        if name not in refused:
            _append_series(chunk, f"{split}|{name}", one_step, one_time, np.array([value], dtype=np.float64))


def _model_chunk(chunks: dict[str, Chunk], model: str, event: dict[str, Any]) -> Chunk:
    key = f"model/{model}"
    chunk = chunks.get(key)
    if chunk is None:
        chunk = {
            "kind": "model",
            "model": model,
            "service": event["service"],
            "rows": ([], [], [], []),  # times, latency, error flags, confidence: columns as they come
            "features": {},
            "requests": [],
            "labels": [],
        }
        chunks[key] = chunk
    return chunk


def _inference_into(chunk: Chunk, events: list[dict[str, Any]]) -> None:
    """A model's inference events into its chunk's columns, in order."""
    times, latency, errors, confidence = chunk["rows"]
    payloads = [e["payload"][1] for e in events]
    before = len(times)
    times.extend([e["time"] for e in events])
    latency.extend([p["latency_ms"] for p in payloads])
    errors.extend([p["status"] == "error" for p in payloads])
    confidence.extend([math.nan if p.get("confidence") is None else p["confidence"] for p in payloads])
    _features_into(chunk["features"], [p["features"] for p in payloads], before)
    chunk["requests"].extend(
        [p["request_id"], p["prediction"], e["time"], e["event_id"], e["trace_id"]]
        for e, p in zip(events, payloads, strict=True)
        if p.get("prediction") is not None
    )


def _features_into(features: dict[str, list[float]], rows: list[dict[str, float]], before: int) -> None:
    """Each feature's values in record order, names in the order records first have them; NaN where a
    record lacks a feature, so every column lines up with the chunk's times (``before``: records so far)."""
    names = list(rows[0]) if rows else []
    columns: dict[str, list[float]] | None = None
    try:  # the usual case: every record has the same names, a column is one comprehension
        if all(len(r) == len(names) for r in rows):
            columns = {name: [r[name] for r in rows] for name in names}
    except KeyError:
        pass
    if columns is not None:
        for name, values in columns.items():
            features.setdefault(name, [math.nan] * before).extend(values)
    else:
        for i, r in enumerate(rows, before):
            for name, value in r.items():
                column = features.setdefault(name, [])
                column.extend([math.nan] * (i - len(column)))
                column.append(value)
    end = before + len(rows)
    for column in features.values():
        column.extend([math.nan] * (end - len(column)))


def _finish_model_chunk(chunk: Chunk) -> None:
    """Columns -> arrays (times, latency, error flags, confidence; one array per feature)."""
    times, latency, errors, confidence = chunk.pop("rows")
    chunk["times"] = np.array(times, dtype=np.int64)
    chunk["latency"] = np.array(latency, dtype=np.float64)
    chunk["errors"] = np.array(errors, dtype=np.float64)
    chunk["confidence"] = np.array(confidence, dtype=np.float64)
    chunk["features"] = {name: np.array(values, dtype=np.float64) for name, values in chunk["features"].items()}


def share_axes(chunk: Chunk) -> Chunk:
    """Before packing: a run chunk's series that have the same steps and times carry them once.

    The series of one metric block share both, so a training chunk of 4 metrics travelled its
    steps and times 4 times: two thirds of the repartition topic's bytes (and of what the
    worker produces, fetches and copies twice) for 4 metrics, half of them for any number of
    metrics after the first. :func:`restore_axes` undoes it after unpacking.
    """
    series = chunk.get("series") if chunk.get("kind") == "run" else None
    if not series or len(series) < 2:
        return chunk
    first = next(iter(series.values()))
    steps, times = first["steps"], first["times"]
    same = [name for name, s in series.items() if _same(s["steps"], steps) and _same(s["times"], times)]
    if len(same) < 2:
        return chunk
    shared = {name: {k: v for k, v in series[name].items() if k not in ("steps", "times")} for name in same}
    return {**chunk, "axes": {"steps": steps, "times": times}, "series": {**series, **shared}}


def restore_axes(chunk: Chunk) -> Chunk:
    """After unpacking: every series has its own steps and times again (a chunk without ``axes`` as it is).

    ValueError when a series' values do not line up with the axes: the copies are then bounded
    by the values the record carries (a crafted record of short series and long axes is not).
    """
    axes = chunk.pop("axes", None)
    if axes is not None:
        n = len(axes["steps"])
        for name, s in chunk["series"].items():
            if "steps" not in s:  # each its own copy, as unpacking gave them before
                if len(s["values"]) != n or len(axes["times"]) != n:
                    raise ValueError(f"series {name!r}: {len(s['values'])} values on shared axes of {n} steps")
                s["steps"], s["times"] = axes["steps"].copy(), axes["times"].copy()
    return chunk


def _same(a: Any, b: Any) -> bool:
    return a is b or (
        isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    )


def cut_chunk(chunk: Chunk) -> tuple[Chunk, Chunk] | None:
    """A chunk too large for one series record (see ``Pipeline.chunks``) cut in two pieces that, applied in turn,
    carry what it carries; None: one event's worth, not to be cut.

    A model's rows and predictions are each cut in half, a label going with its prediction (else at its half);
    a run's series each at half its points, or its series in two halves when each has a point at most; a data
    stage's statistics in half. Every other field goes into both pieces.
    """
    kind = chunk["kind"]
    if kind == "model":
        n, r, m = len(chunk["times"]), len(chunk["requests"]), len(chunk["labels"])
        cuts = _cuts([n, r, m])
        if cuts is None:
            return None
        c, cr, cm = cuts
        # a label goes with its prediction: the waiting rooms between pieces hold 5,000 (70,000 predictions with
        # labels for half of them, cut in two: 38 % of those labels lost their prediction)
        ids = [{str(r[0]) for r in chunk["requests"][:cr]}, {str(r[0]) for r in chunk["requests"][cr:]}]
        labels: list[list[Any]] = [[], []]
        for i, event in enumerate(chunk["labels"]):
            request = str(event["payload"][1].get("request_id"))
            labels[0 if request in ids[0] or (request not in ids[1] and i < cm) else 1].append(event)
        a = {**chunk, "requests": chunk["requests"][:cr], "labels": labels[0]}
        b = {**chunk, "requests": chunk["requests"][cr:], "labels": labels[1]}
        for piece, rows in ((a, slice(None, c)), (b, slice(c, None))):
            for name in ("times", "latency", "errors", "confidence"):
                piece[name] = chunk[name][rows]
            piece["features"] = {k: v[rows] for k, v in chunk["features"].items()} if len(piece["times"]) else {}
        return a, b
    if kind == "run":
        series = chunk["series"]
        halves: list[dict[str, Any]] = [{}, {}]
        if max((len(s["values"]) for s in series.values()), default=0) >= 2:
            for name, s in series.items():
                h = len(s["values"]) // 2
                for piece, part in zip(halves, (slice(None, h), slice(h, None)), strict=True):
                    if len(s["values"][part]):
                        piece[name] = {**s, **{k: s[k][part] for k in ("steps", "times", "values")}}
        elif len(series) >= 2:
            names = list(series)
            h = len(names) // 2
            halves = [{k: series[k] for k in names[:h]}, {k: series[k] for k in names[h:]}]
        else:
            return None
        return {**chunk, "series": halves[0]}, {**chunk, "series": halves[1]}
    if kind == "data" and len(chunk["stats"]) >= 2:
        h = len(chunk["stats"]) // 2
        return {**chunk, "stats": chunk["stats"][:h]}, {**chunk, "stats": chunk["stats"][h:]}
    return None


def _cuts(lengths: list[int]) -> list[int] | None:
    """Where to cut each of a chunk's sequences: each at its half while one has two items or more; else the first
    non-empty one whole into the first piece, the others into the second (None: a single item, no cut)."""
    if max(lengths) >= 2:
        return [n // 2 for n in lengths]
    if sum(lengths) < 2:
        return None
    first = next(i for i, n in enumerate(lengths) if n)
    return [n if i <= first else 0 for i, n in enumerate(lengths)]
