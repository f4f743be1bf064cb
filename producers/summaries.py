"""Feature summaries: :func:`summarize` builds ``aitrace.FeatureStats`` dicts from column arrays
(numpy, lists, pandas or polars) for ``client.data_stats``; :func:`row_count` and
:func:`frame_kind` tell the rows and the kind of a DataFrame or Series without importing pandas
or polars.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from aitrace.producers.events import plain_text
from aitrace.producers.text_reading import without_cut_token
from aitrace.schemas.data_stats_block import MAX_CATEGORY_CHARS, MAX_HISTOGRAM_BINS

EXACT_VALUES = 128  # a numeric column with at most this many distinct values is summarized exactly
AUTO_BINS = 64  # otherwise: bins at this many quantiles of the batch (edges are data values)


def summarize(
    columns: Any,
    bins: int | None = None,
    categorical: Iterable[str] = (),
    quantiles: Iterable[float] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99),
    max_categories: int = 100,
    reference: Any = None,
) -> list[dict[str, Any]]:
    """Feature summaries (``aitrace.FeatureStats`` dicts) of column arrays.

    ``columns`` is a mapping of name -> array-like (numpy arrays, lists, pandas or polars
    Series), a pandas or polars DataFrame, or one Series (named by its name, else
    ``"value"``). All give the same summaries for the same data: null, None, NaN and
    ``pd.NA`` are missing, integers and floats are numeric, booleans and strings categorical.

    Numeric columns: count, missing (NaN / None), mean, variance (ddof=0), min, max,
    quantiles and a histogram whose counts are exact (bins ``[e_k, e_k+1)``, the last
    closed), so the drift tests on two summaries stay valid:

    * ``bins=None`` (default): a column with at most ``EXACT_VALUES`` distinct values gets
      one bin per value, ``[v, next float after v)``, and empty bins between them: its
      empirical CDF is in the summary exactly (small batches, discrete and zero-inflated
      columns). Otherwise ``AUTO_BINS`` bins with edges at the batch's own quantiles (data
      values), so each bin holds about the same number of rows.
    * ``reference`` (the summaries of a reference batch, as a list like this function
      returns or a mapping name -> summary): a numeric column reuses the reference's inner
      edges, so both CDFs are known at the same points (the outer edges widen to this
      batch's min / max where it goes beyond them).
    * ``bins=<int>``: that many equal-width bins between min and max (``numpy.histogram``).

    Columns named in ``categorical``, or holding strings / objects / booleans: category
    counts (the ``max_categories`` most frequent, the rest as ``__other__``).
    """
    import numpy as np

    most = MAX_HISTOGRAM_BINS - 2  # a later batch on these edges may widen both outer bins
    if bins is not None and not 1 <= bins <= most:
        raise ValueError(f"bins={bins}: a worker takes histograms of 1 to {most} bins")
    forced = set(categorical)
    levels = tuple(quantiles)
    refs = _reference_map(reference)
    out = []
    for name, column in _named_columns(columns):
        arr = _as_array(column, name in forced)
        text = plain_text(name)  # a name whose str() raises must not cost the batch's other columns
        if name in forced or arr.dtype.kind in "OUSb":
            out.append(_categorical_stats(text, arr, max_categories))
        else:
            ref_edges = (refs.get(text) or {}).get("histogram_edges") or None
            out.append(_numeric_stats(text, arr.astype(np.float64, copy=False), bins, levels, ref_edges))
    return out


def frame_kind(obj: Any) -> str | None:
    """``"pandas.DataFrame"``, ``"polars.Series"``, ... for those types and their subclasses, else None.

    Looks at the class's module names only, so neither library is ever imported to find out.
    """
    for cls in type(obj).__mro__:
        package = cls.__module__.partition(".")[0]
        if package in ("pandas", "polars") and cls.__name__ in ("DataFrame", "Series"):
            return f"{package}.{cls.__name__}"
    return None


def row_count(data: Any) -> int | None:
    """Rows of a DataFrame, Series, array, list or mapping of columns; None when it has no length (or one that
    cannot be read: a stage's count must not raise into the pipeline it describes)."""
    try:
        if frame_kind(data) is not None:
            return len(data)
        if isinstance(data, Mapping):  # columns: the length of the first one
            return row_count(next(iter(data.values()), ()))
        shape = getattr(data, "shape", None)
        return int(shape[0]) if shape else len(data)
    except Exception:
        return None


def _named_columns(columns: Any) -> Iterable[tuple[Any, Any]]:
    kind = frame_kind(columns)
    if kind == "pandas.DataFrame":
        return columns.items()
    if kind == "polars.DataFrame":
        return zip(columns.columns, columns.get_columns(), strict=True)
    if kind is not None:  # one Series
        return [(columns.name if columns.name not in (None, "") else "value", columns)]
    return columns.items()


def _as_array(column: Any, as_objects: bool = False) -> Any:
    """A column as numpy: float64 with NaN for numeric Series, objects with None for the rest.

    ``as_objects``: a column summarized as categories keeps its values (``3``, not ``3.0``).
    """
    import numpy as np

    kind = frame_kind(column)
    if kind == "pandas.Series":
        # nullable Int64 / boolean / string columns hold pd.NA, which numpy cannot compare
        if column.dtype.kind in "iuf" and not as_objects:
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        return column.to_numpy(dtype=object, na_value=None)
    if kind == "polars.Series":
        if column.dtype.is_numeric() and not as_objects:
            import polars as pl  # already loaded: the column is one of its Series

            return column.cast(pl.Float64).to_numpy()  # nulls become NaN
        return np.fromiter(column.to_list(), dtype=object, count=len(column))
    return np.asarray(column)


def _reference_map(reference: Any) -> dict[str, Mapping[str, Any]]:
    if not reference:
        return {}
    if isinstance(reference, Mapping):
        return {str(k): v for k, v in reference.items()}
    return {str(f["name"]): f for f in reference}


def _histogram_edges(finite: Any, bins: int | None, ref_edges: Any) -> Any:
    """Rising edges for :func:`_numeric_stats` (see :func:`summarize` for the three modes)."""
    import numpy as np

    lo, hi = float(finite[0]), float(finite[-1])  # finite is sorted
    if ref_edges is not None and len(ref_edges) >= 2:
        inner = np.asarray(ref_edges, dtype=np.float64)
        edges = np.unique(np.concatenate([[min(lo, inner[0])], inner, [max(hi, inner[-1])]]))
        return edges if edges.size >= 2 else np.array([lo, np.nextafter(lo, np.inf)])
    if bins is not None:
        return np.histogram_bin_edges(finite, bins=bins)
    distinct = np.unique(finite)
    if distinct.size <= EXACT_VALUES:
        return np.unique(np.concatenate([distinct, np.nextafter(distinct, np.inf)]))
    idx = np.round(np.linspace(0, finite.size - 1, AUTO_BINS + 1)).astype(np.int64)
    return np.unique(finite[idx])  # more than EXACT_VALUES distinct values: at least two edges


def _numeric_stats(
    name: str, arr: Any, bins: int | None, levels: tuple[float, ...], ref_edges: Any = None
) -> dict[str, Any]:
    import numpy as np

    flat = arr.ravel()
    finite = np.sort(flat[np.isfinite(flat)])
    stats: dict[str, Any] = {"name": name, "dtype": "numeric", "count": int(flat.size)}
    stats["missing"] = int(np.isnan(flat).sum())
    if finite.size == 0:
        return stats
    edges = _histogram_edges(finite, bins, ref_edges)
    if bins is not None and ref_edges is None:
        counts, edges = np.histogram(finite, bins=edges)
    else:
        below = np.searchsorted(finite, edges[:-1], side="left")  # values below each edge, exactly
        counts = np.diff(np.append(below, finite.size))
    stats.update(
        mean=float(finite.mean()),
        variance=float(finite.var()),
        min=float(finite[0]),
        max=float(finite[-1]),
        quantiles={str(q): float(v) for q, v in zip(levels, np.quantile(finite, levels), strict=True)},
        histogram_edges=[float(e) for e in edges],
        histogram_counts=[int(c) for c in counts],
    )
    return stats


def _cut_category(value: str) -> str:
    """A category past MAX_CATEGORY_CHARS: its head, less the token the cut went through. A value that is one token
    (a URL, a hash) would have no head left, and all such values would count as the empty category: it is counted
    under a short hash of the whole value instead."""
    head = without_cut_token(value[:MAX_CATEGORY_CHARS])
    if head.strip():
        return head
    return "...#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _categorical_stats(name: str, arr: Any, max_categories: int) -> dict[str, Any]:
    items = arr.ravel().tolist()
    try:
        values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in items]
    except Exception:  # a value whose str() raises is one category, not the batch's loss
        values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else plain_text(v) for v in items]
    present = [v for v in values if v is not None]
    # A name past what a worker takes (free text summarized as a category) is cut to it: counted
    # under its first MAX_CATEGORY_CHARS characters rather than the whole summary dead-lettered, less the token the
    # cut went through (the head of a key there matches no pattern of the redactor).
    counts = Counter(v if len(v) <= MAX_CATEGORY_CHARS else _cut_category(v) for v in present)
    top = dict(counts.most_common(max_categories))
    other = len(present) - sum(top.values())
    if other:
        top["__other__"] = other
    return {
        "name": name,
        "dtype": "categorical",
        "count": len(values),
        "missing": len(values) - len(present),
        "categories": top,
    }
