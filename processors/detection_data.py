"""Data pipeline series: per-batch feature and label statistics checked against their reference.

Chunks of entity ``data/<dataset>/<stage>`` (see :mod:`aitrace.processors.chunks`); the
checks are :func:`aitrace.detect.windows.feature_checks` and ``label_checks``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aitrace.detect import windows as K
from aitrace.detect.finding import Finding
from aitrace.processors.chunks import data_entity
from aitrace.processors.detection_state import Chunk, ChunkResult, SeriesStateBase, State
from aitrace.processors.incidents import SeriesContext


class DataSeriesDetectors(SeriesStateBase):
    """The series of a data pipeline stage (entity ``data/<dataset>/<stage>``)."""

    def _data(self, chunk: Chunk, result: ChunkResult, source: str, offset: int) -> None:
        entity = data_entity(chunk["dataset"], chunk["stage"])
        for time_us, service, trace_id, stats in chunk["stats"]:
            n_features = len(stats.get("features") or [])
            for feature in stats.get("features") or []:
                key = f"{entity}/{feature['name']}"
                if not self._admit(key, result):
                    continue
                ctx = SeriesContext(key, service, None, None, feature["name"], trace_id)
                self._data_series(
                    key,
                    ctx,
                    lambda st, f=feature, n=n_features: K.feature_checks(st, f, self.config, n),  # type: ignore[misc]
                    time_us,
                    result,
                    source,
                    offset,
                    current=feature.get("categories") or {},
                )
            if stats.get("class_counts"):
                key = f"{entity}/__label__"
                ctx = SeriesContext(key, service, None, None, stats.get("label") or "label", trace_id)
                counts = stats["class_counts"]
                self._data_series(
                    key,
                    ctx,
                    lambda st, c=counts: K.label_checks(st, c, self.config),  # type: ignore[misc]
                    time_us,
                    result,
                    source,
                    offset,
                    current=counts,
                )

    def _data_series(
        self,
        key: str,
        ctx: SeriesContext,
        check: Callable[[State], list[tuple[str, str, str, float, float, str]]],
        time_us: int,
        result: ChunkResult,
        source: str,
        offset: int,
        current: dict[str, int],
    ) -> None:
        """Run one stats series' checks and publish two incidents: values never seen before
        (their own series ``KEY/unseen``, so a PSI that an unseen class drives cannot hide them)
        and the worst of the other checks (series ``KEY``)."""
        cfg = self.config

        def work(state: State) -> None:
            problems = check(state)
            unseen = [p for p in problems if p[1] in _UNSEEN_DETECTORS]
            rest = [p for p in problems if p[1] not in _UNSEEN_DETECTORS]
            # Unseen values first: one batch yields both alerts with the same first_seen, and
            # the specific one should come first to whoever reads them in arrival order.
            sub = state.setdefault("unseen", {"incident": None})
            found = _unseen_finding(key, ctx, unseen, state.get("ref") or {}, current, time_us) if unseen else None
            unseen_ctx = replace(ctx, series=f"{key}/unseen")
            self._publish(result, sub, unseen_ctx, (found, 0 if unseen else cfg.policy.resolve_after, time_us))
            worst = _worst_finding(key, rest, time_us)
            self._publish(result, state, ctx, (worst, 0 if rest else cfg.policy.resolve_after, time_us))

        self._with_state(key, source, offset, result, work)


_UNSEEN_DETECTORS = frozenset({"unseen_label", "unseen_category"})


def _worst_finding(key: str, problems: list[tuple[str, str, str, float, float, str]], time_us: int) -> Finding | None:
    """The batch's worst check (critical first, then the largest statistic) as one finding."""
    if not problems:
        return None
    problems = sorted(problems, key=lambda p: (p[2] == "critical", p[3]), reverse=True)
    kind, detector, severity, statistic, threshold, text = problems[0]
    return _check_finding(
        kind,
        detector,
        severity,
        f"{text} in {key.split('/', 1)[1]}",
        time_us,
        statistic,
        threshold,
        evidence=tuple(p[3] for p in problems),
        details={"checks": ",".join(p[1] for p in problems)},
    )


def _unseen_finding(
    key: str,
    ctx: SeriesContext,
    problems: list[tuple[str, str, str, float, float, str]],
    ref: dict[str, Any],
    current: dict[str, int],
    time_us: int,
) -> Finding:
    """Name the values the reference batch never had and how many rows carry them.

    The kernel compared against ``ref["categories"]``; the same comparison here recovers the
    values and their row counts, which the kernel's share alone does not say.
    """
    kind, detector, severity, share, threshold, _ = problems[0]
    known = ref.get("categories") or {}
    values = sorted(k for k, n in current.items() if k not in known and n > 0)
    rows = sum(int(current[k]) for k in values)
    shown = ", ".join(repr(v) for v in values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")
    plural = "s" if len(values) != 1 else ""
    what = f"label value{plural} {shown}" if detector == "unseen_label" else f"value{plural} {shown} of {ctx.feature!r}"
    where = "/".join(key.split("/", 3)[1:3])  # the stage: its names are escaped, a feature's may hold "/"
    return _check_finding(
        kind,
        detector,
        severity,
        f"{what} never seen before in {where} ({rows} rows)",
        time_us,
        share,
        threshold,
        evidence=tuple(float(current[k]) for k in values[:16]),
        details={"values": ",".join(values[:16]), "rows": str(rows), "checks": detector},
    )


def _check_finding(
    category: str,
    detector: str,
    severity: str,
    title: str,
    time_us: int,
    statistic: float,
    threshold: float,
    *,
    evidence: tuple[float, ...],
    details: dict[str, str],
) -> Finding:
    """A batch check's verdict as a finding: no point, no step, no anomaly score, a statistic."""
    return Finding(
        0,
        math.nan,
        statistic,
        math.nan,
        detector,
        title,
        threshold,
        "data",
        severity,
        category=category,
        time_us=time_us,
        statistic=statistic,
        evidence=evidence,
        details=details,
    )
