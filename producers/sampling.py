"""Head sampling by trace, which never drops errors or anomalies.

The keep decision is a pure function of the trace id, the rule of OpenTelemetry's
``TraceIdRatioBased`` sampler (lower 64 bits of the trace id below ``rate * 2**64``), so every
service that sees a trace decides the same way without talking to the others, and an aitrace
producer agrees with an OTel SDK configured with the same ratio.

Errors and anomalies are kept whatever the trace decision (they are what on-call looks for):
log records at level error/critical, spans and inference records with status ``error``, failed
or killed runs, any event labelled ``anomaly``, and metric blocks holding a NaN or Inf value
(a diverging loss: only those rows of the block are kept). Such an event of an unsampled trace
travels with ``sampled = false``.
"""

from __future__ import annotations

import math
from typing import Any

from aitrace.producers.events import DropEvent

_TRACE_ID_LIMIT = 1 << 64
_ERROR_LEVELS = frozenset({"error", "critical", "fatal"})
_BAD_RUN = frozenset({"FAILED", "KILLED"})


def trace_sampled(trace_id: str, rate: float) -> bool:
    """OpenTelemetry's TraceIdRatioBased rule on a hex trace id."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    bound = round(rate * _TRACE_ID_LIMIT)
    return int(trace_id[-16:], 16) < bound


def must_keep(item: dict[str, Any]) -> bool:
    """True for an error or an anomaly, which sampling never drops."""
    if "payload" not in item:  # a metric block: keep it when any value is NaN or Inf
        return any(not math.isfinite(v) for s in item.get("series", ()) for v in s["values"])
    if item.get("labels", {}).get("anomaly") in ("1", "true", "True"):
        return True
    name, payload = item["payload"]
    if name == "aitrace.LogRecord":
        return payload.get("level") in _ERROR_LEVELS or payload.get("attributes", {}).get("anomaly") == "true"
    if name in ("aitrace.Span", "aitrace.InferenceRecord"):
        return payload.get("status") == "error"
    if name == "aitrace.RunLifecycle":
        return payload.get("status") in _BAD_RUN
    return name == "aitrace.Alert"


class TraceSampler:
    """A processor: keeps an item when its trace is sampled or when it is an error or anomaly.

    Decisions are cached per trace id (a run's trace is looked up once, not per metric block).
    """

    drop_reason = "sampled_out"

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample_rate must lie in [0, 1], got {rate!r}")
        self.rate = rate
        self._decisions: dict[str, bool] = {}

    def sampled(self, trace_id: str) -> bool:
        """The head-sampling decision for one trace."""
        decision = self._decisions.get(trace_id)
        if decision is None:
            decision = trace_sampled(trace_id, self.rate)
            if len(self._decisions) >= 50_000:
                self._decisions.clear()
            self._decisions[trace_id] = decision
        return decision

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.rate >= 1.0 or self.sampled(item["trace_id"]):
            return item
        if not must_keep(item):
            raise DropEvent
        if "payload" in item:
            item["sampled"] = False
            return item
        return only_anomalous_rows(item)


def only_anomalous_rows(block: dict[str, Any]) -> dict[str, Any]:
    """The rows of a metric block that hold a NaN or Inf, kept from an unsampled trace.

    The exporter counts the rows left out (as ``sampled_out``) by comparing the two blocks.
    """
    columns = [s["values"] for s in block["series"]]
    rows = [i for i in range(len(block["steps"])) if any(not math.isfinite(c[i]) for c in columns)]
    if len(rows) == len(block["steps"]):
        return block
    out = dict(block)
    out["steps"] = [block["steps"][i] for i in rows]
    out["times"] = [block["times"][i] for i in rows]
    out["epochs"] = [block["epochs"][i] for i in rows] if block["epochs"] else []
    out["series"] = [{"name": s["name"], "values": [s["values"][i] for i in rows]} for s in block["series"]]
    return out
