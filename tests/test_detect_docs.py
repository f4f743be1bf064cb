"""The examples in aitrace.detect's docstrings run and give what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "anomaly",
    "drift",
    "ks",
    "chi2",
    "welch",
    "batched",
    "drift_monitor",
    "drift_tests",
    "monitor",
    "overfit",
    "backtest",
    "level",
    "training",
    "series",
    "calibrate",
    "finding",
    "cycle",
    "service",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"aitrace.detect.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_package_docstring_lists_the_public_api() -> None:
    import aitrace.detect as detect

    for name in detect.__all__:
        if name != "CACHE_DIR":
            assert name in detect.__doc__, name
