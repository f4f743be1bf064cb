"""The drift charts of ``aitrace report``: the reference distribution of a flagged feature against the current one."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from aitrace.detect.ks import ks_2samp
from aitrace.infra.report_data import Chart, Series
from aitrace.infra.report_fetch import Doc, _ms
from aitrace.sinks.hit_rows import get


@dataclass
class Distribution:
    """A density as a step function: ``edges`` (n+1) and ``density`` (n)."""

    edges: list[float]
    density: list[float]
    label: str


def histogram_density(edges: Sequence[float | None], counts: Sequence[int]) -> Distribution | None:
    """Counts over bins -> density (area 1); None when the histogram is unusable."""
    if len(edges) != len(counts) + 1 or not counts or any(e is None for e in edges):
        return None
    e = np.asarray(edges, dtype=float)
    c = np.asarray(counts, dtype=float)
    widths = np.diff(e)
    total = c.sum()
    if total <= 0 or np.any(widths < 0):
        return None
    density = np.where(widths > 0, c / (total * np.where(widths > 0, widths, 1)), 0.0)
    return Distribution(e.tolist(), density.tolist(), "")


def quantile_density(quantiles: dict[str, float | None]) -> Distribution | None:
    """A density from quantiles: the mass between two levels spread over their value range."""
    pairs = sorted((float(k), v) for k, v in quantiles.items() if v is not None and _is_level(k))
    if len(pairs) < 2:
        return None
    edges, density = [pairs[0][1]], []
    for (l0, v0), (l1, v1) in itertools.pairwise(pairs):
        if v1 <= v0:
            continue
        density.append((l1 - l0) / (v1 - v0))
        edges.append(v1)
    if not density:
        return None
    return Distribution([float(e) for e in edges], density, "")


def _is_level(key: str) -> bool:
    try:
        return 0.0 <= float(key) <= 1.0
    except ValueError:
        return False


def sample_density(values: Sequence[float], edges: np.ndarray) -> Distribution:
    counts, _ = np.histogram(values, bins=edges)
    dist = histogram_density(edges.tolist(), counts.tolist())
    return dist or Distribution(edges.tolist(), [0.0] * (len(edges) - 1), "")


def _feature_stats(doc: Doc, feature: str) -> Doc | None:
    for f in get(doc, "aitrace.data.features", []) or []:
        if f.get("name") == feature:
            return f
    return None


def _stats_density(stats: Doc) -> Distribution | None:
    detail = stats.get("detail") or {}
    dist = histogram_density(detail.get("histogram_edges") or [], detail.get("histogram_counts") or [])
    return dist or quantile_density(detail.get("quantiles") or {})


def _statistic_note(alert: Doc) -> str:
    a = get(alert, "aitrace.alert", {})
    parts = [f"detector {a.get('detector')}"]
    details = a.get("details") or {}
    test = details.get("test") or details.get("statistic_name")
    if a.get("statistic") is not None:
        parts.append(f"{test or 'statistic'} = {a['statistic']:.4g}")
    if a.get("pvalue") is not None:
        parts.append(f"p = {a['pvalue']:.3g}")
    if a.get("threshold") is not None:
        parts.append(f"threshold {a['threshold']:.4g}")
    if a.get("score") is not None and a.get("statistic") is None:
        parts.append(f"score {a['score']:.3g}")
    return ", ".join(parts)


def data_drift_chart(alert: Doc, data_docs: Sequence[Doc]) -> Chart | None:
    """Reference (first batch seen) vs current (the flagged batch) for one data-stats drift alert."""
    feature = get(alert, "aitrace.alert.feature")
    details = get(alert, "aitrace.alert.details", {}) or {}
    candidates = [d for d in data_docs if _feature_stats(d, feature) is not None]
    stage = details.get("stage") or next(
        (s for s in ("ingest", "clean", "features") if any(get(d, "aitrace.data.stage") == s for d in candidates)),
        None,
    )
    if stage is not None:
        candidates = [d for d in candidates if get(d, "aitrace.data.stage") == stage] or candidates
    if dataset := details.get("dataset"):
        candidates = [d for d in candidates if get(d, "aitrace.data.dataset") == dataset] or candidates
    if len(candidates) < 2:
        return None
    reference_doc = candidates[0]
    batch = details.get("batch")
    flagged_at = _ms(get(alert, "aitrace.alert.last_seen")) or _ms(get(alert, "@timestamp")) or math.inf
    current_doc = next((d for d in candidates if batch and get(d, "aitrace.data.batch") == batch), None) or next(
        (d for d in reversed(candidates) if (_ms(get(d, "@timestamp")) or 0) <= flagged_at + 60_000), candidates[-1]
    )
    series = []
    for doc, role in ((reference_doc, "reference"), (current_doc, "current")):
        dist = _stats_density(_feature_stats(doc, feature) or {})
        if dist is None:
            return None
        series.append(_dist_series(dist, f"{role} (batch {get(doc, 'aitrace.data.batch') or '?'})"))
    where = f"{get(current_doc, 'aitrace.data.dataset')} / {get(current_doc, 'aitrace.data.stage')}"
    return Chart(
        id=f"drift-data-{feature}-{stage}",
        title=f"{feature} ({where})",
        x_kind="value",
        y_label="density",
        series=series,
        steps=True,
        note=_statistic_note(alert),
    )


def _dist_series(dist: Distribution, name: str) -> Series:
    """A step function as points: (edge_i, density_i) ... closed at the last edge."""
    points: list[list[float | None]] = [[dist.edges[0], 0.0]]  # rise from the baseline...
    points += [[e, d] for e, d in zip(dist.edges, dist.density, strict=False)]
    points.append([dist.edges[-1], 0.0])  # ...and fall back to it after the last bin
    return Series(name, points)


def inference_drift_chart(alert: Doc, inference_docs: Sequence[Doc]) -> Chart | None:
    """Reference vs current inputs of one model feature, from the inference records themselves."""
    feature = get(alert, "aitrace.alert.feature")
    model = get(alert, "aitrace.alert.model")
    timed = [
        (t, float(v))
        for d in inference_docs
        if (model is None or get(d, "aitrace.inference.model") == model)
        and (v := (get(d, "aitrace.inference.features", {}) or {}).get(feature)) is not None
        and (t := _ms(get(d, "@timestamp"))) is not None
    ]
    if len(timed) < 10:
        return None
    timed.sort()
    first_seen = _ms(get(alert, "@timestamp")) or timed[-1][0]
    before = [v for t, v in timed if t < first_seen]
    after = [v for t, v in timed if t >= first_seen]
    # The reference is the early part of the traffic: the window just before detection is already drifted.
    reference = before[: max(1, len(before) * 2 // 5)] if before else [v for _, v in timed[: len(timed) // 3]]
    current = after if len(after) >= 10 else [v for _, v in timed[-max(10, len(timed) // 5) :]]
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins=30)
    series = [
        _dist_series(sample_density(reference, edges), f"reference ({len(reference)} requests)"),
        _dist_series(sample_density(current, edges), f"current ({len(current)} requests)"),
    ]
    # D only: the asymptotic method skips the exact p-value, which the note does not show.
    d, _ = ks_2samp(reference, current, method="asymp")
    note = f"{_statistic_note(alert)}; KS D of the drawn samples = {d:.3f}"
    return Chart(
        id=f"drift-model-{model}-{feature}",
        title=f"{feature} (model {model})",
        x_kind="value",
        y_label="density",
        series=series,
        steps=True,
        note=note,
    )
