"""The page of ``aitrace report``: its CSS, its HTML skeleton and the script that draws the charts.

Kept apart from :mod:`aitrace.infra.report` (which fills ``@@DATA@@`` and the other slots) so the
Python that reads the index and the JavaScript that draws it can each be read on their own.
The script draws every chart of the data island as SVG and records what it drew
(``data-series`` per chart, ``data-charts`` / ``data-errors`` on ``<body>``) for headless checks;
it lives in ``report.js`` beside this module, shipped as package data.
"""

from importlib.resources import files

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
