"""The benchmark suite's plumbing: figures beside their baselines, the machine, the JSON, the SVG, the table.

A part is a callable ``(scale) -> list[Figure | Skip]`` (``bench/suite_parts.py`` has the real ones).
:func:`run_parts` runs each in turn; a part that raises becomes one ``Skip`` line with the error, so
one broken or missing piece never loses the rest of a run. :func:`write` puts the run in
``bench/results/<YYYY-MM-DD>-<machine>.json`` with a bar chart of every ratio beside it (a
hand-written SVG: the suite adds no dependency).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import re
import socket
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LIBRARIES = (
    "aitrace", "numpy", "numba", "scipy", "river", "orjson", "faust-streaming", "confluent-kafka",
    "elasticsearch", "structlog", "opentelemetry-sdk", "torch", "tensorboard", "mlflow", "wandb",
)  # fmt: skip


@dataclass
class Figure:
    """One measured figure and, when it has one, its baseline from the same run.

    ``ratio`` is how many times better aitrace does than the baseline (> 1: better), whichever
    way the unit points; a part may pass its own (a median of per-repeat ratios, say).
    """

    part: str
    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    higher_is_better: bool = True
    note: str = ""
    ratio: float | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline_value and self.value:
            better, worse = (
                (self.value, self.baseline_value) if self.higher_is_better else (self.baseline_value, self.value)
            )
            self.ratio = better / worse


@dataclass
class Skip:
    """A figure or part not measured: a library not installed (``skipped``) or an error (``failed``)."""

    part: str
    name: str
    reason: str
    status: str = "skipped"

    def line(self) -> str:
        return f"{self.status}: {self.part} / {self.name}: {self.reason}"


Result = Figure | Skip
Part = Callable[[str], list[Result]]


@dataclass
class Run:
    mode: str
    machine: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "mode": self.mode,
            "machine": self.machine,
            "seconds": self.seconds,
            "figures": [asdict(f) for f in self.figures],
            "skipped": [asdict(s) for s in self.skipped],
        }


def missing(part: str, name: str, module: str) -> Skip | None:
    """A ``Skip`` when ``module`` cannot be imported (an optional baseline that did not install)."""
    try:
        __import__(module)
    except ImportError as exc:
        return Skip(part, name, f"{module} not installed ({exc})")
    except Exception as exc:  # an install broken at import time (a clashing protobuf, say) is not there either
        return Skip(part, name, f"{module} does not import: {type(exc).__name__}: {str(exc).strip()[:200]}")
    return None


def failure(part: str, name: str, exc: BaseException) -> Skip:
    """An error as one line: its type, the first line of its message, where it was raised."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    text = str(exc).strip()
    reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    return Skip(part, name, reason + (f" (at {Path(where.filename).name}:{where.lineno})" if where else ""), "failed")


def run_parts(parts: dict[str, Part], scale: str, echo: Callable[[str], None] = print) -> Run:
    """Every part in turn; a failure is one line in the run, not the end of it."""
    run = Run(scale, machine_info())
    start = time.perf_counter()
    for name, part in parts.items():
        t = time.perf_counter()
        echo(f"== {name} ({scale})")
        try:
            results = part(scale)
        except Exception as exc:  # one broken part must not lose the others' figures
            results = [failure(name, "*", exc)]
        run.seconds[name] = round(time.perf_counter() - t, 1)
        for r in results:
            if isinstance(r, Figure):
                run.figures.append(r)
            else:
                run.skipped.append(r)
                echo(r.line())
    run.seconds["total"] = round(time.perf_counter() - start, 1)
    run.machine["load_average_end"] = list(os.getloadavg())
    return run


# ---------------------------------------------------------------- the machine


def machine_info() -> dict[str, Any]:
    host = socket.gethostname()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hostname": host,
        "machine_id": _machine_id(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "git": _git(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return round(kib / 2**20, 1)


def _machine_id() -> str | None:
    try:
        return Path("/etc/machine-id").read_text().strip()[:12] or None
    except OSError:
        return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
        return out.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status),
    }


def machine_name(machine: dict[str, Any]) -> str:
    """The file name's machine part: the host name, or the machine id where the host has none."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", machine.get("hostname") or "").strip("-.")
    return name or machine.get("machine_id") or "unknown"


# ---------------------------------------------------------------- output


def write(run: Run, folder: Path = RESULTS) -> tuple[Path, Path]:
    """The run's JSON, its ratio chart and its table (.md), named by date and machine; returns the first two."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{run.machine['date'][:10]}-{machine_name(run.machine)}"
    json_path, svg_path = folder / f"{stem}.json", folder / f"{stem}.svg"
    json_path.write_text(json.dumps(run.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    svg_path.write_text(svg(run.figures, f"ratio to baseline (> 1: aitrace better), {run.mode} run, {stem}"))
    (folder / f"{stem}.md").write_text(markdown(run), encoding="utf-8")
    return json_path, svg_path


def fmt(value: float | None, unit: str) -> str:
    """A figure as people read it: 1.2 M events/s, 3.4 µs/event, 1,430 ms."""
    if value is None:
        return ""
    if unit.endswith("/s"):
        for div, suffix in ((1e6, " M"), (1e3, " k")):
            if abs(value) >= div:
                return f"{value / div:.3g}{suffix} {unit}"
    return f"{value:,.0f} {unit}" if abs(value) >= 1000 else f"{value:.3g} {unit}"


def times(ratio: float) -> str:
    """A ratio with the digits that matter: 2,290x, 3.27x, 0.0029x."""
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def markdown(run: Run) -> str:
    """The table of every figure beside its baseline, the machine above it, skipped parts below."""
    m = run.machine
    git = m["git"]
    head = (
        f"{run.mode} run, {m['date']}, {m['hostname']}: {m['cpu_model']}, {m['cores']} cores, {m['ram_gib']} GiB, "
        f"Python {m['python']}, git {(git['commit'] or '?')[:10]}{' (dirty)' if git['dirty'] else ''}; "
        f"load average {m['load_average_start'][0]:.1f} at the start, "
        f"{m.get('load_average_end', [0])[0]:.1f} at the end"
    )
    lines = [
        head,
        "",
        "| part | measurement | aitrace | baseline (same run) | ratio | note |",
        "|---|---|---|---|---|---|",
    ]
    for f in run.figures:
        base = f"{f.baseline}: {fmt(f.baseline_value, f.unit)}" if f.baseline else ""
        ratio = times(f.ratio) if f.ratio is not None else ""
        lines.append(f"| {f.part} | {f.name} | {fmt(f.value, f.unit)} | {base} | {ratio} | {f.note} |")
    if run.skipped:
        lines += ["", *(f"- {s.line()}" for s in run.skipped)]
    lines += ["", "ratio: how many times better aitrace does than the baseline (> 1 better, < 1 worse)."]
    return "\n".join(lines) + "\n"


def svg(figures: Sequence[Figure], title: str) -> str:
    """Horizontal bars of every ratio on a log scale around 1x (green: aitrace better, red: worse)."""
    rows = [f for f in figures if f.ratio]
    label_w, plot_w, row_h, top = 480, 360, 18, 40
    lo = min([0.1, *(f.ratio for f in rows if f.ratio)])
    hi = max([10.0, *(f.ratio for f in rows if f.ratio)])
    span = math.log10(hi) - math.log10(lo)

    def x(r: float) -> float:
        return label_w + plot_w * (math.log10(r) - math.log10(lo)) / span

    height = top + row_h * len(rows) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 70}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="8" y="18" font-size="13">{escape(title)}</text>',
    ]
    for i, f in enumerate(rows):
        y, r = top + i * row_h, f.ratio or 1.0
        left, right = sorted((x(1.0), x(r)))
        colour = "#3a7d44" if r >= 1 else "#b23a48"
        label = f"{f.part}: {f.name} vs {f.baseline}"
        out.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{escape(label[:78])}</text>')
        width = max(right - left, 1)
        out.append(f'<rect x="{left:.1f}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" fill="{colour}"/>')
        out.append(f'<text x="{right + 4:.1f}" y="{y + 12}">{times(r)}</text>')
    bottom = top + row_h * len(rows)
    for tick in (t for t in (0.01, 0.1, 1, 10, 100, 1000) if lo <= t <= hi):
        at, stroke = x(tick), 1.5 if tick == 1 else 0.5
        out.append(
            f'<line x1="{at:.1f}" y1="{top - 4}" x2="{at:.1f}" y2="{bottom}" stroke="#888" stroke-width="{stroke}"/>'
        )
        out.append(f'<text x="{x(tick):.1f}" y="{bottom + 14}" text-anchor="middle">{tick:g}x</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
