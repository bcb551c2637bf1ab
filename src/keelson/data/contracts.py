"""Contracts: validate a source against its rules, quarantining every failing row.

All checks are Polars expressions evaluated in one pass; no Python loop over rows.
Each input row ends up exactly once in ``kept`` or in ``quarantined`` (with the
first failing rule, and every reason), so ``rows_in == kept + quarantined`` always.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from keelson import __version__
from keelson.data.sources import SourceRead
from keelson.errors import ContractError
from keelson.spec import ColumnRule, ColumnType, Contract

META_COLUMNS = ("_row", "_rule", "_column", "_reason", "_raw")
RESERVED = {*META_COLUMNS, "_source"}
DEFAULT_MAX_SHARE = 0.05
QUARANTINE_FORMAT = "1"

_DTYPES: dict[ColumnType, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "str": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
}
_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_DATETIME_TZ_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")


@dataclass(frozen=True)
class Validation:
    """The outcome of validating one source: kept rows, quarantined rows with reasons."""

    source: str
    kept: pl.DataFrame
    quarantined: pl.DataFrame
    rows_in: int

    @property
    def share(self) -> float:
        return self.quarantined.height / self.rows_in if self.rows_in else 0.0

    def summary(self) -> dict[str, Any]:
        counts = (
            self.quarantined.group_by("_rule")
            .len()
            .sort(["len", "_rule"], descending=[True, False])
        )
        return {
            "source": self.source,
            "rows_in": self.rows_in,
            "kept": self.kept.height,
            "quarantined": self.quarantined.height,
            "share": self.share,
            "reasons": dict(zip(counts["_rule"].to_list(), counts["len"].to_list(), strict=True)),
        }


@dataclass(frozen=True)
class _Check:
    rule: str
    column: str | None
    fails: pl.Expr
    reason: pl.Expr


def validate(read: SourceRead, contract: Contract | None) -> Validation:
    """Apply ``contract`` to ``read``: cast declared types, quarantine every failing row."""
    contract = contract if contract is not None else Contract()
    frame = read.frame
    _check_columns(read.name, frame.columns, contract)
    types = {
        c: _effective_type(read.name, c, r, frame.schema[c]) for c, r in contract.columns.items()
    }
    typed = {c: _typed(pl.col(c), frame.schema[c], t).alias(_tmp(c)) for c, t in types.items() if t}
    checks = [
        check
        for col, rule in contract.columns.items()
        for check in _column_checks(read.name, col, rule, types[col], frame.schema[col])
    ]
    judged = (
        frame.with_row_index("_row", offset=1)
        .with_columns(pl.col("_row").cast(pl.Int64), *typed.values())
        .with_columns(_verdict(checks))
    )
    for key in contract.unique_keys:
        judged = judged.with_columns(_unique_verdict(key, types))
    ok = pl.col("_rule").is_null()
    kept = judged.filter(ok).select(
        pl.col(_tmp(c)).alias(c) if types.get(c) else pl.col(c) for c in frame.columns
    )
    failed = judged.filter(~ok).select(
        *(_as_text(c, frame.schema[c]) for c in frame.columns),
        "_row",
        "_rule",
        "_column",
        "_reason",
        pl.lit(None, pl.String).alias("_raw"),
    )
    quarantined = pl.concat([failed, _rejected_rows(read, frame.columns)], how="vertical")
    return Validation(read.name, kept, quarantined, read.rows_in)


def enforce(validation: Validation, contract: Contract | None) -> None:
    """Raise :class:`ContractError` when too large a share of the source was quarantined."""
    limit = contract.max_quarantine_share if contract else DEFAULT_MAX_SHARE
    if validation.share <= limit:
        return
    top = (
        validation.quarantined.group_by("_rule", "_column")
        .len()
        .sort(["len", "_rule"], descending=[True, False])
        .head(3)
    )
    reasons = ", ".join(
        f"{rule}{f' on {col!r}' if col else ''} ({n})" for rule, col, n in top.iter_rows()
    )
    raise ContractError(
        f"{validation.share:.1%} of {validation.rows_in} rows were quarantined, above the "
        f"limit of {limit:.1%}; top reasons: {reasons}.",
        where=f"source {validation.source!r}",
        hint="Look at the quarantine file for the rows and their reasons, fix the data or the "
        f"contract, or raise `contracts.{validation.source}.max_quarantine_share` in keelson.yaml.",
    )


def write_quarantine(validations: list[Validation], path: Path) -> Path:
    """Write every quarantined row of every source to one Parquet file, atomically."""
    import pyarrow.parquet as pq

    head = ["_source", *META_COLUMNS]
    frames = [v.quarantined.with_columns(_source=pl.lit(v.source)) for v in validations]
    empty = pl.DataFrame(schema={c: pl.Int64 if c == "_row" else pl.String for c in head})
    table = pl.concat([empty, *frames], how="diagonal")
    table = table.select(*head, *(c for c in table.columns if c not in head)).to_arrow()
    table = table.replace_schema_metadata(
        {"keelson.format": f"quarantine/{QUARANTINE_FORMAT}", "keelson.version": __version__}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            pq.write_table(table, out)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)  # atomic rename (os.replace)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- structure -----------------------------------------------------------------


def _check_columns(source: str, present: Sequence[str], contract: Contract) -> None:
    reserved = sorted(RESERVED.intersection(present))
    if reserved:
        raise ContractError(
            f"column names {reserved} are reserved for quarantine bookkeeping.",
            where=f"source {source!r}",
            hint="Rename the columns in the source (e.g. with an alias in the SQL query).",
        )
    keyed = [column for key in contract.unique_keys for column in key]
    for key, wanted in (("columns", list(contract.columns)), ("unique", keyed)):
        for col in wanted:
            if col not in present:
                raise ContractError(
                    f"column {col!r} is not in source {source!r}{_did_you_mean(col, present)}; "
                    f"the source has {list(present)}.",
                    where=f"contracts.{source}.{key}",
                    hint="Fix the column name in keelson.yaml or the source itself.",
                )
    extra = [c for c in present if c not in contract.columns]
    if contract.schema_changes.added == "fail" and extra:
        raise ContractError(
            f"source {source!r} has columns the contract does not list: {extra}.",
            where=f"contracts.{source}.columns",
            hint="Add them to the contract, or set schema_changes.added to adopt or ignore.",
        )


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _effective_type(
    source: str, col: str, rule: ColumnRule, dtype: pl.DataType
) -> ColumnType | None:
    """The declared type; a range on an undeclared text column implies ``float``."""
    ranged = rule.min is not None or rule.max is not None
    if ranged and rule.type not in (None, "int", "float"):
        raise ContractError(
            f"min/max apply to int or float columns, not {rule.type}.",
            where=f"contracts.{source}.columns.{col}",
            hint="Remove min/max or declare `type: int` or `type: float`.",
        )
    if rule.type is None and ranged and not dtype.is_numeric():
        return "float"
    return rule.type


def _tmp(col: str) -> str:
    return f"{col}\x00typed"


def _value(col: str, kind: ColumnType | None) -> pl.Expr:
    return pl.col(_tmp(col)) if kind else pl.col(col)


# --- casting -------------------------------------------------------------------


def _typed(expr: pl.Expr, dtype: pl.DataType, kind: ColumnType) -> pl.Expr:
    """``expr`` cast to ``kind``; a value that cannot be cast becomes null."""
    if dtype == _DTYPES[kind] or kind == "str":
        return expr.cast(_DTYPES[kind])
    if dtype == pl.String:
        expr = expr.str.strip_chars()
    return _CASTS[kind](expr, dtype)


def _to_int(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_integer() or dtype == pl.Boolean:
        return expr.cast(pl.Int64, strict=False)
    as_float = expr.cast(pl.Float64, strict=False)
    whole = as_float.is_finite() & (as_float.floor() == as_float) & (as_float.abs() < 2.0**63)
    from_float = pl.when(whole).then(as_float).cast(pl.Int64, strict=False)
    if dtype == pl.String:
        return pl.coalesce(expr.cast(pl.Int64, strict=False), from_float)
    return from_float


def _to_float(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return expr.cast(pl.Float64, strict=False)


def _to_bool(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return expr.str.to_lowercase().replace_strict(_BOOLS, default=None, return_dtype=pl.Boolean)
    if dtype.is_numeric():
        return pl.when(expr == 1).then(True).when(expr == 0).then(False)
    return expr.cast(pl.Boolean, strict=False)


def _to_date(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return expr.str.to_date("%Y-%m-%d", strict=False)
    return expr.cast(pl.Date, strict=False)


def _to_datetime(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us"))
    if dtype != pl.String:
        return expr.cast(pl.Datetime("us"), strict=False)
    naive = [expr.str.to_datetime(f, strict=False, time_unit="us") for f in _DATETIME_FORMATS]
    aware = [
        expr.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC").dt.replace_time_zone(
            None
        )
        for f in _DATETIME_TZ_FORMATS
    ]
    return pl.coalesce(*naive, *aware)


_CASTS: dict[ColumnType, Callable[[pl.Expr, pl.DataType], pl.Expr]] = {
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "date": _to_date,
    "datetime": _to_datetime,
}


def _as_text(col: str, dtype: pl.DataType) -> pl.Expr:
    """The value as text, as close as possible to how it came (nested values as JSON)."""
    if dtype.is_nested():
        encoded = pl.struct(pl.col(col).alias("v")).struct.json_encode()
        text = encoded.str.strip_prefix('{"v":').str.strip_suffix("}")
        return pl.when(pl.col(col).is_not_null()).then(text).alias(col)
    return pl.col(col).cast(pl.String).alias(col)


# --- rules ---------------------------------------------------------------------


def _say(*parts: str | pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _column_checks(
    source: str, col: str, rule: ColumnRule, kind: ColumnType | None, dtype: pl.DataType
) -> list[_Check]:
    """Every check of one column, in order: type, null, min, max, allowed."""
    raw = _as_text(col, dtype)
    value = _value(col, kind)
    checks = []
    if kind and kind != "str":
        what = kind if rule.type else "number"
        checks.append(
            _Check(
                "type",
                col,
                pl.col(col).is_not_null() & value.is_null(),
                _say(f"{col}=", raw, f" is not {'an' if what == 'int' else 'a'} {what}"),
            )
        )
    if not rule.nullable:
        checks.append(
            _Check("null", col, pl.col(col).is_null(), _say(f"{col} is null (nullable: false)"))
        )
    if rule.min is not None:
        checks.append(
            _Check(
                "min", col, value < rule.min, _say(f"{col}=", raw, f" below min {_num(rule.min)}")
            )
        )
    if rule.max is not None:
        checks.append(
            _Check(
                "max", col, value > rule.max, _say(f"{col}=", raw, f" above max {_num(rule.max)}")
            )
        )
    if rule.allowed is not None:
        checks.append(_allowed_check(source, col, rule.allowed, value, raw, kind, dtype))
    return checks


def _allowed_check(
    source: str,
    col: str,
    allowed: list[str | int | float | bool],
    value: pl.Expr,
    raw: pl.Expr,
    kind: ColumnType | None,
    dtype: pl.DataType,
) -> _Check:
    target = _DTYPES[kind] if kind else dtype
    if target.is_numeric():
        members: list[Any] = [_allowed_number(source, col, v) for v in allowed]
        inside = value.cast(pl.Float64).is_in(pl.Series(members, dtype=pl.Float64).implode())
    elif target == pl.Boolean:
        members = [_allowed_bool(source, col, v) for v in allowed]
        inside = value.is_in(pl.Series(members, dtype=pl.Boolean).implode())
    else:
        members = [_allowed_text(v) for v in allowed]
        inside = value.cast(pl.String).is_in(pl.Series(members, dtype=pl.String).implode())
    shown = ", ".join(str(_allowed_text(v)) for v in allowed)
    return _Check(
        "allowed",
        col,
        value.is_not_null() & ~inside,
        _say(f"{col}=", raw, f" not in allowed [{shown}]"),
    )


def _allowed_text(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return _num(v) if isinstance(v, float) else str(v)


def _allowed_number(source: str, col: str, v: str | int | float | bool) -> float:
    try:
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    except ValueError:
        raise ContractError(
            f"allowed value {v!r} is not a number but column {col!r} is numeric.",
            where=f"contracts.{source}.columns.{col}.allowed",
            hint="List numbers, or declare `type: str` to compare as text.",
        ) from None


def _allowed_bool(source: str, col: str, v: str | int | float | bool) -> bool:
    text = _allowed_text(v).lower()
    if text not in _BOOLS:
        raise ContractError(
            f"allowed value {v!r} is not a boolean but column {col!r} is bool.",
            where=f"contracts.{source}.columns.{col}.allowed",
            hint="List true/false, or declare `type: str` to compare as text.",
        )
    return _BOOLS[text]


def _verdict(checks: list[_Check]) -> list[pl.Expr]:
    """``_rule``/``_column`` of the first failing check and ``_reason`` joining them all."""
    if not checks:
        return [pl.lit(None, pl.String).alias(name) for name in ("_rule", "_column", "_reason")]
    fails = [c.fails.fill_null(False) for c in checks]
    return [
        pl.coalesce(
            pl.when(f).then(pl.lit(c.rule)) for f, c in zip(fails, checks, strict=True)
        ).alias("_rule"),
        pl.coalesce(
            pl.when(f).then(pl.lit(c.column, pl.String)) for f, c in zip(fails, checks, strict=True)
        ).alias("_column"),
        pl.concat_str(
            [pl.when(f).then(c.reason) for f, c in zip(fails, checks, strict=True)],
            separator="; ",
            ignore_nulls=True,
        )
        .replace("", None)
        .alias("_reason"),
    ]


def _unique_verdict(key: list[str], types: dict[str, ColumnType | None]) -> list[pl.Expr]:
    """Quarantine later duplicates of the key among rows that passed every other rule."""
    values = [_value(c, types.get(c)) for c in key]
    passing = pl.col("_rule").is_null()
    dup = passing & ~pl.struct(values).is_first_distinct().over(passing)
    first = pl.col("_row").min().over(passing, *values).cast(pl.String)
    shown: list[str | pl.Expr] = []
    for i, col in enumerate(key):
        shown += [f"{', ' if i else ''}{col}=", pl.col(col).cast(pl.String).fill_null("null")]
    reason = _say("duplicate key ", *shown, " (first at row ", first, ")")
    return [
        pl.when(dup).then(pl.lit("unique")).otherwise("_rule").alias("_rule"),
        pl.when(dup).then(pl.lit(", ".join(key))).otherwise("_column").alias("_column"),
        pl.when(dup).then(reason).otherwise("_reason").alias("_reason"),
    ]


def _rejected_rows(read: SourceRead, columns: Sequence[str]) -> pl.DataFrame:
    """Rows the connector could not parse, shaped like the other quarantined rows."""
    return read.rejected.select(
        *(pl.lit(None, pl.String).alias(c) for c in columns),
        pl.col("_row").cast(pl.Int64),
        pl.col("_rule").cast(pl.String),
        pl.lit(None, pl.String).alias("_column"),
        pl.col("_reason").cast(pl.String),
        pl.col("_raw").cast(pl.String),
    )
