"""Profile: per-column statistics of a table, computed with Polars in two passes."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import polars as pl

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
            out[stat] = _plain(row[_key(col, stat)])
    if top is not None:
        out["top"] = top
    return out


def _plain(value: Any) -> float | int | str | None:
    """A JSON-safe scalar: NaN and infinities become None, dates ISO text."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if value is None or isinstance(value, int | str) else str(value)
