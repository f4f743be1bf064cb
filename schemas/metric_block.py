"""One decoded ``aitrace.MetricBlock``: the columnar points of a training job, as NumPy arrays.

Both of the worker's decoders (the array fast path and fastavro) return this one type, so
every consumer reads ``block.steps`` (int64), ``block.times`` (int64, microseconds),
``block.epochs`` (int64, empty when none were sent) and ``block.series`` (name -> float64
values, in the order sent) without coercing. Construction does not validate lengths or
ids: the worker's decoder does (``aitrace.processors.decode``) and rejects what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class MetricBlock:
    """The fields of ``schemas/aitrace.MetricBlock.avsc``, with the columns as arrays."""

    block_id: str
    trace_id: str
    span_id: str
    service: str
    steps: np.ndarray
    times: np.ndarray
    epochs: np.ndarray
    series: dict[str, np.ndarray]
    parent_span_id: str | None = None
    service_version: str | None = None
    environment: str | None = None
    host: str | None = None
    pid: int | None = None
    run_id: str | None = None
    split: str | None = None

    def __len__(self) -> int:
        """Points per series: one per step."""
        return len(self.steps)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MetricBlock:
        """From a block as fastavro (or a producer) writes it: lists, ``series`` as ``[{name, values}]``.

        Raises ValueError when two series share a name (the block cannot be keyed by name).
        """
        series: dict[str, np.ndarray] = {}
        for s in record["series"]:
            if s["name"] in series:
                raise ValueError(f"series {s['name']!r} appears twice")
            series[s["name"]] = np.asarray(s["values"], dtype=np.float64)
        return cls(
            block_id=record["block_id"],
            trace_id=record["trace_id"],
            span_id=record["span_id"],
            service=record["service"],
            steps=np.asarray(record["steps"], dtype=np.int64),
            times=np.asarray(record["times"], dtype=np.int64),
            epochs=np.asarray(record.get("epochs") or [], dtype=np.int64),
            series=series,
            parent_span_id=record.get("parent_span_id"),
            service_version=record.get("service_version"),
            environment=record.get("environment"),
            host=record.get("host"),
            pid=record.get("pid"),
            run_id=record.get("run_id"),
            split=record.get("split"),
        )

    def __eq__(self, other: object) -> bool:
        """Field by field, arrays by value and dtype (NaN equals NaN: it is data)."""
        if not isinstance(other, MetricBlock):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "series":
                if list(a) != list(b) or not all(_same(a[k], b[k]) for k in a):
                    return False
            elif isinstance(a, np.ndarray):
                if not _same(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # arrays inside: not hashable, as a dict is not


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


__all__ = ["MetricBlock"]
