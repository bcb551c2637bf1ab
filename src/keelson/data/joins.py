"""Joins: key joins with cardinality checks, and point-in-time (as-of) joins.

Every join checks its keys first (present on both sides, comparable types, the
uniqueness its ``validate`` promises) and reports what it did: rows before and
after, and how many left rows found no partner.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import polars as pl
from polars._typing import TimeUnit

from keelson.data.contracts import parse_duration
from keelson.errors import ContractError
from keelson.spec import AsOf, Join

# which side of a join must have unique keys, per `validate`
_UNIQUE_SIDES = {"m:1": ("right",), "1:1": ("left", "right"), "1:m": ("left",), "m:m": ()}
_ROW, _TIME, _MATCHED = "\x00row", "\x00time", "\x00matched"
_TIME_UNITS: tuple[TimeUnit, ...] = ("ms", "us", "ns")  # coarse to fine


def join(
    left: pl.DataFrame, right: pl.DataFrame, spec: Join, where: str
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Join ``right`` (source ``spec.source``) onto ``left``; return the table and its stats.

    ``where`` is the key path of the join in the spec, e.g. ``integrate.joins[0]``.
    """
    for side, frame in (("left", left), ("right", right)):
        what = f"the {side} side of the join with {spec.source!r}"
        require_columns(frame.columns, spec.keys, f"{where}.keys", what)
    left, right = align_keys(left, right, spec.keys, spec.source, f"{where}.keys")
    if spec.as_of is None:
        joined, unmatched = _join_on_keys(left, right, spec, where)
    else:
        joined, unmatched = _join_as_of(left, right, spec, spec.as_of, where)
    stat = {
        "source": spec.source,
        "keys": list(spec.keys),
        "how": spec.how,
        "as_of": None if spec.as_of is None else spec.as_of.model_dump(),
        "rows_before": left.height,
        "rows_after": joined.height,
        "unmatched_left": unmatched,
    }
    return joined, stat


def require_columns(present: Sequence[str], wanted: Sequence[str], where: str, what: str) -> None:
    """Raise a :class:`ContractError` (with a did-you-mean) for the first missing column."""
    for col in wanted:
        if col not in present:
            raise ContractError(
                f"column {col!r} is not in {what}{did_you_mean(col, present)}; "
                f"it has {list(present)}.",
                where=where,
                hint="Fix the column name in keelson.yaml.",
            )


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- key joins -------------------------------------------------------------------


def _join_on_keys(
    left: pl.DataFrame, right: pl.DataFrame, spec: Join, where: str
) -> tuple[pl.DataFrame, int]:
    for side in _UNIQUE_SIDES[spec.validate_]:
        _require_unique(left if side == "left" else right, spec.keys, spec, side, where)
    right = right.rename(_clashes(left, right, spec.keys, spec.source, where))
    joined = left.join(right, on=spec.keys, how=spec.how, coalesce=True, maintain_order="left")
    unmatched = left.join(right.select(spec.keys).unique(), on=spec.keys, how="anti").height
    return joined, unmatched


def align_keys(
    left: pl.DataFrame, right: pl.DataFrame, keys: Sequence[str], source: str, where: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give each key the same type on both sides: numbers widen, anything else becomes text."""
    casts = []
    for key in keys:
        lt, rt = left.schema[key], right.schema[key]
        if lt == rt:
            continue
        target = _common_type(lt, rt)
        if target is None:
            raise ContractError(
                f"key {key!r} is {lt} on the left and {rt} in {source!r}; they cannot be compared.",
                where=where,
                hint="Declare the same `type` for the key in both contracts.",
            )
        casts.append(pl.col(key).cast(target))
    return left.with_columns(casts), right.with_columns(casts)


def _common_type(a: pl.DataType, b: pl.DataType) -> pl.DataType | None:
    if a.is_numeric() and b.is_numeric():
        return pl.Float64() if a.is_float() or b.is_float() else pl.Int64()
    if a.is_nested() or b.is_nested():
        return None
    return pl.String()


def _require_unique(
    frame: pl.DataFrame, columns: Sequence[str], spec: Join, side: str, where: str
) -> None:
    dupes = (
        frame.select(columns)
        .drop_nulls()
        .group_by(columns)
        .len()
        .filter(pl.col("len") > 1)
        .sort("len", *columns, descending=[True, *[False] * len(columns)])
    )
    if dupes.height == 0:
        return
    example = dupes.row(0, named=True)
    key = ", ".join(f"{k}={example[k]!r}" for k in columns)
    owner = spec.source if side == "right" else "the left table"
    raise ContractError(
        f"join with {spec.source!r} expects {spec.validate_} but {owner} has duplicated keys "
        f"({dupes.height} in all), e.g. {key} on {example['len']} rows.",
        where=f"{where}.validate",
        hint=f"Add `unique: {list(columns)}` to the contract of the source so duplicates are "
        "quarantined, or set `validate: m:m` if the fan-out is intended.",
    )


def _clashes(
    left: pl.DataFrame, right: pl.DataFrame, shared: Sequence[str], source: str, where: str
) -> dict[str, str]:
    """Right-side columns also on the left (``shared`` aside) get the suffix ``_<source>``."""
    renames = {c: f"{c}_{source}" for c in right.columns if c in left.columns and c not in shared}
    taken = [new for new in renames.values() if new in left.columns or new in right.columns]
    if taken:
        raise ContractError(
            f"renaming clashing columns from {source!r} would create {taken}, which exist.",
            where=where,
            hint="Rename the columns at the source (reconcile.<source>.rename).",
        )
    return renames


# --- as-of joins -------------------------------------------------------------------


def _join_as_of(
    left: pl.DataFrame, right: pl.DataFrame, spec: Join, as_of: AsOf, where: str
) -> tuple[pl.DataFrame, int]:
    """Each left row takes the right row of the same entity nearest in time, per ``as_of``.

    The join runs on a copy of each time column in one common type, so both tables keep
    their columns as they are; the right's time column is kept too (suffixed on a clash).
    """
    left_time, right_time = _instants(left, right, spec.source, as_of, where)
    for side in _UNIQUE_SIDES[spec.validate_]:
        frame, time = (left, as_of.left_on) if side == "left" else (right, as_of.right_on)
        _require_unique(frame, [*spec.keys, time], spec, side, where)
    renames = _clashes(left, right, spec.keys, spec.source, where)
    right = right.with_columns(right_time.alias(_TIME), pl.lit(True).alias(_MATCHED))
    right = right.rename(renames)
    indexed = left.with_row_index(_ROW).with_columns(left_time.alias(_TIME))
    dated = pl.col(_TIME).is_not_null()
    joined = (
        indexed.filter(dated)
        .sort(_TIME, maintain_order=True)
        .join_asof(
            right.filter(dated).sort(_TIME, maintain_order=True),
            on=_TIME,
            by=list(spec.keys) or None,
            strategy=as_of.strategy,
            tolerance=None if as_of.tolerance is None else parse_duration(as_of.tolerance),
            allow_exact_matches=as_of.allow_exact_matches,
            check_sortedness=not spec.keys,  # sorted above; Polars cannot check within groups
        )
    )
    result = pl.concat([joined, indexed.filter(~dated)], how="diagonal").sort(_ROW)
    matched = pl.col(_MATCHED).is_not_null()
    unmatched = result.select((~matched).sum()).item()
    if spec.how == "inner":
        result = result.filter(matched)
    return result.drop(_ROW, _TIME, _MATCHED), unmatched


def _instants(
    left: pl.DataFrame, right: pl.DataFrame, source: str, as_of: AsOf, where: str
) -> tuple[pl.Expr, pl.Expr]:
    """Both time columns as comparable values: dates when both are dates, else naive UTC
    datetimes (aware values converted; naive ones are already UTC by convention)."""
    require_columns(left.columns, [as_of.left_on], f"{where}.as_of.left_on", "the left table")
    require_columns(right.columns, [as_of.right_on], f"{where}.as_of.right_on", repr(source))
    lt, rt = left.schema[as_of.left_on], right.schema[as_of.right_on]
    for col, dtype, key in ((as_of.left_on, lt, "left_on"), (as_of.right_on, rt, "right_on")):
        if not isinstance(dtype, pl.Date | pl.Datetime):
            raise ContractError(
                f"time column {col!r} is {dtype}; an as-of join needs a date or datetime.",
                where=f"{where}.as_of.{key}",
                hint="Convert it first, e.g. `reconcile.<source>.coerce: {column: datetime}`.",
            )
    if lt == pl.Date and rt == pl.Date:
        return pl.col(as_of.left_on), pl.col(as_of.right_on)
    units = [d.time_unit for d in (lt, rt) if isinstance(d, pl.Datetime)]
    unit = max(units, key=_TIME_UNITS.index)
    return _utc(as_of.left_on, lt, unit), _utc(as_of.right_on, rt, unit)


def _utc(col: str, dtype: pl.DataType, unit: TimeUnit) -> pl.Expr:
    expr = pl.col(col)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return expr.cast(pl.Datetime(unit))
