"""An alert -> its document and bulk action for the alerts index."""

from __future__ import annotations

from typing import Any

from aitrace.sinks.ecs_envelope import ALERTS, Action, Doc, bulk_action, index_name, iso_time, num, prune, require

_SEVERITY = {"info": 1, "warning": 2, "critical": 3}


def alert_document(alert: dict[str, Any]) -> Doc:
    """An aitrace.Alert -> document for the alerts index (``@timestamp`` = first_seen)."""
    require(alert, "alert_id", "kind", "detector", "severity", "title", "series", "first_seen", what="alert")
    last_seen = alert.get("last_seen", alert["first_seen"])
    severity = alert["severity"]
    doc = {
        "@timestamp": iso_time(alert["first_seen"]),
        "message": alert["title"],
        "trace": {"id": alert.get("trace_id")},
        "service": {"name": alert.get("service")},
        "event": {
            "id": alert["alert_id"],
            "kind": "alert",
            "dataset": "aitrace.alert",
            "severity": _SEVERITY.get(severity, 0),
            "start": iso_time(alert["first_seen"]),
            "end": iso_time(last_seen),
            "duration": max(0, int(last_seen) - int(alert["first_seen"])) * 1000,
        },
        "aitrace": {
            "kind": "alert",
            "run_id": alert.get("run_id"),
            "alert": {
                "id": alert["alert_id"],
                "version": alert.get("version", 1),
                "kind": alert["kind"],
                "detector": alert["detector"],
                "severity": severity,
                "state": alert.get("state", "open"),
                "title": alert["title"],
                "series": alert["series"],
                "model": alert.get("model"),
                "feature": alert.get("feature"),
                "step": alert.get("step"),
                "last_seen": iso_time(last_seen),
                "score": num(alert.get("score")),
                "statistic": num(alert.get("statistic")),
                "threshold": num(alert.get("threshold")),
                "pvalue": num(alert.get("pvalue")),
                "evidence": [num(v) for v in alert.get("evidence") or []],
                "details": dict(alert.get("details") or {}),
            },
        },
    }
    return prune(doc)


def alert_action(alert: dict[str, Any], *, prefix: str = "aitrace") -> Action:
    """Bulk action for an alert: ``_id`` = alert id (dedup key), daily index of first_seen."""
    doc = alert_document(alert)
    return bulk_action(index_name(prefix, ALERTS, alert["first_seen"]), alert["alert_id"], doc)


__all__ = ["alert_action", "alert_document"]
