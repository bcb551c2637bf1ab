"""Profile: per-column statistics of a table, computed with Polars in a few passes.

:func:`profile` gives one dict per column (missing, distinct, numbers or top values);
:func:`profile_table` adds histograms, duplicate rows and numeric correlations in a
versioned JSON document, the reference that monitoring later compares live data with.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl

from keelson import __version__

PROFILE_FORMAT = "keelson.profile/1"
HISTOGRAM_BINS = 20
_QUANTILES = {"p05": 0.05, "p50": 0.5, "p95": 0.95}
_TOP = 5


def profile(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """One JSON-serialisable dict per column: missing, distinct, and numbers or top values."""
    if not frame.columns:
        return []
    stats = frame.select(expr for col, dtype in frame.schema.items() for expr in _stats(col, dtype))
    row = stats.row(0, named=True)
    tops = _tops(frame)
    return [
        _column(col, dtype, row, tops.get(col), frame.height) for col, dtype in frame.schema.items()
    ]


def _key(col: str, stat: str) -> str:
    return f"{col}\x00{stat}"


def _stats(col: str, dtype: pl.DataType) -> list[pl.Expr]:
    c = pl.col(col)
    missing = c.is_null() | c.is_nan() if dtype.is_float() else c.is_null()
    exprs = [
        missing.sum().alias(_key(col, "missing")),
        c.drop_nulls().n_unique().alias(_key(col, "distinct")),
    ]
    if dtype.is_numeric():
        x = (c.fill_nan(None) if dtype.is_float() else c).cast(pl.Float64)
        exprs += [
            x.min().alias(_key(col, "min")),
            x.max().alias(_key(col, "max")),
            x.mean().alias(_key(col, "mean")),
            x.std().alias(_key(col, "std")),
            *(x.quantile(q, "linear").alias(_key(col, k)) for k, q in _QUANTILES.items()),
        ]
    elif dtype.is_temporal() and dtype != pl.Duration and dtype != pl.Time:
        exprs += [c.min().alias(_key(col, "min")), c.max().alias(_key(col, "max"))]
    return exprs


def _has_top(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Boolean) or isinstance(dtype, pl.Categorical | pl.Enum)


def _tops(frame: pl.DataFrame) -> dict[str, list[list[Any]]]:
    """The most frequent non-null values of every text-like column, in one select."""
    cols = [c for c, t in frame.schema.items() if _has_top(t)]
    if not cols:
        return {}
    counts = frame.select(
        pl.col(c)
        .drop_nulls()
        .cast(pl.String)
        .value_counts(sort=True, name="count")
        .head(_TOP)
        .implode()
        for c in cols
    ).row(0, named=True)
    return {c: [[item[c], item["count"]] for item in counts[c]] for c in cols}


def _column(
    col: str, dtype: pl.DataType, row: dict[str, Any], top: list[list[Any]] | None, height: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": col, "dtype": str(dtype)}
    out["missing"] = int(row[_key(col, "missing")] or 0)
    out["missing_share"] = out["missing"] / height if height else 0.0
    out["distinct"] = int(row[_key(col, "distinct")])
    for stat in ("min", "max", "mean", "std", *_QUANTILES):
        if _key(col, stat) in row:
            out[stat] = json_scalar(row[_key(col, stat)])
    if top is not None:
        out["top"] = top
    return out


def json_scalar(value: Any) -> float | int | str | None:
    """A JSON-safe scalar: NaN and infinities become None, dates ISO text."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if value is None or isinstance(value, int | str) else str(value)


# --- whole-table profile -------------------------------------------------------


def profile_table(frame: pl.DataFrame, *, max_columns_for_correlation: int = 50) -> dict[str, Any]:
    """The versioned JSON profile of a table: columns with histograms, duplicates, correlations.

    Histograms cover each numeric column's finite values: integer columns spanning at
    most :data:`HISTOGRAM_BINS` values get one bin per value, others that many equal-width
    bins (the first closed on both sides, the others on the right); infinities are counted
    apart as ``non_finite``. Correlations are Pearson, over the rows where both columns
    are finite, for the first ``max_columns_for_correlation`` numeric columns; the rest
    are listed as ``omitted``. ``duplicates`` counts rows equal to an earlier row.
    """
    numeric = [c for c, t in frame.schema.items() if t.is_numeric()]
    ranges, duplicates = _ranges_and_duplicates(frame, numeric)
    histograms = _histograms(frame, ranges)
    columns = [
        column | ({"histogram": histograms[column["name"]]} if column["name"] in ranges else {})
        for column in profile(frame)
    ]
    return {
        "format": PROFILE_FORMAT,
        "keelson_version": __version__,
        "rows": frame.height,
        "columns": frame.width,
        "duplicates": duplicates,
        "columns_profile": columns,
        "correlations": _correlations(frame, numeric, max_columns_for_correlation),
    }


def _finite(col: str) -> pl.Expr:
    """The column as Float64 with NaN and infinities turned into nulls."""
    x = pl.col(col).cast(pl.Float64)
    return pl.when(x.is_finite()).then(x)


def _range_stats(col: str) -> dict[str, pl.Expr]:
    return {
        "lo": _finite(col).min(),
        "hi": _finite(col).max(),
        "n": _finite(col).count(),
        "inf": pl.col(col).cast(pl.Float64).is_infinite().sum(),
    }


def _ranges_and_duplicates(
    frame: pl.DataFrame, numeric: list[str]
) -> tuple[dict[str, dict[str, Any]], int]:
    """Per numeric column its finite min, max, count and infinities; and the duplicate rows."""
    exprs = [e.alias(_key(c, stat)) for c in numeric for stat, e in _range_stats(c).items()]
    if frame.width:
        exprs.append(pl.struct(pl.all()).n_unique().alias("\x00unique"))
    row = frame.select(exprs).row(0, named=True) if exprs else {}
    duplicates = frame.height - int(row.pop("\x00unique", 0))
    ranges = {
        c: {stat: row[_key(c, stat)] for stat in ("lo", "hi", "n", "inf")}
        | {"integer": frame.schema[c].is_integer()}
        for c in numeric
    }
    return ranges, duplicates


def _edges(lo: float, hi: float, integer: bool) -> list[float]:
    if integer and hi - lo < HISTOGRAM_BINS:
        return [lo - 0.5 + step for step in range(int(hi - lo) + 2)]
    width = (hi - lo) / HISTOGRAM_BINS
    return [lo + step * width for step in range(HISTOGRAM_BINS)] + [hi]


def _histograms(
    frame: pl.DataFrame, ranges: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Bin every numeric column in one select; constant and empty columns need no pass."""
    out: dict[str, dict[str, Any]] = {}
    binned: dict[str, list[float]] = {}
    for col, r in ranges.items():
        out[col] = {"edges": [], "counts": [], "non_finite": int(r["inf"] or 0)}
        if r["n"] and r["lo"] == r["hi"]:
            out[col] |= {"edges": [r["lo"], r["hi"]], "counts": [int(r["n"])]}
        elif r["n"]:
            binned[col] = _edges(r["lo"], r["hi"], r["integer"])
    if binned:
        counts = frame.select(
            _finite(col).hist(bins=edges).implode().alias(col) for col, edges in binned.items()
        ).row(0, named=True)
        for col, edges in binned.items():
            out[col] |= {"edges": edges, "counts": [int(n) for n in counts[col]]}
    return out


def _correlations(frame: pl.DataFrame, numeric: list[str], limit: int) -> dict[str, Any]:
    """Pearson correlation of every pair of the first ``limit`` numeric columns, in one select."""
    limit = max(limit, 0)
    chosen = numeric[:limit]
    pairs = [(i, j) for i in range(len(chosen)) for j in range(i, len(chosen))]
    values: list[list[Any]] = [[None] * len(chosen) for _ in chosen]
    if pairs and frame.height:
        row = frame.select(
            _pair_corr(chosen[i], chosen[j]).alias(f"{i},{j}") for i, j in pairs
        ).row(0)
        for (i, j), value in zip(pairs, row, strict=True):
            values[i][j] = values[j][i] = json_scalar(value)
    return {"method": "pearson", "columns": chosen, "values": values, "omitted": numeric[limit:]}


def _pair_corr(a: str, b: str) -> pl.Expr:
    both = _finite(a).is_not_null() & _finite(b).is_not_null()
    return pl.corr(_finite(a).filter(both), _finite(b).filter(both))
