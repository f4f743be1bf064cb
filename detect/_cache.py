"""Where Numba keeps compiled kernels.

Numba's ``cache=True`` writes next to the source file when that directory is
writable and otherwise falls back to its own user-wide directory. An installed
package (site-packages owned by root, a read-only container layer, a zip) is not
writable, and Numba's fallback path depends on how the interpreter was started.
We choose the directory ourselves, before the first kernel is decorated, so that
the warm start is predictable:

1. ``NUMBA_CACHE_DIR`` if the user set it (Numba's own setting wins);
2. ``AITRACE_NUMBA_CACHE_DIR`` if set;
3. the package's ``__pycache__`` when it is writable (editable installs, checkouts);
4. ``$XDG_CACHE_HOME/aitrace/numba`` (default ``~/.cache/aitrace/numba``);
5. a per-user folder under the system temp directory, if even the home is read-only.

In 2 to 5 the kernels go into a sub-folder named by a digest of this package's source files
(:func:`source_stamp`). Numba checks only the stamp of the file a kernel is defined in, but our
kernels compile in the njit functions they call from other modules (``sorted_window``, ``ks``):
an edit to one of those alone would otherwise leave the old compiled code running. Sub-folders
unused for a week are removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_STALE_S = 7 * 86400


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def source_stamp() -> str:
    """A digest of the names, sizes and modification times of this package's source files."""
    digest = hashlib.blake2b(digest_size=6)
    for path in sorted(_PACKAGE_DIR.glob("*.py")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def _stamped(base: Path) -> str | None:
    """``base``'s sub-folder for the current sources, when it can be written; older ones unused for a week go."""
    chosen = base / f"src-{source_stamp()}"
    if not _writable(chosen):
        return None
    os.utime(chosen)  # in use: Numba writes into its sub-folders, which would leave this one's time old
    for other in base.glob("src-*"):
        try:
            stale = other != chosen and time.time() - other.stat().st_mtime > _STALE_S
        except OSError:
            continue
        if stale:
            shutil.rmtree(other, ignore_errors=True)
    return str(chosen)


def choose_cache_dir() -> str | None:
    """Return the directory Numba should cache into, or None to keep Numba's own choice."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    explicit = os.environ.get("AITRACE_NUMBA_CACHE_DIR")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    user = f"aitrace-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    candidates = [Path(explicit)] if explicit else []
    candidates += [_PACKAGE_DIR / "__pycache__", Path(xdg) / "aitrace" / "numba", Path(tempfile.gettempdir()) / user]
    for base in candidates:
        chosen = _stamped(base)
        if chosen is not None:
            return chosen
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
