"""Numba's cache directory: chosen before compiling, usable when the package is read-only, reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aitrace.detect import _cache

PROBE = """
import json, numpy as np
from aitrace.detect import anomaly_scores
from aitrace.detect.anomaly_kernel import _score_kernel
from numba.core import config
anomaly_scores(np.arange(100.0))
print(json.dumps({"dir": config.CACHE_DIR, "hits": sum(_score_kernel.stats.cache_hits.values()),
                  "misses": sum(_score_kernel.stats.cache_misses.values())}))
"""


def _probe(env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_user_setting_wins(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    monkeypatch.setenv("AITRACE_NUMBA_CACHE_DIR", str(tmp_path / "ours"))
    assert _cache.choose_cache_dir() == str(tmp_path / "numba")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert _cache.choose_cache_dir() == str(tmp_path / "ours" / f"src-{_cache.source_stamp()}")


def test_read_only_package_falls_back_to_user_cache(monkeypatch, tmp_path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the package's __pycache__ parent would be")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv("AITRACE_NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(_cache, "_PACKAGE_DIR", blocker / "pkg")  # mkdir fails even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cache.choose_cache_dir() == str(tmp_path / "xdg" / "aitrace" / "numba" / f"src-{_cache.source_stamp()}")
    # and when the home cache is unusable too, a per-user temp folder
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "xdg"))
    chosen = _cache.choose_cache_dir()
    assert chosen is not None and "aitrace-numba" in chosen and Path(chosen).is_dir()


def test_cache_is_written_once_and_loaded_by_the_next_process(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["AITRACE_NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    cold = _probe(env)
    assert Path(cold["dir"]).parent == tmp_path / "cache" and Path(cold["dir"]).name.startswith("src-")
    assert cold["misses"] >= 1 and cold["hits"] == 0
    assert any((tmp_path / "cache").rglob("*.nbi"))
    warm = _probe(env)
    assert warm["hits"] >= 1 and warm["misses"] == 0


def test_an_edit_to_any_source_file_moves_the_kernels_to_a_new_folder_and_week_old_ones_go(
    monkeypatch, tmp_path
) -> None:
    """Numba checks only the defining file's stamp; a kernel also compiles in its callees from other files."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "kernel.py").write_text("x = 1\n")
    (package / "callee.py").write_text("y = 1\n")
    monkeypatch.setattr(_cache, "_PACKAGE_DIR", package)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("AITRACE_NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    before = _cache.choose_cache_dir()
    assert _cache.choose_cache_dir() == before  # same sources, same folder
    (package / "callee.py").write_text("y = 22\n")  # the callee alone changes
    after = _cache.choose_cache_dir()
    assert after != before and Path(before).is_dir()  # a week has not passed: the old one stays
    week_ago = os.path.getmtime(before) - 8 * 86400
    os.utime(before, (week_ago, week_ago))
    assert _cache.choose_cache_dir() == after and not Path(before).exists()
