"""From detector findings to ``aitrace.Alert`` records: one incident, one alert, growing versions.

A finding is detect's :class:`~aitrace.detect.finding.Finding` (the one type every rule
returns); its ``category`` is the alert's ``kind``, its ``reason`` the ``detector``, its
``message`` the ``title``, its ``time_us`` the event time the incident is dated by.

Per series an :class:`IncidentTracker` keeps at most one open incident inside the series
state (a plain dict, stored in the Faust table with the detector state). Its ``alert_id``
is derived from the series and the event time of the incident's first finding, so a
recomputation after a redelivery yields the same id: the alerts index (``_id`` = alert id)
and a downstream consumer (``alert_id`` + ``version``) both see one incident.

- a chunk with findings and no open incident opens one (version 1);
- later findings update it (version + 1) when the severity rises or the series turns NaN or
  infinite, or at most once per ``update_every_us`` of event time, so a long incident does not
  flood the topic;
- ``resolve_after`` clean points (or drift checks) in a row resolve it (version + 1,
  ``state = "resolved"``), in the same chunk when the clean points follow the finding
  there; the next finding opens a new incident.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from aitrace.detect.finding import Finding

_RANK = {"info": 0, "warning": 1, "critical": 2}
_NON_FINITE = ("nan", "inf")


@dataclass(frozen=True)
class SeriesContext:
    """Where a series lives: what an alert says under "where"."""

    series: str
    service: str | None = None
    run_id: str | None = None
    model: str | None = None
    feature: str | None = None
    trace_id: str | None = None


def alert_id(series: str, first_seen_us: int) -> str:
    """Stable dedup key of an incident: the series and the event time it started."""
    digest = hashlib.blake2b(f"{series}|{first_seen_us}".encode(), digest_size=12).hexdigest()
    return f"al-{digest}"


@dataclass(frozen=True)
class IncidentPolicy:
    """When an open incident is re-published and when it is resolved."""

    update_every_us: int = 60_000_000
    resolve_after: int = 50


class IncidentTracker:
    """Turns the findings of one series into alert versions; state lives in ``state["incident"]``."""

    def __init__(self, policy: IncidentPolicy | None = None) -> None:
        self.policy = policy or IncidentPolicy()

    def observe(
        self,
        state: dict[str, Any],
        ctx: SeriesContext,
        finding: Finding | None,
        *,
        clean: int,
        last_time_us: int,
    ) -> list[dict[str, Any]]:
        """Fold one chunk's outcome in; return the alert versions to publish (oldest first).

        ``finding`` is the chunk's worst finding (None when it had none); ``clean`` is how
        many clean points (or checks) followed it in the chunk, ``last_time_us`` the chunk's
        last event time.
        """
        out: list[dict[str, Any]] = []
        open_ = state.get("incident")
        if finding is not None:
            if open_ is None:
                open_ = self._open(ctx, finding)
                state["incident"] = open_
                out.append(self._record(open_))
            elif self._update(open_, finding):
                out.append(self._record(open_))
            open_["quiet"] = clean
        elif open_ is not None:
            open_["quiet"] += clean
        if open_ is not None and open_["quiet"] >= self.policy.resolve_after:
            open_["state"] = "resolved"
            open_["version"] += 1
            open_["last_seen"] = max(open_["last_seen"], last_time_us)
            state["incident"] = None
            out.append(self._record(open_))
        return out

    def _open(self, ctx: SeriesContext, f: Finding) -> dict[str, Any]:
        return {
            "alert_id": alert_id(ctx.series, _time_us(f)),
            "version": 1,
            "state": "open",
            "series": ctx.series,
            "service": ctx.service,
            "run_id": ctx.run_id,
            "model": ctx.model,
            "feature": ctx.feature,
            "trace_id": ctx.trace_id,
            "first_seen": _time_us(f),
            "last_seen": _time_us(f),
            "published_at": _time_us(f),
            "findings": 1,
            "quiet": 0,
            **_finding_fields(f),
        }

    def _update(self, open_: dict[str, Any], f: Finding) -> bool:
        open_["findings"] += 1
        open_["last_seen"] = max(open_["last_seen"], _time_us(f))
        # a series gone NaN or infinite while its incident is open is news of its own (the loss of a run whose
        # spike opened it at step 152 became NaN at 166): published at once, as a rise of severity is
        escalates = _RANK[f.severity] > _RANK[open_["severity"]] or (
            f.reason in _NON_FINITE and open_["detector"] not in _NON_FINITE
        )
        due = _time_us(f) - open_["published_at"] >= self.policy.update_every_us
        if not (escalates or due):
            return False
        worst = max(open_["severity"], f.severity, key=_RANK.__getitem__)
        open_.update(_finding_fields(f))
        open_["severity"] = worst  # an incident never de-escalates while it lasts
        open_["version"] += 1
        open_["published_at"] = _time_us(f)
        return True

    @staticmethod
    def _record(open_: dict[str, Any]) -> dict[str, Any]:
        details = dict(open_["details"])
        details["findings"] = str(open_["findings"])
        return {
            "alert_id": open_["alert_id"],
            "version": open_["version"],
            "kind": open_["kind"],
            "detector": open_["detector"],
            "severity": open_["severity"],
            "state": open_["state"],
            "title": open_["title"],
            "series": open_["series"],
            "service": open_["service"],
            "run_id": open_["run_id"],
            "model": open_["model"],
            "feature": open_["feature"],
            "trace_id": open_["trace_id"],
            "step": open_["step"],
            "first_seen": open_["first_seen"],
            "last_seen": open_["last_seen"],
            "score": open_["score"],
            "statistic": open_["statistic"],
            "threshold": open_["threshold"],
            "pvalue": open_["pvalue"],
            # the JSON state turns NaN into null; the Avro record wants the NaN back
            "evidence": [float("nan") if v is None else v for v in open_["evidence"]],
            "details": details,
        }


_NONE = type(None)
_NUMBER = (int, float, _NONE)
# An open incident's parts (IncidentTracker._open) and the types they may have: what observe and _record read
_SHAPE: dict[str, tuple[type, ...]] = {
    "alert_id": (str,), "version": (int,), "state": (str,), "series": (str,), "service": (str, _NONE),
    "run_id": (str, _NONE), "model": (str, _NONE), "feature": (str, _NONE), "trace_id": (str, _NONE),
    "first_seen": (int,), "last_seen": (int,), "published_at": (int,), "findings": (int,), "quiet": (int,),
    "kind": (str,), "detector": (str,), "severity": (str,), "title": (str,), "step": (int, _NONE),
    "score": _NUMBER, "statistic": _NUMBER, "threshold": _NUMBER, "pvalue": _NUMBER, "evidence": (list,),
    "details": (dict,),
}  # fmt: skip
_MISSING = object()


def sound_incident(incident: Any) -> bool:
    """Whether ``incident``, an open incident read from the series table, has the shape :meth:`IncidentTracker._open`
    gives one (the table is restored from its changelog, which any client can write). Only an open incident is
    checked, as a series is opened for a chunk: ~3 us."""
    if type(incident) is not dict or incident.get("severity") not in _RANK:
        return False
    return all(isinstance(incident.get(k, _MISSING), t) for k, t in _SHAPE.items())


def _time_us(f: Finding) -> int:
    if f.time_us is None:
        raise ValueError(f"finding {f.reason!r} has no event time: an incident needs one")
    return int(f.time_us)


def _finding_fields(f: Finding) -> dict[str, Any]:
    return {
        "kind": f.category,
        "detector": f.reason,
        "severity": f.severity,
        "title": f.message,
        "step": int(f.step) if f.has_step else None,
        "score": _finite_or_none(f.score),
        "statistic": _finite_or_none(f.statistic),
        "threshold": _finite_or_none(f.threshold),
        "pvalue": _finite_or_none(f.pvalue),
        "evidence": [float(v) for v in f.evidence],
        "details": {k: str(v) for k, v in f.details.items()},
    }


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None
