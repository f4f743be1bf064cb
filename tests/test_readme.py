"""The README's claims, executed: a README that drifts from the code fails here.

1. The configuration table lists exactly the ``AITRACE_*`` variables the code reads: one per
   field of ``Settings`` (``AITRACE_<FIELD>``) and of ``WorkerOptions`` (``AITRACE_WORKER_<FIELD>``),
   plus every other full ``AITRACE_*`` name found in the sources; defaults match the dataclasses.
2. Every ``aitrace <command>`` shown exists in ``infra/cli.py``'s ``COMMANDS``, and its flags are
   accepted by that command's own parser (built with the module's ``add_arguments``; nothing runs).
3. Every ```python block runs for real against the session's Tansu broker, and each client it
   creates delivers everything it did not sample out (read back from the topics by event id).
   A block preceded by ``<!-- not-run: reason -->`` is left out (at most two may be).
4. The two set-up commands appear exactly, alone in their block, and ``.ci/run`` calls the test one.
5. Every repository path the README names exists; the Kibana saved searches and dashboard are
   named as they are in ``infra/kibana/*.ndjson``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Any

import aitrace
import aitrace.producers.client
import pytest
from aitrace.infra.cli import COMMANDS
from aitrace.infra.stack import TansuProcess
from aitrace.processors.options import WorkerOptions
from aitrace.producers.config import setting_fields
from test_producer_support import consume, event_ids

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SETUP_COMMANDS = ("python3.11 run.py demo", "python3.11 run.py test")
# Where the code reads AITRACE_* names (tests included: AITRACE_FULL_TESTS is a user's switch).
SOURCE_DIRS = ("producers", "schemas", "processors", "detect", "sinks", "infra", "tests", "bench")
# A name read through an f-string prefix, expanded to one variable per dataclass field.
PREFIXES: dict[str, list[Field[Any]]] = {"AITRACE_": setting_fields(), "AITRACE_WORKER_": list(fields(WorkerOptions))}
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
# Paths the README names that exist only at run time (created by run.py, `aitrace up`, a client).
RUNTIME_ROOTS = {".venv", ".aitrace"}
FILE_SUFFIXES = (".py", ".md", ".yml", ".yaml", ".toml", ".ndjson", ".avsc")
_NAME = re.compile(r"AITRACE_[A-Z0-9_]*")
_FENCE = re.compile(r"^```([\w-]*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.+?)\s*-->$")
_SPAN = re.compile(r"`([^`]+)`")  # inline code may wrap onto the next line


@dataclass(frozen=True)
class Block:
    """A fenced code block: language, text, the README line of its first code line, skip reason."""

    lang: str
    code: str
    line: int
    not_run: str | None


def _text() -> str:
    return README.read_text(encoding="utf-8")


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced block, with the ``<!-- not-run: ... -->`` marker on the line before it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"README.md:{i + 1}: a code fence is never closed"
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _NOT_RUN.match(before)
        blocks.append(Block(match.group(1), "\n".join(lines[i + 1 : end]), i + 2, marker.group(1) if marker else None))
        i = end + 1
    return blocks


def prose(text: str) -> str:
    """The README without its fenced blocks (inline code spans live here)."""
    return re.sub(r"^```[\w-]*\s*$.*?^```\s*$", "", text, flags=re.M | re.S)


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match is not None, f"README.md has no '## {title}' section"
    return match.group(1)


# =========================================================================== 1. configuration


def env_names_in_code() -> set[str]:
    """Every AITRACE_* variable the code reads: dataclass fields behind prefixes, plus full names."""
    names: set[str] = set()
    unknown_prefixes: set[str] = set()
    for folder in SOURCE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            if path.resolve() == Path(__file__).resolve():
                continue
            for name in _NAME.findall(path.read_text(encoding="utf-8")):
                if not name.endswith("_"):
                    names.add(name)
                elif name not in PREFIXES:
                    unknown_prefixes.add(name)
    assert not unknown_prefixes, f"code reads AITRACE_* names by prefixes this test does not know: {unknown_prefixes}"
    for prefix, env_fields in PREFIXES.items():
        names |= {f"{prefix}{f.name.upper()}" for f in env_fields}
    return names


def config_rows(text: str) -> dict[str, str]:
    """``{name: default cell}`` of the configuration table (first column: one `AITRACE_*` name)."""
    rows: dict[str, str] = {}
    for line in section(text, "Configuration").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3:
            continue
        match = re.fullmatch(r"`(AITRACE_[A-Z0-9_]+)`", cells[0])
        if match is None:
            continue
        name = match.group(1)
        assert name not in rows, f"{name} is listed twice in the configuration table"
        assert cells[2], f"{name} has no meaning in the configuration table"
        rows[name] = cells[1]
    return rows


def rendered_default(value: Any) -> str | None:
    """How the table writes a dataclass default: None -> None (the cell says 'unset')."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def test_config_table_lists_exactly_the_variables_the_code_reads() -> None:
    documented = set(config_rows(_text()))
    read = env_names_in_code()
    assert not read - documented, f"read by the code, missing from the README's table: {sorted(read - documented)}"
    assert not documented - read, f"in the README's table, read nowhere in the code: {sorted(documented - read)}"


@pytest.mark.parametrize(("prefix", "env_fields"), PREFIXES.items(), ids=["settings", "worker"])
def test_config_defaults_match_the_dataclasses(prefix: str, env_fields: list[Field[Any]]) -> None:
    rows = config_rows(_text())
    for f in env_fields:
        if f.default is MISSING:
            continue
        cell = rows[f"{prefix}{f.name.upper()}"]
        expected = rendered_default(f.default)
        first_code = _SPAN.search(cell)
        if expected is None:
            assert cell.startswith("unset"), f"{prefix}{f.name.upper()}: default is None, the table says {cell!r}"
        else:
            assert first_code is not None and first_code.group(1) == expected, (
                f"{prefix}{f.name.upper()}: default {expected!r}, the table says {cell!r}"
            )


# =========================================================================== 2. commands


@dataclass(frozen=True)
class Invocation:
    where: str
    name: str
    args: list[str]
    inline: bool


def invocations(text: str) -> list[Invocation]:
    """Every ``aitrace NAME ...`` in shell blocks and inline code spans."""
    found: list[Invocation] = []
    for block in fenced_blocks(text):
        if block.lang in SHELL_LANGS:
            for offset, line in enumerate(block.code.splitlines()):
                found += _parse_line(line, f"README.md:{block.line + offset}", inline=False)
    for span in _SPAN.findall(prose(text)):
        span = " ".join(span.split())
        found += _parse_line(span, f"`{span}`", inline=True)
    return found


def _parse_line(line: str, where: str, *, inline: bool) -> list[Invocation]:
    line = re.split(r"\s#\s", " " + line, maxsplit=1)[0]
    out = []
    for part in re.split(r"&&|\|\||[|;]", line):
        try:
            tokens = shlex.split(part)
        except ValueError as exc:
            raise AssertionError(f"{where}: not a shell command line: {exc}") from None
        starts = [i for i, t in enumerate(tokens) if t == "aitrace" or t.endswith("/aitrace")]
        if starts and starts[0] + 1 < len(tokens):
            rest = tokens[starts[0] + 1 :]
            out.append(Invocation(where, rest[0], rest[1:], inline))
    return out


def parse_invocation(call: Invocation) -> None:
    """The command's own parser accepts the shown arguments (``--help`` exits 0 and counts as accepted)."""
    module_name, help_ = COMMANDS[call.name]
    parser = argparse.ArgumentParser(prog=f"aitrace {call.name}", description=help_)
    importlib.import_module(module_name).add_arguments(call.name, parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(call.args)
    except SystemExit as exc:
        assert exc.code == 0, f"{call.where}: `aitrace {call.name}` refuses {call.args}: {err.getvalue().strip()}"


def test_every_command_shown_exists_and_accepts_its_flags() -> None:
    calls = invocations(_text())
    unshown = set(COMMANDS) - {c.name for c in calls}
    assert not unshown, f"commands the README never shows: {sorted(unshown)}"
    for call in calls:
        assert call.name in COMMANDS, f"{call.where}: `aitrace {call.name}` is not a command ({sorted(COMMANDS)})"
        if call.inline and not call.args:
            continue  # a command named in prose, not a command line to run
        parse_invocation(call)


def test_the_command_check_catches_an_unknown_flag() -> None:
    (call,) = _parse_line("aitrace demo --no-such-flag", "example", inline=False)
    with pytest.raises(AssertionError, match="refuses"):
        parse_invocation(call)


# =========================================================================== 3. python snippets


def python_blocks() -> list[Block]:
    return [b for b in fenced_blocks(_text()) if b.lang == "python"]


@pytest.fixture
def recorded_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[aitrace.Client]]:
    """Every client a snippet makes through ``aitrace.init``; the root logger's handlers restored after."""
    made: list[aitrace.Client] = []
    real_init = aitrace.producers.client.init

    def init(*args: Any, **kwargs: Any) -> aitrace.Client:
        client = real_init(*args, **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(aitrace, "init", init)
    monkeypatch.setattr(aitrace.producers.client, "_default", None)
    handlers, level = list(logging.root.handlers), logging.root.level
    yield made
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)
    for client in made:
        client.close(timeout=5)


@pytest.mark.parametrize("block", [b for b in python_blocks() if not b.not_run], ids=lambda b: f"README.md:{b.line}")
def test_python_snippet_runs_and_delivers(
    block: Block,
    kafka: TansuProcess,
    recorded_clients: list[aitrace.Client],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    prefix = unique_name("readme")
    monkeypatch.setenv("AITRACE_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("AITRACE_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("AITRACE_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block.code, f"README.md:{block.line}", "exec"), {"__name__": "__readme__"})
    expected = 0
    for client in recorded_clients:
        client.close(timeout=30)  # a no-op when the snippet closed it; the counters tell what arrived
        stats = client.stats()
        assert stats["dropped"] == 0, f"README.md:{block.line}: events dropped: {stats}"
        assert stats["sent"] + stats["sampled_out"] == stats["enqueued"], stats
        expected += stats["sent"]
    if expected:
        records = consume(kafka.bootstrap, prefix, lambda r: len(_ids(r)) >= expected, timeout=30)
        assert len(_ids(records)) == expected, f"README.md:{block.line}: read back {len(_ids(records))} of {expected}"


def _ids(records: list[tuple[str, dict[str, Any]]]) -> set[str]:
    return {i for _, batch in records for i in event_ids(batch)}


def test_few_snippets_are_exempt() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 8, "the README lost its embedding snippets"
    assert sum(1 for b in blocks if b.not_run) <= 2, "more than two snippets marked not-run"


# =========================================================================== 4. set-up commands


def test_the_two_setup_commands_and_ci() -> None:
    body = section(_text(), "Set-up: two commands")
    (block,) = [b for b in fenced_blocks(body) if b.lang in SHELL_LANGS]
    commands = [re.split(r"\s+#", line)[0].strip() for line in block.code.splitlines() if line.strip()]
    assert commands == list(SETUP_COMMANDS)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert any(line.removeprefix("exec ") == SETUP_COMMANDS[1] for line in ci), ci
    run_py = (ROOT / "run.py").read_text()
    assert all(f'"{c.split()[-1]}"' in run_py for c in SETUP_COMMANDS), "run.py no longer knows demo and test"


# =========================================================================== 5. paths and Kibana names


def named_paths(text: str) -> set[str]:
    """Repository paths in inline code, shell blocks and relative links."""
    tokens: list[str] = []
    for span in _SPAN.findall(prose(text)):
        tokens += span.split()
    for block in fenced_blocks(text):
        if block.lang in SHELL_LANGS:
            tokens += block.code.split()
    tokens += re.findall(r"\]\(([^)#\s]+)\)", text)
    paths = set()
    for token in tokens:
        token = token.lstrip("'\"`(").rstrip("'\"`,.;:)").split("::")[0]
        if not token or "://" in token or token[0] in "/~<$-" or "=" in token or re.fullmatch(r"\.\w+", token):
            continue  # URLs, absolute or home paths, placeholders, flags, assignments, bare suffixes
        if "/" in token or token.endswith(FILE_SUFFIXES):
            paths.add(token)
    return paths


def test_every_named_path_exists() -> None:
    paths = named_paths(_text())
    assert {"bench/README.md", "docker-compose.yml", "tests/conftest.py"} <= paths, sorted(paths)
    missing = []
    for path in sorted(paths):
        if path.split("/")[0] in RUNTIME_ROOTS:
            continue
        if not (any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
            missing.append(path)
    assert not missing, f"the README names paths that do not exist: {missing}"


def test_kibana_saved_searches_and_dashboard_are_named_as_in_the_files() -> None:
    text = _text()
    titles = []
    for path in sorted((ROOT / "infra" / "kibana").glob("*.ndjson")):
        for line in path.read_text().splitlines():
            obj = json.loads(line) if line.strip() else {}
            if obj.get("type") in ("search", "dashboard"):
                titles.append(obj["attributes"]["title"])
    assert titles, "no saved searches or dashboards in infra/kibana"
    unnamed = [t for t in titles if not re.search(rf"{re.escape(t)}(?![\w-])", text)]
    assert not unnamed, f"saved objects the README does not name as they are titled: {unnamed}"
