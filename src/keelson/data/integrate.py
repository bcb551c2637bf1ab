"""Integrate: unions, then joins from the base table, then derived columns, then drops.

Each union's name becomes a table usable as ``base`` or a join ``source``; the
sources it merges are consumed (using one of them again is an error naming the
union to use instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from keelson.data.dedup import UnionResult, union
from keelson.data.joins import join, require_columns
from keelson.data.reconcile import derive_columns
from keelson.errors import ContractError
from keelson.spec import Integrate, Union


@dataclass(frozen=True)
class Integration:
    """The integrated table and what each step did."""

    table: pl.DataFrame
    joins: list[dict[str, Any]]  # one stats dict per join, in order
    unions: list[UnionResult]
    derived: list[str]


def integrate(frames: dict[str, pl.DataFrame], spec: Integrate | None) -> Integration:
    """Build the table ``spec`` describes from ``frames`` (source name: validated rows)."""
    if spec is None:
        if len(frames) != 1:
            raise ContractError(
                f"{len(frames)} sources ({sorted(frames)}) but no 'integrate' section.",
                where="integrate",
                hint="Add `integrate: {base: ..., joins: [...]}` to keelson.yaml.",
            )
        return Integration(next(iter(frames.values())), [], [], [])
    tables, unions, consumed = _unions(frames, spec.unions)
    table = _table(tables, consumed, spec.base, "integrate.base")
    stats = []
    for i, step in enumerate(spec.joins):
        right = _table(tables, consumed, step.source, f"integrate.joins[{i}].source")
        table, stat = join(table, right, step, f"integrate.joins[{i}]")
        stats.append(stat)
    table = derive_columns(table, spec.derive, "integrate.derive")
    require_columns(table.columns, spec.drop, "integrate.drop", "the integrated table")
    return Integration(table.drop(spec.drop), stats, unions, list(spec.derive))


def _unions(
    frames: dict[str, pl.DataFrame], specs: list[Union]
) -> tuple[dict[str, pl.DataFrame], list[UnionResult], dict[str, str]]:
    """Tables after the unions, each union's result, and which union consumed each source."""
    tables = dict(frames)
    results: list[UnionResult] = []
    consumed: dict[str, str] = {}
    for i, spec in enumerate(specs):
        where = f"integrate.unions[{i}]"
        for source in spec.sources:
            _table(tables, consumed, source, f"{where}.sources")
        if spec.name in tables and spec.name not in spec.sources:
            raise ContractError(
                f"union name {spec.name!r} is already the name of a table.",
                where=f"{where}.name",
                hint="Give the union a name no source has.",
            )
        result = union(tables, spec, where=where)
        for source in spec.sources:
            del tables[source]
            consumed[source] = spec.name
        tables[spec.name] = result.frame
        results.append(result)
    return tables, results, consumed


def _table(
    tables: dict[str, pl.DataFrame], consumed: dict[str, str], name: str, where: str
) -> pl.DataFrame:
    if name in tables:
        return tables[name]
    if name in consumed:
        raise ContractError(
            f"source {name!r} was merged into union {consumed[name]!r}.",
            where=where,
            hint=f"Use {consumed[name]!r} instead.",
        )
    raise ContractError(f"no table for source {name!r}; have {sorted(tables)}.", where=where)
