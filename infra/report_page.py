"""The page of ``aitrace report``: its CSS, its HTML skeleton, the script that draws the charts, and the render.

:func:`render` fills ``@@DATA@@`` and the other slots with a :class:`~aitrace.infra.report_data.ReportData`;
the Python that reads the index (:mod:`aitrace.infra.report`) and the JavaScript that draws it can
each be read on their own.
The script draws every chart of the data island as SVG and records what it drew
(``data-series`` per chart, ``data-charts`` / ``data-errors`` on ``<body>``) for headless checks;
it lives in ``report.js`` beside this module, shipped as package data.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from importlib.resources import files
from typing import Any

import numpy as np
from aitrace.infra.report_data import ReportData, Table

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c0cc}main{padding:10px 28px 40px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}.card span{color:#5b6575;font-size:12px}
section{margin-top:22px}h2{font-size:18px;margin:0 0 6px}.intro{color:#5b6575;margin:0 0 10px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
.chart{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 10px}
.chart h3{font-size:14px;margin:2px 0 4px}.chart .note{font-size:12px;color:#5b6575;margin:2px 0}
.legend{font-size:12px;display:flex;gap:12px;flex-wrap:wrap;margin-top:2px}
.legend i{display:inline-block;width:14px;height:3px;margin-right:4px;vertical-align:middle}
svg text{font-size:11px;fill:#5b6575}.empty{color:#5b6575;font-style:italic}
table{border-collapse:collapse;background:#fff;width:100%;font-size:12.5px}
th,td{border:1px solid #dde1e7;padding:4px 7px;text-align:left;vertical-align:top}th{background:#eef0f4}
p.note{color:#8a5a00}
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title><style>@@CSS@@</style>
<script>
window.__reportErrors = [];
window.addEventListener("error", function (e) { window.__reportErrors.push(String(e.message)); });
</script>
</head>
<body data-rendered="0">
<header><h1>@@TITLE@@</h1><p>generated @@GENERATED@@ by aitrace report</p></header>
<main>
<div class="cards">@@SUMMARY@@</div>@@NOTES@@
<div id="sections"></div>
@@TABLES@@
</main>
<script type="application/json" id="report-data">@@DATA@@</script>
<script>@@SCRIPT@@</script>
</body></html>
"""

# The drawing script is its own file (package data), so it reads as JavaScript.
SCRIPT = files("aitrace.infra").joinpath("report.js").read_text(encoding="utf-8")


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/Inf become null (JSON has neither), numpy scalars become numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def page_data(data: ReportData) -> str:
    """The data island: JSON with ``<``, ``>`` and ``&`` as escapes, so no string can end the element."""
    text = json.dumps(_clean(asdict(data)), allow_nan=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    if not table.rows:
        body = f'<tr><td colspan="{len(table.columns)}" class="empty">{html.escape(table.empty)}</td></tr>'
    else:
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return (
        f'<section id="{html.escape(table.id)}"><h2>{html.escape(table.title)} ({len(table.rows)})</h2>'
        f'<table data-rows="{len(table.rows)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>'
    )


def render(data: ReportData) -> str:
    """The whole page as one string: CSS, data island, drawing script; no external reference."""
    summary = "".join(
        f"<div class='card'><b>{value}</b><span>{html.escape(name)}</span></div>"
        for name, value in data.summary.items()
    )
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in data.notes)
    tables = "".join(_table_html(t) for t in data.tables)
    return (
        TEMPLATE.replace("@@TITLE@@", html.escape(data.title))
        .replace("@@GENERATED@@", html.escape(data.generated_at))
        .replace("@@SUMMARY@@", summary)
        .replace("@@NOTES@@", notes)
        .replace("@@TABLES@@", tables)
        .replace("@@CSS@@", CSS)
        .replace("@@SCRIPT@@", SCRIPT)
        .replace("@@DATA@@", page_data(data))
    )
