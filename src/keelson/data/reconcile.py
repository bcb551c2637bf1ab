"""Reconcile: make one source agree with the others before its contract is checked.

Steps, in this order: rename, standardize, coerce, units, timezone, derive. A value
that does not convert (``coerce``, or a time that does not parse or does not exist in
its zone) moves its row to the source's rejected rows with the reason, so it ends in
the quarantine: rows in = rows kept + rows rejected, always.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from typing import Any

import polars as pl

from keelson.data.joins import did_you_mean, require_columns
from keelson.data.rules import as_text, cast_to
from keelson.data.sources import REJECTED_SCHEMA, SourceRead, rejects
from keelson.errors import ContractError
from keelson.spec import ColumnType, Reconcile, TimeZone, UnitConversion

_ROW = "\x00row"
# a time of day followed by a UTC offset or Z: "…10:00:00+02:00", "…10:00Z"
_OFFSET = r"\d:\d\d(:\d\d(\.\d+)?)?\s*([zZ]|[+-]\d\d(:?\d\d)?)$"

Spellings = Mapping[str, list[str | int | float | bool]]


def reconcile(read: SourceRead, spec: Reconcile, source: str) -> SourceRead:
    """Apply ``spec`` (the ``reconcile.<source>`` section) to ``read``."""
    where = f"reconcile.{source}"
    frame = _rename(read.frame, spec.rename, f"{where}.rename")
    frame = _standardize(frame, spec.standardize, f"{where}.standardize")
    frame = frame.with_row_index(_ROW, offset=1)
    frame, coerced = _coerce(frame, spec.coerce, f"{where}.coerce")
    frame = _convert_units(frame, spec.units, f"{where}.units")
    frame, unzoned = _normalise_zones(frame, spec.timezone, f"{where}.timezone")
    frame = derive_columns(frame.drop(_ROW), spec.derive, f"{where}.derive")
    earlier = read.rejected.select(pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items())
    rejected = pl.concat([earlier, _with_raw(pl.concat([coerced, unzoned]), read.frame)])
    return SourceRead(read.name, frame, rejected, read.fingerprint)


def derive_columns(frame: pl.DataFrame, derive: Mapping[str, str], where: str) -> pl.DataFrame:
    """Add each column of ``derive`` (name: Polars SQL expression) in order."""
    for col, sql in derive.items():
        if col in frame.columns:
            raise ContractError(
                f"column {col!r} already exists; derive makes new columns.",
                where=f"{where}.{col}",
                hint="Choose a new name (and drop the old column if it is not needed).",
            )
        try:
            frame = frame.with_columns(pl.sql_expr(sql).alias(col))
        except pl.exceptions.PolarsError as exc:
            raise ContractError(
                f"the expression {sql!r} cannot be evaluated: {_first_line(exc)}",
                where=f"{where}.{col}",
                hint=f"Write a Polars SQL expression over the columns {_columns(frame)}.",
            ) from None
    return frame


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != _ROW]


def _require(frame: pl.DataFrame, col: str, where: str) -> pl.DataType:
    require_columns(_columns(frame), [col], where, "the source")
    return frame.schema[col]


# --- rename and standardize ----------------------------------------------------------


def _rename(frame: pl.DataFrame, renames: Mapping[str, str], where: str) -> pl.DataFrame:
    kept = [c for c in frame.columns if c not in renames]
    targets = list(renames.values())
    for old, new in renames.items():
        _require(frame, old, f"{where}.{old}")
        if new in kept or targets.count(new) > 1:
            raise ContractError(
                f"renaming {old!r} to {new!r} would give two columns named {new!r}.",
                where=f"{where}.{old}",
                hint=f"Rename {new!r} too, or choose another name.",
            )
    return frame.rename(dict(renames))


def _standardize(frame: pl.DataFrame, spec: Mapping[str, Spellings], where: str) -> pl.DataFrame:
    """Map spellings to canonical values (as text; trimmed, case-insensitive)."""
    exprs = []
    for col, canon in spec.items():
        if _require(frame, col, f"{where}.{col}").is_nested():
            raise ContractError(f"column {col!r} holds lists or structs.", where=f"{where}.{col}")
        mapping = _spellings(canon, f"{where}.{col}")
        text = pl.col(col).cast(pl.String)
        key = text.str.strip_chars().str.to_lowercase()
        exprs.append(key.replace_strict(mapping, default=text, return_dtype=pl.String).alias(col))
    return frame.with_columns(exprs)


def _spellings(canon: Spellings, where: str) -> dict[str, str]:
    """Spelling (normalised) to canonical value; each canonical value spells itself."""
    mapping: dict[str, str] = {}
    for value, spellings in canon.items():
        for spelling in [value, *spellings]:
            key = _spelling(spelling)
            if mapping.setdefault(key, value) != value:
                raise ContractError(
                    f"spelling {spelling!r} maps to both {mapping[key]!r} and {value!r}.",
                    where=where,
                    hint="List each spelling under one canonical value.",
                )
    return mapping


def _spelling(value: str | int | float | bool) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


# --- coerce, and moving rows that do not convert -------------------------------------------


def _coerce(
    frame: pl.DataFrame, spec: Mapping[str, ColumnType], where: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    converted, why = {}, {}
    for col, kind in spec.items():
        dtype = _require(frame, col, f"{where}.{col}")
        converted[col] = cast_to(pl.col(col), dtype, kind)
        why[col] = f" is not {'an' if kind == 'int' else 'a'} {kind}"
    return _convert(frame, converted, why, "coerce", where)


def _convert(
    frame: pl.DataFrame,
    converted: Mapping[str, pl.Expr],
    why: Mapping[str, str],
    rule: str,
    where: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replace columns by ``converted``; a row where a value became null is rejected."""
    if not converted:
        return frame, rejects([]).drop("_raw")
    new = {col: f"{col}\x00new" for col in converted}
    bad = {col: pl.col(col).is_not_null() & pl.col(new[col]).is_null() for col in converted}
    failed = pl.any_horizontal(bad.values())
    reason = pl.concat_str(
        [
            pl.when(flag).then(
                pl.concat_str(
                    pl.lit(f"{col}="), as_text(pl.col(col), frame.schema[col]), pl.lit(why[col])
                )
            )
            for col, flag in bad.items()
        ],
        separator="; ",
        ignore_nulls=True,
    )
    try:
        staged = frame.with_columns(expr.alias(new[col]) for col, expr in converted.items())
        rejected = staged.filter(failed).select(
            pl.col(_ROW).cast(pl.Int64).alias("_row"),
            pl.lit(rule).alias("_rule"),
            reason.alias("_reason"),
        )
    except pl.exceptions.PolarsError as exc:
        raise ContractError(f"cannot convert: {_first_line(exc)}", where=where) from None
    kept = staged.filter(~failed).with_columns(pl.col(new[c]).alias(c) for c in converted)
    return kept.drop(new.values()), rejected


def _with_raw(rejected: pl.DataFrame, original: pl.DataFrame) -> pl.DataFrame:
    """Add ``_raw``: each rejected row as the source gave it, as compact JSON."""
    if rejected.height == 0:
        return rejected.with_columns(pl.lit(None, pl.String).alias("_raw"))
    indexed = original.with_row_index(_ROW, offset=1).with_columns(pl.col(_ROW).cast(pl.Int64))
    raw = indexed.join(rejected.select(pl.col("_row").alias(_ROW)), on=_ROW, how="semi").select(
        pl.col(_ROW).alias("_row"), pl.struct(original.columns).struct.json_encode().alias("_raw")
    )
    return rejected.join(raw, on="_row", how="left", maintain_order="left")


# --- units ---------------------------------------------------------------------------------


def _convert_units(
    frame: pl.DataFrame, spec: Mapping[str, UnitConversion], where: str
) -> pl.DataFrame:
    exprs = []
    for col, conversion in spec.items():
        dtype = _require(frame, col, f"{where}.{col}")
        if not dtype.is_numeric():
            raise ContractError(
                f"column {col!r} is {dtype}; units convert numbers.",
                where=f"{where}.{col}",
                hint=f"Coerce it first: `coerce: {{{col}: float}}` in the same section.",
            )
        factor, offset = _linear(conversion.from_, conversion.to, f"{where}.{col}")
        exprs.append((pl.col(col).cast(pl.Float64) * factor + offset).alias(col))
    return frame.with_columns(exprs)


@functools.cache
def _units() -> Any:
    import pint

    return pint.UnitRegistry()


def _linear(source: str, target: str, where: str) -> tuple[float, float]:
    """``factor`` and ``offset`` with ``target = source * factor + offset`` (degC, degF too)."""
    quantity = _units().Quantity
    try:
        offset = quantity(0.0, source).to(target).magnitude
        step = (quantity(1.0, target) - quantity(0.0, target)).units
        factor = (quantity(1.0, source) - quantity(0.0, source)).to(step).magnitude
    except Exception as exc:  # pint raises many types (even AssertionError) for bad units
        raise ContractError(
            f"cannot convert {source!r} to {target!r}: {_first_line(exc)}.",
            where=where,
            hint="Use pint unit names such as kg, lb, km, mi, degC, degF.",
        ) from None
    return float(factor), float(offset)


# --- time zones ----------------------------------------------------------------------------


def _normalise_zones(
    frame: pl.DataFrame, spec: Mapping[str, TimeZone], where: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    converted, why = {}, {}
    for col, zone in spec.items():
        dtype = _require(frame, col, f"{where}.{col}")
        _check_zone(zone.from_, f"{where}.{col}.from")
        _check_zone(zone.to, f"{where}.{col}.to")
        converted[col] = _zoned(frame, col, dtype, zone, f"{where}.{col}")
        shape = f"the format {zone.format!r}" if zone.format else "ISO 8601"
        why[col] = f" is not a valid time ({shape}, naive times read in {zone.from_})"
    return _convert(frame, converted, why, "timezone", where)


def _check_zone(name: str, where: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        known = sorted(zoneinfo.available_timezones())
        raise ContractError(
            f"unknown time zone {name!r}{did_you_mean(name, known)}.",
            where=where,
            hint="Use an IANA zone name such as UTC, Europe/Paris or America/New_York.",
        ) from None


def _zoned(
    frame: pl.DataFrame, col: str, dtype: pl.DataType, zone: TimeZone, where: str
) -> pl.Expr:
    """The column as ``Datetime("us", zone.to)``; naive values are read in ``zone.from_``."""
    expr = pl.col(col)
    if dtype == pl.String and zone.format is None:
        naive = cast_to(expr, dtype, "datetime")  # values with an offset come back in UTC
        has_offset = expr.str.strip_chars().str.contains(_OFFSET)
        in_utc = _in_zone(naive, None, "UTC", zone.to)
        return (
            pl.when(has_offset).then(in_utc).otherwise(_in_zone(naive, None, zone.from_, zone.to))
        )
    if dtype == pl.String:
        expr = expr.str.to_datetime(zone.format, strict=False, time_unit="us")
        dtype = frame.lazy().select(expr).collect_schema()[col]
    elif dtype == pl.Date:
        expr, dtype = expr.cast(pl.Datetime("us")), pl.Datetime("us")
    if not isinstance(dtype, pl.Datetime):
        raise ContractError(
            f"column {col!r} is {dtype}; a time zone applies to datetimes or text.",
            where=where,
        )
    return _in_zone(expr, dtype.time_zone, zone.from_, zone.to)


def _in_zone(expr: pl.Expr, current: str | None, naive_zone: str, target: str) -> pl.Expr:
    """Naive values are wall times in ``naive_zone`` (a DST gap gives null, an overlap the
    earlier instant); every value is converted to ``target``."""
    if current is None:
        expr = expr.dt.replace_time_zone(naive_zone, ambiguous="earliest", non_existent="null")
    return expr.dt.convert_time_zone(target).dt.cast_time_unit("us")
