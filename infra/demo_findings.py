"""What ``aitrace demo`` injects and how it knows the pipeline found it.

The faults as alert predicates (:func:`expectations`), the verdict of the alerts seen against
them (:func:`judge`), and the alerts read back from the topic tail and from the index
(:func:`alert_from_document`, :func:`merge_alerts`) as one view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DIVERGE_AT = 150
RUN_DIVERGE, RUN_HEALTHY = "run-diverge", "run-healthy"

Alert = dict[str, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Expectation:
    """One injected fault and how to recognize the alert that finds it."""

    name: str
    match: Callable[[Alert], bool]
    required: bool = True


def _is(alert: Alert, **fields: Any) -> bool:
    return all(alert.get(k) == v if not isinstance(v, tuple) else alert.get(k) in v for k, v in fields.items())


def expectations(
    shifted_feature: str,
    missing_feature: str,
    model: str,
    drifted_input: str,
    *,
    drift_since_us: int = 0,
    slow_since_us: int = 0,
) -> list[Expectation]:
    """What the workloads inject, as alert predicates (field names of ``aitrace.Alert``).

    Inference findings count only when the incident reaches into the phase that injected the
    fault (``*_since_us``, event time): a blip during the healthy baseline is not the spike.
    """
    return [
        Expectation(
            f"divergence / exploding gradients on {RUN_DIVERGE} after step {DIVERGE_AT}",
            lambda a: (
                _is(a, run_id=RUN_DIVERGE, kind=("anomaly", "training"), feature=("loss", "grad_norm"))
                and (a.get("step") is None or a["step"] >= DIVERGE_AT)
            ),
        ),
        Expectation(
            f"drift of {shifted_feature!r} in the data pipeline",
            lambda a: _is(a, kind="drift", feature=shifted_feature, model=None),
        ),
        Expectation(
            f"missing values of {missing_feature!r} in the data pipeline",
            lambda a: _is(a, kind="data_quality", feature=missing_feature, model=None),
        ),
        Expectation(
            "the label value never seen before",
            lambda a: _is(a, kind="data_quality", detector="unseen_label", model=None),
        ),
        Expectation(
            f"latency spike of model {model}",
            lambda a: _is(a, model=model, kind="anomaly", feature="latency") and a.get("last_seen", 0) >= slow_since_us,
        ),
        Expectation(
            f"input drift of {drifted_input!r} for model {model}",
            lambda a: (
                _is(a, model=model, kind="drift", feature=drifted_input) and a.get("last_seen", 0) >= drift_since_us
            ),
        ),
        Expectation(
            f"error rate of model {model} (a few malformed requests)",
            lambda a: _is(a, model=model, kind="error_rate"),
            required=False,
        ),
    ]


@dataclass
class Verdict:
    """The outcome against the expectations: found alerts per expectation, false alarms."""

    found: dict[str, Alert]
    missed: list[Expectation]
    false_alarms: list[Alert]

    @property
    def ok(self) -> bool:
        return not self.false_alarms and not any(e.required for e in self.missed)

    def headline(self) -> str:
        """The summary's last line: OK, or each reason the run failed (it used to say "did not
        find everything injected" also when everything was found and the healthy run alerted)."""
        if self.ok:
            return "OK: every injected fault was found"
        reasons = []
        missed = [e.name for e in self.missed if e.required]
        if missed:
            reasons.append(f"the pipeline did not find {'; '.join(missed)}")
        if self.false_alarms:
            reasons.append(f"{len(self.false_alarms)} alert(s) on {RUN_HEALTHY}, which should raise none")
        return "FAILED: " + ", and ".join(reasons)


def judge(alerts: dict[str, Alert], expected: list[Expectation]) -> Verdict:
    """Match the latest version of every alert against what was injected."""
    ordered = sorted(alerts.values(), key=lambda a: a.get("first_seen") or 0)
    found: dict[str, Alert] = {}
    missed: list[Expectation] = []
    for expectation in expected:
        hit = next((a for a in ordered if expectation.match(a)), None)
        if hit is None:
            missed.append(expectation)
        else:
            found[expectation.name] = hit
    false_alarms = [a for a in ordered if a.get("run_id") == RUN_HEALTHY]
    return Verdict(found, missed, false_alarms)


def describe(alert: Alert) -> str:
    """One line for a person: severity, title, and where it points."""
    where = [f"{k} {alert[k]}" for k in ("run_id", "model", "feature") if alert.get(k)]
    if alert.get("step") is not None:
        where.append(f"step {alert['step']}")
    statistic = alert.get("statistic")
    stat = f", statistic {statistic:.3g}" if isinstance(statistic, float) else ""
    return f"[{alert.get('severity')}] {alert.get('title')} ({', '.join(where)}{stat})"


def alert_from_document(doc: dict[str, Any]) -> Alert | None:
    """An alerts-index document (see ``aitrace.sinks.documents.alert_document``) as an Alert dict."""
    body = (doc.get("aitrace") or {}).get("alert")
    if not isinstance(body, dict) or "id" not in body:
        return None

    def micros(iso: str | None) -> int:
        if not iso:
            return 0
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        return (moment - _EPOCH) // timedelta(microseconds=1)  # exact: no float on the way

    return {
        "alert_id": body["id"],
        "version": body.get("version", 1),
        "kind": body.get("kind"),
        "detector": body.get("detector"),
        "severity": body.get("severity"),
        "state": body.get("state"),
        "title": body.get("title"),
        "series": body.get("series"),
        "service": (doc.get("service") or {}).get("name"),
        "run_id": (doc.get("aitrace") or {}).get("run_id"),
        "model": body.get("model"),
        "feature": body.get("feature"),
        "step": body.get("step"),
        "first_seen": micros(doc.get("@timestamp")),
        "last_seen": micros(body.get("last_seen")),
        "statistic": body.get("statistic"),
        "score": body.get("score"),
    }


def merge_alerts(*sources: dict[str, Alert]) -> dict[str, Alert]:
    """One view of several: per alert id, the highest version seen anywhere."""
    merged: dict[str, Alert] = {}
    for source in sources:
        for alert_id, alert in source.items():
            if alert_id not in merged or alert.get("version", 1) > merged[alert_id].get("version", 1):
                merged[alert_id] = alert
    return merged
