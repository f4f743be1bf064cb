"""``aitrace.summarize`` on pandas and polars: the same summaries as for a dict of numpy arrays."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import aitrace
import numpy as np
import pandas as pd
import polars as pl
import pytest
from aitrace.producers.summaries import frame_kind, row_count

# One table, written natively in each library: missing numbers are NaN in numpy, None in the frames
# (NaN in pandas, null in polars), missing strings None everywhere.
NUMBERS = [1.5, None, 3.0, 2.0, None, 7.25]
WORDS = ["red", "white", None, "red", "rose", "red"]
FLAGS = [True, False, True, True, False, True]
COUNTS = [3, 1, 4, 1, 5, 9]


def numpy_table() -> dict[str, np.ndarray]:
    return {
        "alcohol": np.array([np.nan if v is None else v for v in NUMBERS]),
        "color": np.array(WORDS, dtype=object),
        "organic": np.array(FLAGS),
        "bottles": np.array(COUNTS),
    }


def native() -> dict[str, list[Any]]:
    return {"alcohol": NUMBERS, "color": WORDS, "organic": FLAGS, "bottles": COUNTS}


def test_a_dict_of_arrays_a_pandas_and_a_polars_frame_summarize_alike() -> None:
    expected = aitrace.summarize(numpy_table())
    assert [f["dtype"] for f in expected] == ["numeric", "categorical", "categorical", "numeric"]
    assert expected[0]["missing"] == 2 and expected[1]["missing"] == 1
    assert aitrace.summarize(pd.DataFrame(native())) == expected
    assert aitrace.summarize(pl.DataFrame(native())) == expected


def test_nullable_and_categorical_dtypes_read_as_their_plain_equivalents() -> None:
    expected = aitrace.summarize(numpy_table(), categorical=["bottles"])
    frame = pd.DataFrame(
        {
            "alcohol": pd.array(NUMBERS, dtype="Float64"),  # pd.NA, not NaN
            "color": pd.Categorical(WORDS),
            "organic": pd.array(FLAGS, dtype="boolean"),
            "bottles": pd.array(COUNTS, dtype="Int64"),
        }
    )
    assert aitrace.summarize(frame, categorical=["bottles"]) == expected
    polars = pl.DataFrame(native()).with_columns(pl.col("color").cast(pl.Categorical))
    assert aitrace.summarize(polars, categorical=["bottles"]) == expected


def test_missing_integers_and_booleans_are_counted_missing() -> None:
    ints = [1, None, 3]
    flags = [True, None, False]
    expected = aitrace.summarize({"n": np.array([1.0, np.nan, 3.0]), "f": np.array(flags, dtype=object)})
    assert expected[0]["missing"] == 1 and expected[1] == {
        "name": "f",
        "dtype": "categorical",
        "count": 3,
        "missing": 1,
        "categories": {"True": 1, "False": 1},
    }
    pandas_frame = pd.DataFrame({"n": pd.array(ints, dtype="Int64"), "f": pd.array(flags, dtype="boolean")})
    assert aitrace.summarize(pandas_frame) == expected
    assert aitrace.summarize(pl.DataFrame({"n": ints, "f": flags})) == expected


@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_series_work_as_columns_of_a_mapping_and_alone(library: str) -> None:
    make = pd.Series if library == "pandas" else pl.Series
    expected = aitrace.summarize(numpy_table())
    by_name = {name: make(values) for name, values in native().items()}
    assert aitrace.summarize(by_name) == expected
    named = pd.Series(NUMBERS, name="alcohol") if library == "pandas" else pl.Series("alcohol", NUMBERS)
    assert aitrace.summarize(named) == expected[:1]
    (unnamed,) = aitrace.summarize(make(WORDS))
    assert unnamed == {**expected[1], "name": "value"}


def test_reference_edges_and_bins_apply_to_frames_as_to_arrays() -> None:
    rng = np.random.default_rng(7)
    reference = {"x": rng.normal(size=500)}
    current = rng.normal(0.3, 1.0, size=400)
    ref = aitrace.summarize(reference)
    for frame in (pd.DataFrame({"x": current}), pl.DataFrame({"x": current})):
        assert aitrace.summarize(frame, reference=ref) == aitrace.summarize({"x": current}, reference=ref)
        assert aitrace.summarize(frame, bins=8) == aitrace.summarize({"x": current}, bins=8)


def test_frame_kind_and_row_count() -> None:
    class Mine(pd.DataFrame):
        pass

    assert frame_kind(pd.DataFrame()) == "pandas.DataFrame" and frame_kind(Mine()) == "pandas.DataFrame"
    assert frame_kind(pl.Series([1])) == "polars.Series" and frame_kind({"a": [1]}) is None
    assert row_count(pd.DataFrame(native())) == 6 and row_count(pl.DataFrame(native())) == 6
    assert row_count(numpy_table()) == 6 and row_count(np.zeros((4, 3))) == 4 and row_count([1, 2]) == 2
    assert row_count({}) == 0 and row_count(object()) is None


def test_summarizing_arrays_imports_neither_pandas_nor_polars() -> None:
    code = (
        "import sys, numpy as np, aitrace, aitrace.producers.summaries\n"
        "aitrace.summarize({'x': np.arange(5.0), 'c': np.array(['a', 'b', 'a', 'b', 'a'])})\n"
        "aitrace.producers.summaries.row_count({'x': [1, 2]})\n"
        "print(sorted(m for m in ('pandas', 'polars') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
