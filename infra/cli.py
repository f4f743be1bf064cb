"""The ``aitrace`` command line.

Each subcommand lives in the module that owns its work; this file only routes.
A module named here defines ``add_arguments(name, parser)`` and ``run(name, args) -> int``.
Only the chosen subcommand's module is imported, so ``aitrace status`` never pays
for Faust, Numba or PyTorch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from aitrace.sinks.terminal import StdoutClosed, inert

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("aitrace.infra.stack", "start the embedded stack (Tansu + osmem-server) on 127.0.0.1"),
    "down": ("aitrace.infra.stack", "stop exactly what `aitrace up` started"),
    "status": ("aitrace.infra.stack", "show what runs and where"),
    "demo": ("aitrace.infra.demo", "run the whole loop on the embedded stack with real workloads"),
    "worker": ("aitrace.processors.worker", "run a processor worker (Faust)"),
    "setup": ("aitrace.sinks.setup", "install index templates (and ILM) and import Kibana saved objects"),
    "search": ("aitrace.sinks.query_cli", "search indexed events, traces and alerts"),
    "trace": ("aitrace.sinks.query_cli", "show one assembled trace as a tree with its events and alerts"),
    "alerts": ("aitrace.sinks.alerts_cli", "tail the alerts topic, or forward alerts to a webhook"),
    "backtest": ("aitrace.detect.backtest", "run the detectors over a CSV file and print flagged points"),
    "report": ("aitrace.infra.report", "write a self-contained HTML report with plots"),
    "compare": ("aitrace.infra.compare", "training runs side by side: metrics, status, alerts, config differences"),
}

# `pip install aitrace` is the producer library; a command that needs more names the extra.
# Top-level module -> the extra that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    "faust": "worker",
    "mode": "worker",
    "aiokafka": "worker",
    "numba": "worker",
    "llvmlite": "worker",
    "scipy": "worker",
    "elasticsearch": "worker",
    "elastic_transport": "worker",
    "urllib3": "worker",  # elasticsearch's transport
    "torch": "demo",
    "sklearn": "demo",
    "uvicorn": "demo",
    "starlette": "demo",
}


def missing_extra(exc: ImportError) -> str | None:
    """The extra that would install the module ``exc`` found missing, or None (a bug, not an extra)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    return EXTRA_OF_MODULE.get(exc.name.partition(".")[0])


# Commands that need more than one extra: the message names them all at once.
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {"demo": ("worker", "embedded", "demo")}


def needs_extra_message(command: str, extra: str) -> str:
    """``aitrace worker needs the worker extra: pip install 'aitrace[worker]'``."""
    extras = COMMAND_EXTRAS.get(command, ())
    if extra not in extras:
        extras = (extra,)
    names = extras[0] if len(extras) == 1 else f"{', '.join(extras[:-1])} and {extras[-1]}"
    noun = "extra" if len(extras) == 1 else "extras"
    return f"aitrace {command} needs the {names} {noun}: pip install 'aitrace[{','.join(extras)}]'"


def _needs_extra(name: str, extra: str) -> int:
    print(needs_extra_message(name, extra), file=sys.stderr)
    return 1


_SECRET_ENV_RE = re.compile(r"^AITRACE_.*(PASSWORD|API_KEY|SECRET|TOKEN)", re.IGNORECASE)
_URL_PASSWORD_RE = re.compile(r"[a-zA-Z][\w+.-]*://[^/@:\s]*:([^/@\s]+)@")
_MIN_SECRET_LEN = 3  # shorter values would garble ordinary output; mask_url still covers URLs


def known_secrets(argv: Iterable[str], env: dict[str, str] | None = None) -> list[str]:
    """Passwords and keys from ``AITRACE_*`` settings and from user-info of URLs in env or argv."""
    env = dict(os.environ if env is None else env)
    found = [v for k, v in env.items() if _SECRET_ENV_RE.match(k)]
    for text in [*env.values(), *argv]:
        found.extend(_URL_PASSWORD_RE.findall(text))
    return sorted({s for s in found if len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with URL passwords and every known secret replaced by ``***``."""
    from aitrace.producers.config import mask_url

    text = mask_url(text)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _ScrubbingStream:
    """A text stream that scrubs secrets before they reach the real one.

    The last line of defence: a client exception, a traceback or a third-party log line
    that quotes a URL or a header still never shows a password. Not an ``io.TextIOBase``:
    its defaults (``isatty() -> False``, ``encoding = None``, no ``fileno``) would hide the
    real stream's, and ``--color auto`` or subprocesses rely on them.
    """

    def __init__(self, inner: Any, secrets: list[str], escape: bool = True) -> None:
        self._inner = inner
        self._secrets = secrets
        self._escape = escape  # terminal controls written as escapes (sinks.terminal.inert)

    def write(self, text: str) -> int:
        self._inner.write(scrub(inert(text) if self._escape else text, self._secrets))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ScrubbingStdout(_ScrubbingStream):
    """stdout: a write to a pipe whose reader left raises :class:`StdoutClosed`."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError as exc:
            raise StdoutClosed(*exc.args) from None

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError as exc:
            raise StdoutClosed(*exc.args) from None


@contextlib.contextmanager
def scrubbed_output(argv: list[str]) -> Iterator[None]:
    """While a command runs, stdout, stderr and log records never carry a secret."""
    secrets = known_secrets(argv)
    out, err = sys.stdout, sys.stderr
    # what the worker writes is its own logs and banner (Faust's, coloured on a terminal), as is the stack's and
    # the demo's stderr; elsewhere data read back from the topics and the index reaches the terminal
    worker, logs = argv[:1] == ["worker"], argv[:1] in (["worker"], ["up"], ["demo"])
    sys.stdout = _ScrubbingStdout(out, secrets, escape=not worker)
    sys.stderr = _ScrubbingStream(err, secrets, escape=not logs)
    old_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        # The factory sees every record, also those of handlers writing to files.
        return _scrub_record(old_factory(*args, **kwargs), secrets)

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(old_factory)
        sys.stdout, sys.stderr = out, err


def _scrub_record(record: logging.LogRecord, secrets: list[str]) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        return record  # a malformed record: logging reports it itself
    clean = scrub(message, secrets)
    if clean != message:  # untouched otherwise: Faust/mode format some records again later, from msg and args
        record.msg, record.args = clean, ()
    return record


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="aitrace",
        description="Logging and debugging pipeline for AI systems.",
        epilog=f"commands:\n{lines}\n\nRun `aitrace COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="aitrace COMMAND [options]",
    )
    # Listed for --help only: _main answers -V itself (this parser never parses a command line).
    parser.add_argument("-V", "--version", action="store_true", help="print the installed version and exit")
    return parser


def version() -> str:
    """The installed package's version (``unknown`` when run from a source tree that was never installed)."""
    try:
        return importlib.metadata.version("aitrace")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with scrubbed_output(argv):
            code = _main(argv)
            sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except StdoutClosed:
        # Python's recipe: point fd 1 at /dev/null so the interpreter's last flush of what is
        # still buffered cannot fail again ("Exception ignored ... BrokenPipeError").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        # 0, not 141: the reader having seen enough is no failure of ours, and a script under
        # `set -o pipefail` should not fail on `aitrace search --json | head -1`.
        return 0


def _main(argv: list[str]) -> int:
    if argv[:1] in (["-V"], ["--version"]):
        print(f"aitrace {version()}")
        return 0
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
        if (extra := missing_extra(exc)) is not None:
            return _needs_extra(name, extra)
        print(f"aitrace {name}: cannot load {module_name}: {exc}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog=f"aitrace {name}", description=help_)
    module.add_arguments(name, parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(name, args) or 0)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:  # a command that imports its heavy modules only when it runs
        if (extra := missing_extra(exc)) is None:
            raise
        return _needs_extra(name, extra)


if __name__ == "__main__":
    sys.exit(main())
