"""Demo workload: a batch data pipeline over scikit-learn's wine table, publishing data stats.

The run is one trace; each batch is a sample of the 178 real rows of ``load_wine`` (shipped inside scikit-learn)
and goes through three stages, each one a span and one ``data_stats`` event built with
``aitrace.summarize`` (summaries, never rows):

- ``ingest``: the raw columns and the label counts as they arrive;
- ``clean``: rows with missing values dropped (counted in ``rows_dropped``);
- ``features``: standardized columns (scaler fitted on the first batch) plus a derived ratio.

From ``drift_from_batch`` on, a batch carries what upstream breakage looks like: one feature
shifted by several standard deviations, missing values in another, and a label value never
seen before. The detectors must flag those batches and only those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.datasets import load_wine

Summarize = Callable[..., list[dict[str, Any]]]

LABEL = "target"
DATASET = "wine"


class PipelineClient(Protocol):
    """The part of the producer client a data pipeline uses."""

    def data_stats(self, **fields: Any) -> Any: ...

    def span(self, name: str, **attributes: Any) -> AbstractContextManager[Any]: ...

    def log(self, level: str, message: str, **attributes: Any) -> Any: ...


@dataclass(frozen=True)
class PipelineConfig:
    """Shape of the run; the defaults give five clean reference batches, then two broken ones."""

    batches: int = 7
    rows_per_batch: int = 400
    seed: int = 7
    drift_from_batch: int | None = 5
    shifted_feature: str = "alcohol"
    shift_in_std: float = 3.0
    missing_feature: str = "magnesium"
    missing_fraction: float = 0.15
    unseen_label: str = "3"
    unseen_label_rows: int = 12


@dataclass
class BatchOutcome:
    """What one batch looked like after each stage."""

    batch: str
    drifted: bool
    rows_in: int
    rows_dropped: int
    class_counts: dict[str, int]


@dataclass
class PipelineResult:
    batches: list[BatchOutcome] = field(default_factory=list)
    shifted_feature: str = ""
    drifted_batches: list[str] = field(default_factory=list)


def load_table() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The wine table as float columns with identifier-safe names, and its labels as strings."""
    wine = load_wine()
    names = [name.replace("/", "_") for name in wine.feature_names]
    columns = {name: np.asarray(wine.data[:, i], dtype=np.float64) for i, name in enumerate(names)}
    return columns, np.asarray([str(v) for v in wine.target], dtype=object)


def _sample_batch(
    columns: Mapping[str, np.ndarray], labels: np.ndarray, rows: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    index = rng.integers(0, len(labels), rows)
    return {name: values[index].copy() for name, values in columns.items()}, labels[index].copy()


def _break_batch(
    batch: dict[str, np.ndarray],
    labels: np.ndarray,
    reference_std: Mapping[str, float],
    config: PipelineConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Apply the upstream failures in place; returns the (new) label array."""
    batch[config.shifted_feature] += config.shift_in_std * reference_std[config.shifted_feature]
    rows = len(labels)
    missing = rng.choice(rows, round(config.missing_fraction * rows), replace=False)
    batch[config.missing_feature][missing] = np.nan
    labels = labels.copy()
    labels[rng.choice(rows, min(rows, config.unseen_label_rows), replace=False)] = config.unseen_label
    return labels


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels.astype(str), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


class Standardizer:
    """Column-wise z-scores with the mean/std of the first batch it sees (a fitted pipeline step)."""

    def __init__(self) -> None:
        self.mean: dict[str, float] = {}
        self.std: dict[str, float] = {}

    def fit(self, batch: Mapping[str, np.ndarray]) -> None:
        self.mean = {k: float(np.nanmean(v)) for k, v in batch.items()}
        self.std = {k: float(np.nanstd(v)) or 1.0 for k, v in batch.items()}

    def transform(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: (v - self.mean[k]) / self.std[k] for k, v in batch.items()}


class PipelineStages:
    """The three stages; each emits one ``data_stats`` event for the batch inside its own span."""

    def __init__(self, client: PipelineClient, summarize: Summarize) -> None:
        self.client = client
        self.summarize = summarize
        self.scaler = Standardizer()

    def _emit(
        self, stage: str, batch_name: str, columns: Mapping[str, np.ndarray], labels: np.ndarray, rows_dropped: int = 0
    ) -> None:
        fields: dict[str, Any] = {
            "stage": stage,
            "dataset": DATASET,
            "features": self.summarize(dict(columns)),
            "row_count": len(labels),
            "class_counts": _class_counts(labels),
            "label": LABEL,
            "batch": batch_name,
        }
        if rows_dropped:
            fields["rows_dropped"] = rows_dropped
        self.client.data_stats(**fields)

    def ingest(self, batch_name: str, columns: dict[str, np.ndarray], labels: np.ndarray) -> None:
        with self.client.span("ingest", batch=batch_name, rows=len(labels)):
            self._emit("ingest", batch_name, columns, labels)

    def clean(
        self, batch_name: str, columns: dict[str, np.ndarray], labels: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
        with self.client.span("clean", batch=batch_name):
            keep = np.all([~np.isnan(v) for v in columns.values()], axis=0)
            dropped = int((~keep).sum())
            cleaned = {k: v[keep] for k, v in columns.items()}
            labels = labels[keep]
            if dropped:
                self.client.log(
                    "warning", f"clean: dropped {dropped} rows with missing values", batch=batch_name, dropped=dropped
                )
            self._emit("clean", batch_name, cleaned, labels, rows_dropped=dropped)
        return cleaned, labels, dropped

    def features(self, batch_name: str, columns: dict[str, np.ndarray], labels: np.ndarray) -> None:
        with self.client.span("features", batch=batch_name):
            if not self.scaler.mean:
                self.scaler.fit(columns)
            out = self.scaler.transform(columns)
            # Guard against a zero denominator the way a real feature job would: no inf in the output.
            phenols = np.where(columns["total_phenols"] == 0, np.nan, columns["total_phenols"])
            out["flavanoid_ratio"] = columns["flavanoids"] / phenols
            self._emit("features", batch_name, out, labels)


def batches(config: PipelineConfig) -> Iterator[tuple[str, bool, dict[str, np.ndarray], np.ndarray]]:
    """Yield ``(name, drifted, columns, labels)`` for every batch of the run, reproducibly."""
    columns, labels = load_table()
    reference_std = {k: float(np.std(v)) for k, v in columns.items()}
    if config.shifted_feature not in columns or config.missing_feature not in columns:
        raise ValueError(f"unknown feature in config; the wine table has {sorted(columns)}")
    rng = np.random.default_rng(config.seed)
    for i in range(config.batches):
        batch, batch_labels = _sample_batch(columns, labels, config.rows_per_batch, rng)
        drifted = config.drift_from_batch is not None and i >= config.drift_from_batch
        if drifted:
            batch_labels = _break_batch(batch, batch_labels, reference_std, config, rng)
        yield f"b{i}", drifted, batch, batch_labels


def run_pipeline(client: PipelineClient, config: PipelineConfig, summarize: Summarize | None = None) -> PipelineResult:
    """Push every batch through ingest -> clean -> features.

    The run is one trace (a root span, one child span per batch): its events share one Kafka key,
    so the processors see the batches in order and the first batch is the detectors' reference.
    """
    if summarize is None:
        import aitrace

        summarize = aitrace.summarize
    stages = PipelineStages(client, summarize)
    result = PipelineResult(shifted_feature=config.shifted_feature)
    with client.span("pipeline.run", dataset=DATASET, batches=config.batches):
        for name, drifted, columns, labels in batches(config):
            with client.span("pipeline.batch", batch=name, dataset=DATASET):
                stages.ingest(name, columns, labels)
                cleaned, kept_labels, dropped = stages.clean(name, columns, labels)
                stages.features(name, cleaned, kept_labels)
            result.batches.append(BatchOutcome(name, drifted, len(labels), dropped, _class_counts(labels)))
            if drifted:
                result.drifted_batches.append(name)
    return result
