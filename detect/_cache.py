"""Where Numba keeps compiled kernels.

Numba's ``cache=True`` writes next to the source file when that directory is
writable and otherwise falls back to its own user-wide directory. An installed
package (site-packages owned by root, a read-only container layer, a zip) is not
writable, and Numba's fallback path depends on how the interpreter was started.
We choose the directory ourselves, before the first kernel is decorated, so that
the warm start is predictable:

1. ``NUMBA_CACHE_DIR`` if the user set it (Numba's own setting wins);
2. ``AITRACE_NUMBA_CACHE_DIR`` if set;
3. the package directory itself when it is writable (editable installs, checkouts);
4. ``$XDG_CACHE_HOME/aitrace/numba`` (default ``~/.cache/aitrace/numba``);
5. a per-user folder under the system temp directory, if even the home is read-only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def choose_cache_dir() -> str | None:
    """Return the directory Numba should cache into, or None to keep Numba's in-tree default."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    explicit = os.environ.get("AITRACE_NUMBA_CACHE_DIR")
    if explicit and _writable(Path(explicit)):
        return explicit
    if _writable(_PACKAGE_DIR / "__pycache__"):
        return None
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    user_dir = Path(xdg) / "aitrace" / "numba"
    if _writable(user_dir):
        return str(user_dir)
    fallback = Path(tempfile.gettempdir()) / f"aitrace-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    if _writable(fallback):
        return str(fallback)
    return None


def configure() -> str | None:
    """Point Numba at the chosen cache directory; safe to call more than once.

    Works whether or not numba was imported already: the environment variable covers
    a later import, and ``numba.core.config.CACHE_DIR`` covers an earlier one (Numba
    reads it when a ``cache=True`` function is decorated).
    """
    chosen = choose_cache_dir()
    if chosen is None:
        return None
    os.environ["NUMBA_CACHE_DIR"] = chosen
    try:
        from numba.core import config
    except ImportError:  # numba missing: the kernels' own import will say so
        return chosen
    config.CACHE_DIR = chosen  # type: ignore[attr-defined]  # set at run time by numba.core.config
    return chosen


CACHE_DIR = configure()
