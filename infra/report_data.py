"""The data of ``aitrace report``: charts, series, tables, as the page's script reads them.

:mod:`aitrace.infra.report` builds a :class:`ReportData` from the index and
:mod:`aitrace.infra.report_page` embeds it in the page as JSON (``dataclasses.asdict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aitrace.infra.report_axis import Clip


@dataclass
class Series:
    """One line: ``points`` are ``[x, y]``; ``band`` (optional) ``[x, low, high]`` for rollups."""

    name: str
    points: list[list[float | None]]
    band: list[list[float | None]] = field(default_factory=list)
    nonfinite: list[list[Any]] = field(default_factory=list)  # [x, "nan" | "inf" | "-inf"]


@dataclass
class Marker:
    """A vertical mark at ``x`` (a flagged step or an alert's time) with a label."""

    x: float
    label: str
    severity: str = "warning"
    y: float | None = None  # the flagged value, ringed on its curve when known


@dataclass
class Chart:
    """One chart; ``x_kind`` is ``step``, ``time`` (epoch ms) or ``value`` (a histogram axis)."""

    id: str
    title: str
    x_kind: str
    y_label: str
    series: list[Series]
    markers: list[Marker] = field(default_factory=list)
    log_y: bool = False
    steps: bool = False  # draw as a step function (histograms)
    note: str = ""
    y_limits: list[float] | None = None  # [low, high] when some points lie above the axis (see report_axis)
    clips: list[Clip] = field(default_factory=list)  # the series that leave the axis


@dataclass
class Section:
    id: str
    title: str
    intro: str
    charts: list[Chart] = field(default_factory=list)
    empty: str = ""


@dataclass
class Table:
    id: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    empty: str


@dataclass
class ReportData:
    title: str
    generated_at: str
    scope: str
    sections: list[Section]
    tables: list[Table]
    summary: dict[str, int]
    notes: list[str] = field(default_factory=list)
