"""One alert as a line of text: the terminal tail and the webhook's ``summary`` field."""

from __future__ import annotations

from datetime import UTC, datetime

from aitrace.sinks.alert_stream import Alert
from aitrace.sinks.terminal import BOLD_RED, CYAN, DIM, GREEN, RESET, YELLOW

_COLOURS = {"critical": BOLD_RED, "error": BOLD_RED, "warning": YELLOW, "info": CYAN}


def format_time(micros: int | None) -> str:
    """``2026-11-26 15:30:12Z`` from epoch microseconds (UTC)."""
    if micros is None:
        return "-"
    try:
        return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"
    except (ValueError, OverflowError, OSError, TypeError):  # past any date: a record any client can write
        return f"<time {micros!r} us>"


def _number(value: float) -> str:
    return f"{value:.4g}"


def where_of(alert: Alert) -> str:
    """``service=a run=b model=c feature=d step=e trace=f`` (set fields only)."""
    names = (("service", "service"), ("run", "run_id"), ("model", "model"), ("feature", "feature"))
    parts = [f"{label}={alert[key]}" for label, key in names if alert.get(key)]
    if alert.get("step") is not None:
        parts.append(f"step={alert['step']}")
    if alert.get("trace_id"):
        parts.append(f"trace={alert['trace_id']}")
    return " ".join(parts) or f"series={alert.get('series', '?')}"


def evidence_of(alert: Alert) -> str:
    """``statistic=0.41 threshold=0.2 p=0.001 score=0.97`` (set fields only)."""
    names = (("statistic", "statistic"), ("threshold", "threshold"), ("p", "pvalue"), ("score", "score"))
    return " ".join(f"{label}={_number(alert[key])}" for label, key in names if alert.get(key) is not None)


def format_alert(alert: Alert, *, colour: bool = False) -> str:
    """One readable line per alert version: when, how bad, what, where, the evidence, which one."""
    severity = str(alert.get("severity", "?"))
    state = str(alert.get("state", "open"))
    sev_text = f"{severity.upper():<8}"
    state_text = f"{state:<8}"
    ident = f"({alert.get('alert_id')} v{alert.get('version')})"
    if colour:
        sev_text = f"{_COLOURS.get(severity.lower(), '')}{sev_text}{RESET}"
        if state == "resolved":
            state_text = f"{GREEN}{state_text}{RESET}"
        ident = f"{DIM}{ident}{RESET}"
    evidence = evidence_of(alert)
    parts = [
        format_time(alert.get("last_seen")),
        sev_text,
        state_text,
        str(alert.get("title", "")),
        f"[{where_of(alert)}]",
    ]
    if evidence:
        parts.append(evidence)
    parts.append(ident)
    return "  ".join(parts)


__all__ = ["evidence_of", "format_alert", "format_time", "where_of"]
