"""Drift on summaries of statsmodels' bundled real tables, beside scipy on the raw rows.

    .venv/bin/python bench/realdata_tables.py [--quick]      # alone; bench_realdata.py runs it as (a2), (a3)

Ours: ``aitrace.summarize`` of each window -> ``detect_drift`` (Holm over the features).
Baseline: scipy on the raw rows, Bonferroni over the features: ``ks_2samp`` on numeric
columns, ``chi2_contingency`` on categorical ones. Categorical: string columns, binary
columns and the nominal codes named per table; both sides treat the same columns as
categories (``summarize(categorical=...)`` for ours).

* null FPR: random halves, and two disjoint random batches of 50 rows (tables of at
  least 100 rows), of one table: nothing drifted, target <= 5 %.
* power: real splits that differ: one period against another for time-indexed tables
  (macrodata by decade, sunspots by century, the Nile's flow before / after its known
  change point of 1898, elnino and interest_inflation by half), one group against another
  (fair by affairs, star98 by pass rate, spector by grade, anes96 by vote, ccard by home
  ownership, heart by censoring, modechoice by the mode chosen), on the whole groups and
  on random samples of 20 and 10 rows per group; the columns that define a split are left
  out. Target: at least the baseline's power.

* batches against a reference, as a drift monitor sees them: half the table as reference
  and 20 rows of the other half (null), or one whole side of a split as reference and 20 rows
  of the other (power). (a3) runs these two on section (a)'s scikit-learn tables too.

statsmodels is in the ``test`` extra; when it is missing these tables are skipped with one line.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHA = 0.05
Columns = dict[str, np.ndarray]
Pair = tuple[str, Columns, Columns]


@dataclass
class Table:
    """One real table: its columns, which are categorical, and the splits that differ."""

    name: str
    columns: Columns
    categorical: frozenset[str]
    # (label, rows of one side, rows of the other, columns left out because they define the split)
    splits: list[tuple[str, np.ndarray, np.ndarray, tuple[str, ...]]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))


def _table(name: str, frame: Any, drop: tuple[str, ...] = (), nominal: tuple[str, ...] = ()) -> Table:
    columns: Columns = {}
    categorical = set(nominal)
    for col in frame.columns:
        if col in drop:
            continue
        values = frame[col]
        if values.dtype.kind in "iuf":
            columns[str(col)] = values.to_numpy(dtype=np.float64)
            if values.nunique() <= 2:
                categorical.add(str(col))
        else:
            columns[str(col)] = values.astype(str).to_numpy(dtype=object)
            categorical.add(str(col))
    return Table(name, columns, frozenset(categorical & set(columns)))


def _by_period(t: Table, time: np.ndarray, cuts: list[float], label: str) -> None:
    """Consecutive periods ``[cuts[k], cuts[k+1])`` against each other."""
    for lo, mid, hi in zip(cuts, cuts[1:], cuts[2:], strict=False):
        a = np.flatnonzero((time >= lo) & (time < mid))
        b = np.flatnonzero((time >= mid) & (time < hi))
        t.splits.append((f"{label} {lo:.0f}-{mid - 1:.0f} vs {mid:.0f}-{hi - 1:.0f}", a, b, ()))


def _by_group(t: Table, mask: np.ndarray, label: str, defining: tuple[str, ...]) -> None:
    t.splits.append((label, np.flatnonzero(~mask), np.flatnonzero(mask), defining))


def _time_tables(ds: Any) -> list[Table]:
    macro = ds.macrodata.load_pandas().data
    t_macro = _table("macrodata", macro, drop=("year", "quarter"))
    _by_period(t_macro, macro["year"].to_numpy(), [1960, 1970, 1980, 1990, 2000, 2010], "decade")
    sun = ds.sunspots.load_pandas().data
    t_sun = _table("sunspots", sun, drop=("YEAR",))
    _by_period(t_sun, sun["YEAR"].to_numpy(), [1700, 1800, 1900, 2009], "century")
    nile = ds.nile.load_pandas().data
    t_nile = _table("nile", nile, drop=("year",))
    _by_period(t_nile, nile["year"].to_numpy(), [1871, 1899, 1971], "years")
    nino = ds.elnino.load_pandas().data
    t_nino = _table("elnino", nino, drop=("YEAR",))
    _by_period(t_nino, nino["YEAR"].to_numpy(), [1950, 1980, 2011], "years")
    infl = ds.interest_inflation.load_pandas().data
    t_infl = _table("interest_inflation", infl, drop=("year", "quarter"))
    _by_period(t_infl, infl["year"].to_numpy(), [1972, 1985, 1999], "years")
    return [t_macro, t_sun, t_nile, t_nino, t_infl]


def _group_tables(ds: Any) -> list[Table]:
    fair = ds.fair.load_pandas().data
    t_fair = _table("fair", fair, nominal=("occupation", "occupation_husb"))
    _by_group(t_fair, fair["affairs"].to_numpy() > 0, "affairs > 0 vs none", ("affairs",))
    star = ds.star98.load_pandas().data
    t_star = _table("star98", star)
    rate = (star["NABOVE"] / (star["NABOVE"] + star["NBELOW"])).to_numpy()
    _by_group(t_star, rate > np.median(rate), "pass rate above vs below median", ("NABOVE", "NBELOW"))
    out = [t_fair, t_star]
    for name, col, label, nominal in (
        ("spector", "GRADE", "grade improved vs not", ()),
        ("anes96", "vote", "voted Dole vs Clinton", ()),
        ("ccard", "OWNRENT", "owns vs rents", ()),
        ("heart", "censors", "censored vs not", ()),
        ("modechoice", "choice", "mode chosen vs not", ("mode",)),
    ):
        frame = getattr(ds, name).load_pandas().data
        t = _table(name, frame, drop=("individual",), nominal=nominal)
        _by_group(t, frame[col].to_numpy() > frame[col].min(), label, (col,))
        out.append(t)
    return out


def _null_only_tables(ds: Any) -> list[Table]:
    """Tables with no split we can defend; they count for the null rate only."""
    return [
        _table("engel", ds.engel.load_pandas().data),
        _table("grunfeld", ds.grunfeld.load_pandas().data, drop=("year",)),
        _table("randhie", ds.randhie.load_pandas().data),
        _table("statecrime", ds.statecrime.load_pandas().data),
        _table("strikes", ds.strikes.load_pandas().data),
        _table("scotland", ds.scotland.load_pandas().data),
    ]


def sklearn_tables() -> list[Table]:
    """scikit-learn's bundled tables of section (a), split by class (diabetes by sex), as :class:`Table`."""
    import pandas as pd
    from sklearn import datasets

    out = []
    for name in ("wine", "breast_cancer", "iris", "diabetes"):
        d = getattr(datasets, f"load_{name}")()
        t = _table(name, pd.DataFrame(np.asarray(d.data, dtype=np.float64), columns=list(d.feature_names)))
        if name == "diabetes":
            sex = t.columns["sex"]
            t.splits.append(("by sex", np.flatnonzero(sex == sex.min()), np.flatnonzero(sex == sex.max()), ("sex",)))
        else:
            y = np.asarray(d.target)
            t.splits.append(("class 0 vs class 1", np.flatnonzero(y == 0), np.flatnonzero(y == 1), ()))
        out.append(t)
    return out


def load_tables() -> list[Table] | None:
    """statsmodels' tables, or None (after one line saying so) when statsmodels is not installed."""
    try:
        from statsmodels import datasets
    except ImportError:
        print("(a2) statsmodels is not installed (pip install 'aitrace[test]'): its real tables are skipped")
        return None
    return _time_tables(datasets) + _group_tables(datasets) + _null_only_tables(datasets)


# ----------------------------------------------------------------------------- the two tests
def ours(a: Columns, b: Columns, categorical: frozenset[str]) -> bool:
    import aitrace
    from aitrace.detect import detect_drift

    ref = {f["name"]: f for f in aitrace.summarize(a, categorical=categorical)}
    cur = {f["name"]: f for f in aitrace.summarize(b, categorical=categorical)}
    return any(r.drifted for r in detect_drift(ref, cur, alpha=ALPHA, correction="holm"))


def _chi2_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import chi2_contingency

    keys = np.unique(np.concatenate([a, b]).astype(str))
    table = np.array([[np.sum(x.astype(str) == k) for k in keys] for x in (a, b)])
    table = table[:, table.sum(axis=0) > 0]
    return 1.0 if table.shape[1] < 2 else float(chi2_contingency(table).pvalue)


def baseline(a: Columns, b: Columns, categorical: frozenset[str]) -> bool:
    """scipy on the raw rows: KS (chi-square for categories), Bonferroni over the columns."""
    from scipy.stats import ks_2samp

    p = []
    for name in a:
        x, y = a[name], b[name]
        if name in categorical:
            p.append(_chi2_pvalue(x, y))
        else:
            x, y = x[~np.isnan(x)], y[~np.isnan(y)]
            with warnings.catch_warnings():  # "exact calculation unsuccessful, switching to asymp": expected
                warnings.simplefilter("ignore", RuntimeWarning)
                p.append(float(ks_2samp(x, y).pvalue) if min(x.size, y.size) else 1.0)
    return min(p) * len(p) < ALPHA


# ----------------------------------------------------------------------------- comparisons
def _take(columns: Columns, rows: np.ndarray, leave_out: tuple[str, ...] = ()) -> Columns:
    return {k: v[rows] for k, v in columns.items() if k not in leave_out}


def null_pairs(rng: np.random.Generator, t: Table, repeats: int, size: int | None) -> Iterator[Pair]:
    """Same population: random halves, or two disjoint random batches of ``size`` rows."""
    half = t.rows // 2 if size is None else size
    if half < 10 or 2 * half > t.rows:
        return
    for _ in range(repeats):
        order = rng.permutation(t.rows)
        yield t.name, _take(t.columns, order[:half]), _take(t.columns, order[half : 2 * half])


def batch_vs_half(rng: np.random.Generator, t: Table, repeats: int, size: int | None) -> Iterator[Pair]:
    """Same population, as a monitor sees it: half the table as reference, ``size`` rows of the rest."""
    half = t.rows // 2
    if size is None or half < 2 * size:
        return
    for _ in range(repeats):
        order = rng.permutation(t.rows)
        yield t.name, _take(t.columns, order[:half]), _take(t.columns, order[half : half + size])


def batch_vs_group(rng: np.random.Generator, t: Table, repeats: int, size: int | None) -> Iterator[Pair]:
    """Different populations, as a monitor sees them: one whole side as reference, ``size`` rows of the other."""
    for label, a, b, leave_out in t.splits:
        if size is None or b.size < size or a.size < 2 * size:
            continue
        for _ in range(repeats):
            rows = rng.choice(b, size, replace=False)
            yield f"{t.name}: {label}", _take(t.columns, a, leave_out), _take(t.columns, rows, leave_out)


def split_pairs(rng: np.random.Generator, t: Table, repeats: int, size: int | None) -> Iterator[Pair]:
    """Different populations: each split's two sides whole, or ``size`` random rows of each."""
    for label, a, b, leave_out in t.splits:
        if size is None:
            yield f"{t.name}: {label}", _take(t.columns, a, leave_out), _take(t.columns, b, leave_out)
            continue
        if min(a.size, b.size) < size:
            continue
        for _ in range(repeats):
            ra, rb = rng.choice(a, size, replace=False), rng.choice(b, size, replace=False)
            yield f"{t.name}: {label}", _take(t.columns, ra, leave_out), _take(t.columns, rb, leave_out)


Generator = Callable[[np.random.Generator, Table, int, int | None], Iterator[Pair]]
COMPARISONS: tuple[tuple[str, Generator, int | None], ...] = (
    ("null FPR, random halves", null_pairs, None),
    ("null FPR, 50-row batches", null_pairs, 50),
    ("power, whole groups", split_pairs, None),
    ("power, 20-row samples per group", split_pairs, 20),
    ("power, 10-row samples per group", split_pairs, 10),
    ("null FPR, 20-row batch vs half", batch_vs_half, 20),
    ("power, 20-row batch vs other group", batch_vs_group, 20),
)


def run(
    tables: list[Table], repeats: int, comparisons: Iterable[tuple[str, Generator, int | None]] = COMPARISONS
) -> dict[str, dict[str, tuple[int, int, int]]]:
    """``{comparison: {table: (ours' hits, baseline's hits, comparisons)}}``, both tests on the same pairs."""
    out: dict[str, dict[str, tuple[int, int, int]]] = {}
    for label, pairs, size in comparisons:
        rng = np.random.default_rng(1)
        per_table = out.setdefault(label, {})
        for t in tables:
            hits_ours = hits_base = n = 0
            for _name, a, b in pairs(rng, t, repeats, size):
                hits_ours += ours(a, b, t.categorical)
                hits_base += baseline(a, b, t.categorical)
                n += 1
            if n:
                per_table[t.name] = (hits_ours, hits_base, n)
    return out


def _share(hits: int, n: int) -> str:
    return f"{hits / n:6.1%}" if n else "     -"


def report(results: dict[str, dict[str, tuple[int, int, int]]]) -> None:
    print("    pooled over the tables           comparisons    ours  baseline  target")
    for label, per_table in results.items():
        o, b, n = (sum(v[i] for v in per_table.values()) for i in range(3))
        target = "<= 5%" if label.startswith("null") else ">= baseline"
        print(f"    {label:36s} {n:6d}  {_share(o, n)}    {_share(b, n)}  {target}")
    names = list(dict.fromkeys(name for per in results.values() for name in per))
    print("    by table (ours / baseline, n):")
    heads = [lab.split(",")[1].replace("samples per group", "each").replace("-row", "") for lab in results]
    heads = [h.replace("other group", "group").strip() for h in heads]
    print("    " + f"{'table':19s}" + "".join(f"{h[:17]:>18s}" for h in heads))
    for name in names:
        cells = []
        for per_table in results.values():
            o, b, n = per_table.get(name, (0, 0, 0))
            cells.append(f"{o / n:4.0%}/{b / n:4.0%} {n:3d}" if n else "-")
        print("    " + f"{name:19s}" + "".join(f"{c:>18s}" for c in cells))


def bench_statsmodels_tables(quick: bool) -> None:
    tables = load_tables()
    if tables is None:
        return
    repeats = 25 if quick else 100
    print(
        f"(a2) drift on summaries of statsmodels' real tables ({len(tables)} tables, {repeats} repeats): "
        "ours (summarize -> detect_drift, Holm) vs scipy KS / chi-square + Bonferroni on rows"
    )
    report(run(tables, repeats))


def bench_sklearn_batches(quick: bool) -> None:
    """Section (a)'s scikit-learn tables, as a monitor sees them: small batches against a reference."""
    repeats = 25 if quick else 100
    print(f"(a3) scikit-learn's tables, 20-row batches against a reference ({repeats} repeats): ours vs scipy on rows")
    report(run(sklearn_tables(), repeats, [c for c in COMPARISONS if "vs" in c[0]]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="25 repeats instead of 100")
    quick = parser.parse_args(argv).quick
    bench_statsmodels_tables(quick)
    bench_sklearn_batches(quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
