"""The benchmark suite in one command: every figure beside its baseline from the same run.

    .venv/bin/python -m bench --quick        # a few minutes on 2 cores
    .venv/bin/python -m bench                # the full sizes (tens of minutes)
    .venv/bin/python -m bench --quick --parts detect,sink

Parts: producer (the client per event kind beside raw ``produce()``, stdlib logging, structlog,
OpenTelemetry, TensorBoard, MLflow and W&B offline where they install), worker (``aitrace worker
--no-index`` beside raw consume and a count-only Faust agent), sink (the BulkIndexer beside a raw
``_bulk``), detect (beside numpy, river and scipy), latency (produce to searchable, p50/p99/p99.9,
at a fixed rate). It writes ``bench/results/<date>-<machine>.json``, a ratio chart beside it
(``.svg``) and its Markdown table (``.md``), and prints the table; a library that is not installed
is one ``skipped`` line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # one copy of suite, as the parts import it

import suite
import suite_parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="bounded sizes: a few minutes on 2 cores")
    parser.add_argument("--parts", default="", help="comma-separated subset of producer,worker,sink,detect,latency")
    parser.add_argument("--out", type=Path, default=suite.RESULTS, help="folder for the JSON and the SVG")
    args = parser.parse_args(argv)
    services = suite_parts.Services()
    parts = suite_parts.all_parts(services)
    chosen = [p for p in args.parts.split(",") if p] or list(parts)
    unknown = set(chosen) - set(parts)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; known: {','.join(parts)}")
    try:
        run = suite.run_parts({p: parts[p] for p in chosen}, "quick" if args.quick else "full")
    finally:
        services.stop()
    json_path, svg_path = suite.write(run, args.out)
    print("\n" + suite.markdown(run))
    print(f"wrote {json_path} and {svg_path} ({run.seconds['total']:.0f} s)")
    return 1 if any(s.status == "failed" for s in run.skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
