"""What a failing end-to-end test prints of a worker's log.

The stats line repeats every couple of seconds: a plain tail of a stuck worker was all stats
lines, and the warnings, rebalances and errors that explain it were cut off (CI on stop 17).
"""

from __future__ import annotations

from pathlib import Path

STATS = "aitrace stats "


def digest(text: str, limit: int = 8000, keep_stats: int = 2) -> str:
    """``text`` without its stats lines but the last ``keep_stats``, cut to its last ``limit`` characters."""
    lines = text.splitlines()
    stats = [i for i, line in enumerate(lines) if STATS in line]
    dropped = set(stats[:-keep_stats] if keep_stats else stats)
    kept = [line for i, line in enumerate(lines) if i not in dropped]
    note = f"({len(dropped)} earlier stats lines left out)\n" if dropped else ""
    return note + "\n".join(kept)[-limit:]


def log_digest(path: Path, limit: int = 8000) -> str:
    """:func:`digest` of the log at ``path``; "(no log)" when there is none."""
    return digest(path.read_text(errors="replace"), limit) if path.exists() else "(no log)"
