"""Decoded events, traces and alerts -> ECS documents and bulk actions: the entry point.

:func:`event_actions` turns one decoded event into its bulk actions; the pieces live in
:mod:`aitrace.sinks.ecs_envelope` (the envelope, index names, times, :class:`IngestWindow`),
:mod:`aitrace.sinks.event_bodies` (per payload kind), :mod:`aitrace.sinks.metric_documents`
(MetricBlock points, rollups), :mod:`aitrace.sinks.trace_documents` and
:mod:`aitrace.sinks.alert_documents`, and are re-exported here.

Pure functions: no I/O, no state. The processors call them on decoded records
(``aitrace.schemas.codec`` output: ``time`` in int microseconds, ``payload`` as
``(record_name, dict)``) and hand the actions to :mod:`aitrace.sinks.indexer`.

Layout (the index templates in :mod:`aitrace.sinks.templates` map exactly these):

* ECS fields for the envelope: ``@timestamp``, ``event.id``, ``trace.id``,
  ``span.id``, ``parent.id``, ``service.{name,version,environment}``,
  ``host.name``, ``process.pid``, ``labels.*``, ``event.{kind,category,dataset,
  duration (ns),outcome}``, ``log.*``, ``message``, ``error.*``.
* ML fields under ``aitrace.*``. Free-form maps whose keys the user chooses
  (log attributes, run config, inference features, quantiles) are kept in
  ``_source`` under objects the templates mark ``enabled: false``: readable,
  never a new mapped field.
* Training metrics use a **name/value layout**: one document per metric per
  point (``aitrace.metric.name`` keyword + ``aitrace.metric.value`` double), so
  any metric name costs no mapping and Kibana can chart ``value`` split or
  filtered by ``name``. Its ``_id`` is ``<event_id>:<name>`` (the event id of a
  columnar point is ``<block_id>:<i>``), deterministic, so redelivery overwrites.
  NaN/Inf are data, in a TrainingMetric and in a MetricBlock alike (the producer
  starts a new block for a new set of metric names, so every cell of a block is
  a value the caller sent): ``value`` is null and ``aitrace.metric.nonfinite``
  says ``nan``, ``inf`` or ``-inf``.
* High-rate series are indexed as per-window rollups (:func:`rollup_action`,
  built by the processors' table-backed :mod:`aitrace.processors.rollup`): same
  name/value layout with ``value`` = mean of the finite points plus
  ``aitrace.metric.{count,min,max,last,first_step,last_step}`` over them,
  ``aitrace.metric.nonfinite_count`` (NaN/Inf points of the window, counted, not
  summarised) and ``aitrace.metric.rollup: true``.

``_id`` is the event id for events, the trace id for traces and the alert id
(dedup key) for alerts. Traces go to the daily index of their start time and
alerts to that of ``first_seen``: both are stable while the document is updated,
so a late update overwrites the same document instead of creating a second one
in the next day's index. An event whose time lies far from its ingest time (see
:class:`IngestWindow`) goes to the ingest day's index instead, flagged.
"""

from __future__ import annotations

from typing import Any

# The entry point re-exports the pieces: each name is listed once, here, as a redundant alias
# (``name as name``: an explicit re-export for mypy and ruff), and __all__ lists only what this
# module defines, so no name is kept in step in two lists.
from aitrace.sinks.alert_documents import alert_action as alert_action
from aitrace.sinks.alert_documents import alert_document as alert_document
from aitrace.sinks.ecs_envelope import ALERTS as ALERTS
from aitrace.sinks.ecs_envelope import EVENTS as EVENTS
from aitrace.sinks.ecs_envelope import FAMILIES as FAMILIES
from aitrace.sinks.ecs_envelope import TRACES as TRACES
from aitrace.sinks.ecs_envelope import Action as Action
from aitrace.sinks.ecs_envelope import Doc as Doc
from aitrace.sinks.ecs_envelope import DocumentError as DocumentError
from aitrace.sinks.ecs_envelope import IngestWindow as IngestWindow
from aitrace.sinks.ecs_envelope import as_micros, bulk_action, payload_of, reroute
from aitrace.sinks.ecs_envelope import envelope_fields as envelope_fields
from aitrace.sinks.ecs_envelope import index_name as index_name
from aitrace.sinks.ecs_envelope import iso_time as iso_time
from aitrace.sinks.event_bodies import event_documents as event_documents
from aitrace.sinks.metric_documents import block_context as block_context
from aitrace.sinks.metric_documents import metric_block_actions as metric_block_actions
from aitrace.sinks.metric_documents import rollup_action as rollup_action
from aitrace.sinks.trace_documents import trace_action as trace_action
from aitrace.sinks.trace_documents import trace_document as trace_document

# The builders' default prefix. The processors build every action under it and know no other: the
# indexer writes them under the configured index prefix (see aitrace.sinks.indexer).
CANONICAL_PREFIX = "aitrace"


def event_actions(
    event: dict[str, Any], *, prefix: str = CANONICAL_PREFIX, window: IngestWindow | None = None
) -> list[Action]:
    """Bulk actions for one decoded event (Trace/Alert payloads go to their own index)."""
    record_name, p = payload_of(event)
    if record_name == "aitrace.Trace":
        return [trace_action(p, prefix=prefix, context=event)]
    if record_name == "aitrace.Alert":
        return [alert_action(p, prefix=prefix)]
    index = index_name(prefix, EVENTS, event["time"]) if "time" in event else ""
    actions = [bulk_action(index, doc_id, doc) for doc_id, doc in event_documents(event)]
    skew = window.skew_us(as_micros(event["time"])) if window is not None and "time" in event else 0
    return [reroute(a, prefix, window, skew) for a in actions] if skew and window else actions


__all__ = ["CANONICAL_PREFIX", "event_actions"]
