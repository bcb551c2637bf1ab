"""Integrate: join the validated sources into one table, checking every join first."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import polars as pl

from keelson.errors import ContractError
from keelson.spec import Integrate, Join

# which side of a join must have unique keys, per `validate`
_UNIQUE_SIDES = {"m:1": ("right",), "1:1": ("left", "right"), "1:m": ("left",), "m:m": ()}


def integrate(
    frames: dict[str, pl.DataFrame], spec: Integrate | None
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Join ``frames`` as ``spec`` says; return the table and one stats dict per join."""
    if spec is None:
        if len(frames) != 1:
            raise ContractError(
                f"{len(frames)} sources ({sorted(frames)}) but no 'integrate' section.",
                where="integrate",
                hint="Add `integrate: {base: ..., joins: [...]}` to keelson.yaml.",
            )
        return next(iter(frames.values())), []
    table = _frame(frames, spec.base, "integrate.base")
    stats = []
    for i, join in enumerate(spec.joins):
        right = _frame(frames, join.source, f"integrate.joins[{i}].source")
        table, stat = _join(table, right, join, f"integrate.joins[{i}]")
        stats.append(stat)
    return _drop(table, spec.drop), stats


def _frame(frames: dict[str, pl.DataFrame], name: str, where: str) -> pl.DataFrame:
    if name not in frames:
        raise ContractError(f"no table for source {name!r}; have {sorted(frames)}.", where=where)
    return frames[name]


def _join(
    left: pl.DataFrame, right: pl.DataFrame, join: Join, where: str
) -> tuple[pl.DataFrame, dict[str, Any]]:
    for side, frame in (("left", left), ("right", right)):
        _require(
            frame, join.keys, f"{where}.keys", f"the {side} side of the join with {join.source!r}"
        )
    left, right = _align_keys(left, right, join, where)
    for side in _UNIQUE_SIDES[join.validate_]:
        _require_unique(left if side == "left" else right, join, side, where)
    right = right.rename(_clashes(left, right, join))
    joined = left.join(right, on=join.keys, how=join.how, coalesce=True, maintain_order="left")
    unmatched = left.join(right.select(join.keys).unique(), on=join.keys, how="anti").height
    stat = {
        "source": join.source,
        "keys": list(join.keys),
        "how": join.how,
        "rows_before": left.height,
        "rows_after": joined.height,
        "unmatched_left": unmatched,
    }
    return joined, stat


def _require(frame: pl.DataFrame, columns: Sequence[str], where: str, what: str) -> None:
    for col in columns:
        if col not in frame.columns:
            close = difflib.get_close_matches(col, frame.columns, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise ContractError(
                f"column {col!r} is not in {what}{guess}; it has {frame.columns}.",
                where=where,
                hint="Fix the column name in keelson.yaml.",
            )


def _align_keys(
    left: pl.DataFrame, right: pl.DataFrame, join: Join, where: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give each key the same type on both sides: numbers widen, anything else becomes text."""
    casts_left, casts_right = [], []
    for key in join.keys:
        lt, rt = left.schema[key], right.schema[key]
        if lt == rt:
            continue
        target = _common_type(lt, rt)
        if target is None:
            raise ContractError(
                f"key {key!r} is {lt} on the left and {rt} in {join.source!r}; "
                "they cannot be compared.",
                where=f"{where}.keys",
                hint="Declare the same `type` for the key in both contracts.",
            )
        casts_left.append(pl.col(key).cast(target))
        casts_right.append(pl.col(key).cast(target))
    return left.with_columns(casts_left), right.with_columns(casts_right)


def _common_type(a: pl.DataType, b: pl.DataType) -> pl.DataType | None:
    if a.is_numeric() and b.is_numeric():
        return pl.Float64() if a.is_float() or b.is_float() else pl.Int64()
    if a.is_nested() or b.is_nested():
        return None
    return pl.String()


def _require_unique(frame: pl.DataFrame, join: Join, side: str, where: str) -> None:
    dupes = (
        frame.select(join.keys)
        .drop_nulls()
        .group_by(join.keys)
        .len()
        .filter(pl.col("len") > 1)
        .sort("len", descending=True)
    )
    if dupes.height == 0:
        return
    example = dupes.row(0, named=True)
    key = ", ".join(f"{k}={example[k]!r}" for k in join.keys)
    owner = join.source if side == "right" else "the left table"
    raise ContractError(
        f"join with {join.source!r} expects {join.validate_} but {owner} has duplicated keys "
        f"({dupes.height} in all), e.g. {key} on {example['len']} rows.",
        where=f"{where}.validate",
        hint=f"Add `unique: {list(join.keys)}` to the contract of the source so duplicates are "
        "quarantined, or set `validate: m:m` if the fan-out is intended.",
    )


def _clashes(left: pl.DataFrame, right: pl.DataFrame, join: Join) -> dict[str, str]:
    """Right-side columns also on the left (keys aside) get the suffix ``_<source>``."""
    renames = {
        c: f"{c}_{join.source}" for c in right.columns if c in left.columns and c not in join.keys
    }
    taken = [new for new in renames.values() if new in left.columns or new in right.columns]
    if taken:
        raise ContractError(
            f"renaming clashing columns from {join.source!r} would create {taken}, which exist.",
            where="integrate.joins",
            hint="Rename the columns at the source.",
        )
    return renames


def _drop(table: pl.DataFrame, drop: Sequence[str]) -> pl.DataFrame:
    _require(table, drop, "integrate.drop", "the integrated table")
    return table.drop(drop)
