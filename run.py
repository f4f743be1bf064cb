#!/usr/bin/env python3
"""Set up and run aitrace from a fresh clone, with nothing but Python 3.11.

    python3.11 run.py demo     # the whole loop on the embedded stack
    python3.11 run.py test     # the test suite (starts its own broker and search server)

Creates `.venv/` beside this file, installs the project with the extras it needs
(re-installing only when pyproject.toml or the list of package files changes), then runs
the command inside it.

The install is editable in setuptools' strict mode: a tree of links to the source files
under build/, which type checkers, editors and import-linter follow (the default mode's
import hook is invisible to them). Edits show at once; a new or removed file needs a
reinstall, which the stamp below triggers.
Anything after the command is passed on (`run.py test -k producer`, `run.py demo --keep`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
# The worker (Faust, Numba, SciPy, Elasticsearch), the embedded stack, the demo's workloads, the test tools.
EXTRAS = "worker,embedded,demo,test"


def _package_files() -> list[str]:
    """Every file in the package folders: the strict editable install links each one."""
    import tomllib  # here, so that an older Python still gets ensure_venv's message

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    folders = pyproject["tool"]["setuptools"]["package-dir"].values()
    return sorted(
        path.relative_to(ROOT).as_posix()
        for folder in folders
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def _stamp() -> str:
    text = (ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode() + "\n".join(_package_files()).encode()
    return hashlib.sha256(text).hexdigest()


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py runs before the venv exists
        sys.exit(f"aitrace needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    stamp_file = VENV / ".aitrace-installed"
    if stamp_file.exists() and stamp_file.read_text() == _stamp():
        return
    if not (BIN / "python").exists():
        print(f"run.py: creating {VENV.relative_to(ROOT)}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print(f"run.py: installing aitrace[{EXTRAS}] (first run takes a few minutes)", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip", "setuptools"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[{EXTRAS}]", "--config-settings", "editable_mode=strict"], check=True)
    stamp_file.write_text(_stamp())


def ensure_chromium() -> None:
    """The report test renders in a real headless Chromium (Debian's package); install it if we can."""
    if shutil.which("chromium") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    print("run.py: installing Debian's chromium for the browser tests", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.call(["apt-get", "update", "-qq"], **quiet) == 0:
        subprocess.call(["apt-get", "install", "-y", "-qq", "chromium"], **quiet)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "aitrace"}:
        print(__doc__)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    env = dict(os.environ)
    if command == "test":
        ensure_chromium()
        cmd = [str(BIN / "python"), "-m", "pytest", *rest]
    elif command == "demo":
        cmd = [str(BIN / "aitrace"), "demo", *rest]
    else:
        cmd = [str(BIN / "aitrace"), *rest]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
