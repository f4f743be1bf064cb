"""The ``aitrace`` command line.

Each subcommand lives in the module that owns its work; this file only routes.
A module named here defines ``add_arguments(name, parser)`` and ``run(name, args) -> int``.
Only the chosen subcommand's module is imported, so ``aitrace status`` never pays
for Faust, Numba or PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("aitrace.infra.stack", "start the embedded stack (Tansu + osmem-server) on 127.0.0.1"),
    "down": ("aitrace.infra.stack", "stop exactly what `aitrace up` started"),
    "status": ("aitrace.infra.stack", "show what runs and where"),
    "demo": ("aitrace.infra.demo", "run the whole loop on the embedded stack with real workloads"),
    "worker": ("aitrace.processors.worker", "run a processor worker (Faust)"),
    "setup": ("aitrace.sinks.setup", "install index templates (and ILM) and import Kibana saved objects"),
    "search": ("aitrace.sinks.query", "search indexed events, traces and alerts"),
    "trace": ("aitrace.sinks.query", "show one assembled trace as a tree with its events and alerts"),
    "alerts": ("aitrace.sinks.alerts", "tail the alerts topic, or forward alerts to a webhook"),
    "backtest": ("aitrace.detect.backtest", "run the detectors over a CSV file and print flagged points"),
    "report": ("aitrace.infra.report", "write a self-contained HTML report with plots"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="aitrace",
        description="Logging and debugging pipeline for AI systems.",
        epilog=f"commands:\n{lines}\n\nRun `aitrace COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="aitrace COMMAND [options]",
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        if argv and argv[0] not in {"-h", "--help"}:
            parser.print_usage(sys.stderr)
            print(f"aitrace: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    module_name, help_ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"aitrace {name}: cannot load {module_name}: {exc}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog=f"aitrace {name}", description=help_)
    module.add_arguments(name, parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(name, args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
