"""Terminal output shared by the commands: whether to colour, and the ANSI codes."""

from __future__ import annotations

import os
from typing import TextIO

GREEN, RED, YELLOW = "\033[32m", "\033[31m", "\033[33m"
BOLD, DIM, RESET = "\033[1m", "\033[2m", "\033[0m"


def use_colour(choice: str, stream: TextIO) -> bool:
    """``auto``: colour only on a terminal, and never when NO_COLOR is set."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return stream.isatty() and not os.environ.get("NO_COLOR")


__all__ = ["BOLD", "DIM", "GREEN", "RED", "RESET", "YELLOW", "use_colour"]
