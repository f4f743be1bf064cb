"""Terminal output shared by the commands: whether to colour, the ANSI codes, and a reader that left."""

from __future__ import annotations

import errno
import os
import re
import select
import sys
from typing import TextIO

GREEN, RED, YELLOW, CYAN, BOLD_RED = "\033[32m", "\033[31m", "\033[33m", "\033[36m", "\033[1;31m"
BOLD, DIM, RESET = "\033[1m", "\033[2m", "\033[0m"
CLEAR_LINE = "\r\033[K"  # back to the line's start and clear it (the demo's progress line)
# What a terminal acts on: C0 and C1 controls (ESC opens a sequence that sets the title, clears the screen, moves
# the cursor; U+009B is a one-character CSI), DEL, and the marks that reorder or hide text (bidi overrides and
# isolates, line and paragraph separators, the byte-order mark); kept: new lines, tabs, the left-to-right and
# right-to-left marks of Hebrew and Arabic text, and the codes above.
_OURS = (CLEAR_LINE, "\r\n", BOLD_RED, GREEN, RED, YELLOW, CYAN, BOLD, DIM, RESET)  # (\r\n: a Windows line's end)
_ACTED_ON = re.compile(
    "|".join(map(re.escape, _OURS)) + "|[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069\ufeff]"
)


def inert(text: str) -> str:
    """``text`` with every character a terminal acts on written as a JSON escape (``\\u001b``), this module's
    own colour codes kept: a service name, a log message or an alert title from anyone who can write to a
    topic must not set the terminal's title, clear it or hide a line. JSON stays valid and reads the same."""
    return _ACTED_ON.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    text = found.group()
    return text if len(text) > 1 else f"\\u{ord(text):04x}"


def use_colour(choice: str, stream: TextIO) -> bool:
    """``auto``: colour only on a terminal, and never when NO_COLOR is set."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return stream.isatty() and not os.environ.get("NO_COLOR")


class StdoutClosed(BrokenPipeError):
    """stdout's reader left (``aitrace search --json | head -1``); ``aitrace.infra.cli.main`` exits 0 quietly.

    A type of its own: a BrokenPipeError from a socket (a dropped connection) is a failure
    to report, not a reader that has seen enough, and must not end quietly.
    """


def reader_gone(stream: TextIO) -> bool:
    """Whether the pipe or socket behind ``stream`` has lost its reader, found without writing to it.

    A command that waits between writes (``aitrace alerts | head -1``) would otherwise learn it
    only at its next write, which may never come. poll() reports POLLERR (Linux: the pipe's read
    end is closed) and POLLHUP (BSD, macOS, sockets) even with no event asked for; a terminal,
    a file or /dev/null report neither. False where there is no descriptor or no poll() (Windows).
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def stop_if_stdout_closed() -> None:
    """Raise :class:`StdoutClosed` when stdout's reader has left (see :func:`reader_gone`)."""
    if reader_gone(sys.stdout):
        raise StdoutClosed(errno.EPIPE, "stdout's reader left")


__all__ = [
    "BOLD",
    "BOLD_RED",
    "CLEAR_LINE",
    "CYAN",
    "DIM",
    "GREEN",
    "RED",
    "RESET",
    "YELLOW",
    "StdoutClosed",
    "inert",
    "reader_gone",
    "stop_if_stdout_closed",
    "use_colour",
]
