"""bench/realdata_nab.py: NAB's standard scoring and its reader, on a NAB-shaped folder written here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from realdata_nab import FN, FP, TP, _sigmoid, bench_nab, nab_score, read_nab

SPANS = [(1000, 1199), (3000, 3199)]


def test_never_firing_scores_minus_each_window_and_early_detection_nearly_plus_each() -> None:
    assert nab_score([], 4000, SPANS) == (-2 * FN, 0, [], 0)
    score, found, delays, false = nab_score([1000, 3000], 4000, SPANS)
    assert score == pytest.approx(2 * TP * _sigmoid(-1.0)) and found == 2 and delays == [0, 0] and false == 0
    late = nab_score([1199, 3199], 4000, SPANS)[0]
    assert late < score and late == pytest.approx(2 * TP * _sigmoid(-1 / 200))


def test_false_alarms_cost_0_11_less_right_after_a_window_and_probation_is_free() -> None:
    assert nab_score([500], 4000, []) == (0.0, 0, [], 0)  # inside the probation (15 %, at most 750)
    assert nab_score([2000], 4000, []) == (-FP, 0, [], 1)
    assert nab_score([900], 4000, SPANS)[0] == pytest.approx(-2 * FN - FP)
    right_after = nab_score([1201], 4000, SPANS)[0] + 2 * FN
    far_after = nab_score([2900], 4000, SPANS)[0] + 2 * FN
    assert -FP < far_after < right_after < 0
    assert nab_score([1000, 1100], 4000, SPANS)[1] == 1  # a second detection in a window counts once


def test_reads_a_nab_checkout_and_prints_every_detector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "labels").mkdir()
    folder = tmp_path / "data" / "realAWSCloudwatch"
    folder.mkdir(parents=True)
    rows = [f"2014-02-14 {h:02d}:{m:02d}:00,{1.0 + (h * 60 + m == 600)}" for h in range(24) for m in range(0, 60, 5)]
    (folder / "cpu.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    windows = {"realAWSCloudwatch/cpu.csv": [["2014-02-14 09:00:00.000000", "2014-02-14 11:00:00.000000"]]}
    windows["realTweets/other.csv"] = []  # outside the folders the section reads
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    series = read_nab(tmp_path)
    times, values, spans = series["realAWSCloudwatch/cpu.csv"]
    assert list(series) == ["realAWSCloudwatch/cpu.csv"] and values.size == 288 and spans == [(108, 132)]
    assert np.all(np.diff(times) == 300_000_000)
    bench_nab(tmp_path, {"fires at 120": lambda t, v: [120], "never": lambda t, v: []})
    out = capsys.readouterr().out
    assert "windows 1/1" in out and "windows 0/1" in out and "score    0.0" in out
    bench_nab(None, {})
    assert "skipped" in capsys.readouterr().out
