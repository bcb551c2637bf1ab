"""Unions: the same entities from several sources, stacked and made unique by key.

The sources are stacked (columns aligned by name, types widened to a common
supertype), exact duplicate rows are removed, then rows that share a key are merged
into one, column by column, with the column's conflict policy. Each policy orders
the rows of a key and takes the first non-null value in that order:

- ``priority``: sources in ``priority`` order (default: ``sources`` order);
- ``latest``: the greatest ``timestamp`` first, ties in priority order;
- ``most_complete``: the row with the fewest nulls first, ties in priority order;
- ``fail``: two different non-null values stop the run.

A null never overrides a value, and a value filling a null is not a conflict; only
two different non-null values are. Rows with a null key are not merged (a null key
matches nothing). ``rows_in == rows out + exact_duplicates + merged``, always.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from keelson.data.joins import require_columns
from keelson.data.rules import as_text
from keelson.errors import ContractError
from keelson.spec import ConflictPolicy, Union

SOURCE = "_source"
_RANK, _POS, _NULLS, _SIZE = "\x00rank", "\x00pos", "\x00nulls", "\x00size"
_INTERNAL = (SOURCE, _RANK, _POS, _NULLS, _SIZE)
_SHOWN_CONFLICTS = 5
_CONFLICT_COLUMNS = ("column", "policy", "chosen", "values")


@dataclass(frozen=True)
class UnionResult:
    """The merged table of one union, what merging removed, and every conflict met."""

    name: str
    frame: pl.DataFrame
    rows_in: int
    exact_duplicates: int
    merged: int  # rows removed by merging rows that share a key
    conflicts: pl.DataFrame  # keys, column, policy, chosen, values ("source=value, ...")

    def summary(self) -> dict[str, Any]:
        counts = self.conflicts.group_by("column").len().sort("column")
        return {
            "name": self.name,
            "rows_in": self.rows_in,
            "rows_out": self.frame.height,
            "exact_duplicates": self.exact_duplicates,
            "merged": self.merged,
            "conflicts": dict(
                zip(counts["column"].to_list(), counts["len"].to_list(), strict=True)
            ),
        }


def union(
    frames: Mapping[str, pl.DataFrame], spec: Union, *, where: str = "integrate.unions"
) -> UnionResult:
    """Stack ``spec.sources`` from ``frames`` and merge rows by ``spec.keys``.

    ``where`` is the key path of the union in the spec, e.g. ``integrate.unions[0]``.
    """
    stacked = _stack(frames, spec, _ranks(spec, where), where)
    columns = [c for c in stacked.columns if c not in _INTERNAL]
    values = [c for c in columns if c not in spec.keys]
    _check_policies(stacked, spec, values, where)
    distinct = stacked.sort(_RANK, _POS).unique(subset=columns, keep="first", maintain_order=True)
    sized = distinct.with_columns(_group_size(spec.keys), _null_count(columns))
    single, multi = sized.filter(pl.col(_SIZE) == 1), sized.filter(pl.col(_SIZE) > 1)
    resolved, ordered = _merge(multi, spec, values)
    conflicts = _conflicts(ordered, resolved, spec, values)
    _fail_on(conflicts, spec, where)
    frame = pl.concat([single.select(*columns, _POS), resolved.select(*columns, _POS)])
    return UnionResult(
        name=spec.name,
        frame=frame.sort(_POS).drop(_POS),
        rows_in=stacked.height,
        exact_duplicates=stacked.height - distinct.height,
        merged=multi.height - resolved.height,
        conflicts=conflicts,
    )


# --- stacking ----------------------------------------------------------------------


def _ranks(spec: Union, where: str) -> dict[str, int]:
    """Each source's place in the priority order: ``priority`` first, then ``sources``."""
    twice = sorted({s for s in spec.sources if spec.sources.count(s) > 1})
    if twice:
        raise ContractError(f"union {spec.name!r} lists {twice} twice.", where=f"{where}.sources")
    unknown = [s for s in spec.priority if s not in spec.sources]
    if unknown:
        raise ContractError(
            f"priority names {unknown}, which are not sources of union {spec.name!r}.",
            where=f"{where}.priority",
            hint=f"List only sources of the union: {spec.sources}.",
        )
    order = [*dict.fromkeys(spec.priority), *(s for s in spec.sources if s not in spec.priority)]
    return {source: rank for rank, source in enumerate(order)}


def _stack(
    frames: Mapping[str, pl.DataFrame], spec: Union, ranks: dict[str, int], where: str
) -> pl.DataFrame:
    parts = [
        _source_frame(frames, name, spec, where).with_columns(
            pl.lit(name).alias(SOURCE), pl.lit(ranks[name], pl.Int32).alias(_RANK)
        )
        for name in spec.sources
    ]
    try:
        stacked = pl.concat(parts, how="diagonal_relaxed")
    except pl.exceptions.PolarsError:
        raise ContractError(
            f"the sources of union {spec.name!r} cannot be stacked: "
            f"{_type_clashes(dict(zip(spec.sources, parts, strict=True)))}.",
            where=f"{where}.sources",
            hint="Coerce the columns to one type (reconcile.<source>.coerce).",
        ) from None
    return stacked.with_row_index(_POS)


def _source_frame(
    frames: Mapping[str, pl.DataFrame], name: str, spec: Union, where: str
) -> pl.DataFrame:
    if name not in frames:
        raise ContractError(
            f"union {spec.name!r} needs source {name!r}, but the tables are {sorted(frames)}.",
            where=f"{where}.sources",
        )
    frame = frames[name]
    reserved = [c for c in _INTERNAL if c in frame.columns]
    if reserved:
        raise ContractError(
            f"source {name!r} has columns {reserved}, reserved for union bookkeeping.",
            where=f"{where}.sources",
            hint=f"Rename them (reconcile.{name}.rename).",
        )
    what = f"source {name!r} of union {spec.name!r}"
    require_columns(frame.columns, spec.keys, f"{where}.keys", what)
    if spec.timestamp is not None:
        require_columns(frame.columns, [spec.timestamp], f"{where}.timestamp", what)
    return frame


def _type_clashes(parts: Mapping[str, pl.DataFrame]) -> str:
    """Columns whose types differ between sources, e.g. ``'id' is Int64 in a, String in b``."""
    types: dict[str, dict[str, str]] = {}
    for source, part in parts.items():
        for col, dtype in part.schema.items():
            types.setdefault(col, {})[source] = str(dtype)
    clashes = {c: t for c, t in types.items() if len(set(t.values())) > 1}
    return "; ".join(
        f"{c!r} is " + ", ".join(f"{t} in {s}" for s, t in ts.items()) for c, ts in clashes.items()
    )


def _check_policies(stacked: pl.DataFrame, spec: Union, values: list[str], where: str) -> None:
    for col in spec.conflicts:
        if col in spec.keys:
            raise ContractError(
                f"{col!r} is a key of union {spec.name!r}; keys are not merged.",
                where=f"{where}.conflicts.{col}",
                hint="Remove it from `conflicts`.",
            )
        require_columns(values, [col], f"{where}.conflicts.{col}", f"union {spec.name!r}")
    uses_latest = spec.default == "latest" or "latest" in spec.conflicts.values()
    if spec.timestamp is None or not uses_latest:
        return
    dtype = stacked.schema[spec.timestamp]
    if not (dtype.is_temporal() or dtype.is_numeric()):
        raise ContractError(
            f"timestamp column {spec.timestamp!r} is {dtype}, which cannot say which row is "
            "latest.",
            where=f"{where}.timestamp",
            hint="Coerce it to datetime in every source (reconcile.<source>.coerce).",
        )


# --- merging -------------------------------------------------------------------------


def _group_size(keys: Sequence[str]) -> pl.Expr:
    """Rows sharing the key (1 for a row with a null key part: it matches nothing)."""
    null_key = pl.any_horizontal(pl.col(k).is_null() for k in keys)
    return pl.when(null_key).then(1).otherwise(pl.len().over(keys)).alias(_SIZE)


def _null_count(columns: Sequence[str]) -> pl.Expr:
    return pl.sum_horizontal(pl.col(c).is_null() for c in columns).alias(_NULLS)


def _policy(spec: Union, col: str) -> ConflictPolicy:
    return spec.conflicts.get(col, spec.default)


def _order(spec: Union, policy: ConflictPolicy) -> tuple[list[str], list[bool]]:
    """Columns (and directions) that put the preferred row of a key first."""
    if policy == "latest" and spec.timestamp is not None:
        return [spec.timestamp, _RANK, _POS], [True, False, False]
    if policy == "most_complete":
        return [_NULLS, _RANK, _POS], [False, False, False]
    return [_RANK, _POS], [False, False]


def _merge(
    multi: pl.DataFrame, spec: Union, values: list[str]
) -> tuple[pl.DataFrame, dict[ConflictPolicy, pl.DataFrame]]:
    """One row per key, each value column resolved by its policy; and the rows sorted in
    each policy's order (a group keeps the order of its rows in the frame)."""
    ordered = {}
    for policy in dict.fromkeys(_policy(spec, c) for c in values):
        by, descending = _order(spec, policy)
        ordered[policy] = multi.sort(by, descending=descending, nulls_last=True)
    resolved = multi.group_by(spec.keys, maintain_order=True).agg(
        pl.col(_POS).min(), *(pl.col(c).drop_nulls().n_unique().alias(_distinct(c)) for c in values)
    )
    for policy, rows in ordered.items():
        chosen = rows.group_by(spec.keys).agg(
            pl.col(c).first(ignore_nulls=True) for c in values if _policy(spec, c) == policy
        )
        resolved = resolved.join(chosen, on=spec.keys, how="left", maintain_order="left")
    return resolved, ordered


def _distinct(col: str) -> str:
    return f"{col}\x00distinct"


# --- conflicts -----------------------------------------------------------------------


def _conflicts(
    ordered: dict[ConflictPolicy, pl.DataFrame],
    resolved: pl.DataFrame,
    spec: Union,
    values: list[str],
) -> pl.DataFrame:
    """One row per (key, column) with two or more different non-null values."""
    schema = {k: resolved.schema[k] for k in spec.keys}
    parts = [pl.DataFrame(schema=schema | dict.fromkeys(_CONFLICT_COLUMNS, pl.String()))]
    for col in values:
        policy = _policy(spec, col)
        if col == spec.timestamp and policy == "latest":
            continue  # the ordering column: differing times are what `latest` is about
        disputed = resolved.filter(pl.col(_distinct(col)) > 1)
        if disputed.height:
            parts.append(_describe(ordered[policy], disputed, spec, col, policy))
    return pl.concat(parts)


def _describe(
    ordered: pl.DataFrame, disputed: pl.DataFrame, spec: Union, col: str, policy: ConflictPolicy
) -> pl.DataFrame:
    """``source=value`` of each row of the disputed keys, in the policy's order."""
    text = as_text(pl.col(col), ordered.schema[col])
    pairs = pl.concat_str(pl.col(SOURCE), pl.lit("="), text)
    listed = (
        ordered.join(disputed.select(spec.keys), on=spec.keys, how="semi", maintain_order="left")
        .group_by(spec.keys)
        .agg(pairs.drop_nulls().str.join(", ").alias("values"))
    )
    return disputed.select(
        *spec.keys,
        pl.lit(col).alias("column"),
        pl.lit(policy, pl.String).alias("policy"),
        text.alias("chosen"),
    ).join(listed, on=spec.keys, how="left", maintain_order="left")


def _fail_on(conflicts: pl.DataFrame, spec: Union, where: str) -> None:
    failed = conflicts.filter(pl.col("policy") == "fail")
    if failed.height == 0:
        return
    examples = "; ".join(
        ", ".join(f"{k}={row[k]!r}" for k in spec.keys) + f": {row['column']} ({row['values']})"
        for row in failed.head(_SHOWN_CONFLICTS).iter_rows(named=True)
    )
    first = failed["column"][0]
    raise ContractError(
        f"union {spec.name!r}: {failed.height} (key, column) pairs have different values under "
        f"the 'fail' policy, e.g. {examples}.",
        where=f"{where}.conflicts.{first}" if first in spec.conflicts else f"{where}.default",
        hint="Fix the sources, or choose latest, priority or most_complete for the column.",
    )
