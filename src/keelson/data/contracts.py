"""Contracts: validate a source against its rules; keep, warn, quarantine or stop.

Row rules are compiled once (:mod:`keelson.data.rules`) and evaluated in one pass;
reasons are built only for the rows that fail. Each parsed row ends up exactly once in
``kept``, in ``quarantined`` (with its first failing rule and every reason) or, when
``exact_duplicates: drop`` removes it, in ``removed``; rows the connector could not parse
are quarantined too. So ``rows_in == kept + quarantined + removed``, always.

Severities: ``warn`` reports the rule and keeps the row; ``quarantine`` moves the row to
the quarantine; ``fail`` moves it there too and makes :func:`enforce` stop the run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from keelson import __version__
from keelson.data.rules import (
    CompiledRules,
    RowRule,
    as_text,
    cast_to,
    compile_rules,
    conversion_failures,
    did_you_mean,
    key_value,
    later_duplicates,
    mask_name,
    raw_name,
    retype_candidates,
    shown,
)
from keelson.data.sources import SourceRead
from keelson.errors import ContractError
from keelson.spec import Contract, Freshness, RowCount, Severity

META_COLUMNS = ("_row", "_rule", "_column", "_reason", "_raw")
RESERVED = {*META_COLUMNS, "_source"}
DEFAULT_MAX_SHARE = 0.05
QUARANTINE_FORMAT = "1"
EXAMPLES = 5
SCANNED = 200  # failing rows scanned for distinct example values
ROW = "_row"  # the row number column (1-based, in source order)
_FIRST = "\x00first"
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)  # eager in, eager out; lazy in, lazy out
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True)
class Finding:
    """What one rule found: how many rows break it, a few failing values and rows.

    ``count`` is the number of rows for a row rule and 1 for a table-level rule
    (freshness, rows) or a schema change; ``where`` is the rule's
    key path in keelson.yaml; ``examples`` are up to five distinct failing values (as
    text) and ``rows`` the first failing row numbers.
    """

    rule: str
    column: str | None
    severity: Severity
    count: int
    message: str
    where: str
    examples: list[str | None] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``min on 'age': below min 0 (3 rows, e.g. -1, -5)``."""
        on = f" on {self.column!r}" if self.column else ""
        if not self.rows:
            return f"{self.rule}{on}: {self.message}"
        return f"{self.rule}{on}: {self.message} ({_counted(self)})"


def _counted(finding: Finding) -> str:
    examples = ", ".join(repr(e) if e is not None else "null" for e in finding.examples)
    return f"{finding.count} rows" + (f", e.g. {examples}" if examples else "")


class FindingsMixin:
    """The findings of a validation outcome, by severity."""

    findings: list[Finding]

    @property
    def warnings(self) -> list[Finding]:
        """The findings of rules with severity warn (their rows are kept)."""
        return [f for f in self.findings if f.severity == "warn"]

    @property
    def failures(self) -> list[Finding]:
        """The findings of rules with severity fail (:func:`enforce` stops the run)."""
        return [f for f in self.findings if f.severity == "fail"]


@dataclass(frozen=True)
class Validation(FindingsMixin):
    """The outcome of validating one source: kept rows, quarantined rows, findings."""

    source: str
    kept: pl.DataFrame
    quarantined: pl.DataFrame
    rows_in: int
    removed: int = 0
    findings: list[Finding] = field(default_factory=list)
    schema_changes: list[dict[str, str]] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.quarantined.height / self.rows_in if self.rows_in else 0.0

    def reasons(self) -> dict[str, int]:
        """Quarantined rows per reason code (each row counted once, by its first rule)."""
        counts = (
            self.quarantined.group_by("_rule")
            .len()
            .sort(["len", "_rule"], descending=[True, False])
        )
        return dict(zip(counts["_rule"].to_list(), counts["len"].to_list(), strict=True))

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable account of the validation."""
        return {
            "source": self.source,
            "rows_in": self.rows_in,
            "kept": self.kept.height,
            "quarantined": self.quarantined.height,
            "removed": self.removed,
            "share": self.share,
            "reasons": self.reasons(),
            "warnings": [f.to_dict() for f in self.warnings],
            "failures": [f.to_dict() for f in self.failures],
            "schema_changes": [dict(change) for change in self.schema_changes],
        }


@dataclass
class Outcome:
    """What validation found so far: quarantined parts, findings and removed rows."""

    columns: list[str]
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    removed: int = 0


def validate(
    read: SourceRead,
    contract: Contract | None,
    references: Mapping[str, pl.DataFrame] | None = None,
    now: datetime | None = None,
) -> Validation:
    """Apply ``contract`` to ``read``: cast declared types, then keep, warn or quarantine.

    ``references`` holds the kept rows of the sources this contract references (validate
    them first: :func:`validation_order`); ``now`` is the reference time for freshness.
    """
    contract = contract if contract is not None else Contract()
    check_reserved(read.name, read.frame.columns)
    source_schema = read.frame.schema
    frame = read.frame.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
    adopted = _adopted(frame, contract, source_schema)
    compiled = compile_rules(
        contract, source_schema, source=read.name, references=references, adopted=adopted
    )
    outcome = Outcome(list(read.frame.columns))
    prepared = exact_duplicates(compiled.prepare(frame), compiled, contract, outcome)
    judged = prepared.with_columns(compiled.masks())
    excluded = _row_rules(judged, compiled, outcome)
    excluded = _unique_keys(judged, compiled, excluded, outcome)
    kept = judged.select(compiled.output)
    if excluded is not None:  # lazily: Polars then filters the columns in parallel
        kept = kept.lazy().filter(~excluded).collect()
    changes, failures = schema_changes(compiled, contract, source_schema, adopted, outcome)
    table = [
        freshness(kept, compiled, contract.freshness, now),
        row_count(read.name, read.rows_in, contract.rows),
    ]
    unparsed = rejected_rows(read.rejected, read.frame.columns)
    return Validation(
        source=read.name,
        kept=kept,
        quarantined=pl.concat([_parsed_quarantine(outcome), unparsed]),
        rows_in=read.rows_in,
        removed=outcome.removed,
        findings=failures + outcome.findings + [f for f in table if f is not None],
        schema_changes=changes,
    )


def validation_order(contracts: Mapping[str, Contract], sources: Iterable[str]) -> list[str]:
    """``sources`` in spec order, except that a referenced source comes before its users."""
    pending = list(sources)
    needs = {
        name: {r.source for r in contracts[name].references} if name in contracts else set()
        for name in pending
    }
    order: list[str] = []
    while pending:
        ready = next((s for s in pending if needs[s] <= set(order)), None)
        if ready is None:
            raise ContractError(
                f"the references of sources {pending} form a cycle; no order validates them.",
                where="contracts",
                hint="A source cannot reference itself or a source that references it back.",
            )
        order.append(ready)
        pending.remove(ready)
    return order


def enforce(validation: Validation, contract: Contract | None) -> None:
    """Raise :class:`ContractError` on a failed rule or too large a quarantined share."""
    if validation.failures:
        _raise_failures(validation)
    limit = contract.max_quarantine_share if contract else DEFAULT_MAX_SHARE
    if validation.share <= limit:
        return
    top = (
        validation.quarantined.group_by("_rule", "_column")
        .len()
        .sort(["len", "_rule"], descending=[True, False])
        .head(3)
    )
    found = {(f.rule, f.column): f for f in validation.findings}
    reasons = ", ".join(_top_reason(rule, col, n, found) for rule, col, n in top.iter_rows())
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


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``36h``, ``7d``, ``1.5w``, ``250ms`` as a timedelta."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


# --- errors ----------------------------------------------------------------------


def check_reserved(source: str, present: Sequence[str]) -> None:
    """Raise :class:`ContractError` when a source column has a bookkeeping name (``_row``...)."""
    reserved = sorted(RESERVED.intersection(present))
    if reserved:
        raise ContractError(
            f"column names {reserved} are reserved for quarantine bookkeeping.",
            where=f"source {source!r}",
            hint="Rename the columns in the source (e.g. with an alias in the SQL query).",
        )


def _raise_failures(validation: Validation) -> None:
    failures = validation.failures
    wheres = ", ".join(dict.fromkeys(f.where for f in failures))
    raise ContractError(
        f"{len(failures)} rule{'s' if len(failures) > 1 else ''} with severity fail broke: "
        + "; ".join(f.describe() for f in failures)
        + ".",
        where=f"source {validation.source!r}",
        hint=f"Fix the data, or change the rule in keelson.yaml ({wheres}); "
        "severity warn reports a rule without stopping the run.",
    )


def _top_reason(rule: str, col: str | None, n: int, found: Mapping[Any, Finding]) -> str:
    finding = found.get((rule, col))
    examples = ", ".join(repr(e) for e in finding.examples if e is not None) if finding else ""
    return f"{rule}{f' on {col!r}' if col else ''} ({n}{f', e.g. {examples}' if examples else ''})"


# --- row rules -----------------------------------------------------------------------


def _row_rules(judged: pl.DataFrame, compiled: CompiledRules, outcome: Outcome) -> pl.Series | None:
    """Findings of every row rule; quarantine rows breaking a quarantine or fail rule.

    Returns the mask of rows excluded from ``kept`` (None when every row passes).
    """
    if not compiled.rules:
        return None
    counts = judged.select(pl.col(mask_name(i)).sum() for i in range(len(compiled.rules))).row(0)
    hits = [(i, rule) for i, rule in enumerate(compiled.rules) if counts[i]]
    outcome.findings += row_findings(judged, hits, counts)
    blocking = [(i, rule) for i, rule in hits if rule.severity != "warn"]
    if not blocking:
        return None
    excluded = judged.select(pl.any_horizontal(pl.col(mask_name(i)) for i, _ in blocking))
    mask = excluded.to_series()
    rule, column, reason = verdict(blocking)
    outcome.quarantine.append(
        quarantine_rows(judged[mask.arg_true()], compiled, outcome, rule, column, reason)
    )
    return mask


def row_findings(
    judged: pl.DataFrame, hits: list[tuple[int, RowRule]], counts: Sequence[int]
) -> list[Finding]:
    """One finding per rule that some row breaks, with example values and rows.

    Examples come from the first failing rows of each rule, gathered once into a small
    frame, so no value is formatted for the rows that pass.
    """
    if not hits:
        return []
    first = judged.select(
        pl.col(mask_name(i)).arg_true().head(SCANNED).alias(str(i)).implode() for i, _ in hits
    )
    positions = pl.concat([first[c].explode() for c in first.columns]).unique().sort()
    sample = judged[positions]
    exprs = []
    for i, rule in hits:
        fails = pl.col(mask_name(i))
        exprs.append(pl.col(ROW).filter(fails).head(EXAMPLES).implode().alias(f"r{i}"))
        if rule.value is not None:
            examples = rule.value.filter(fails).unique(maintain_order=True).head(EXAMPLES)
            exprs.append(examples.implode().alias(f"v{i}"))
    found = sample.select(exprs).row(0, named=True)
    return [
        Finding(
            rule=rule.code,
            column=rule.column,
            severity=rule.severity,
            count=counts[i],
            message=rule.describe,
            where=rule.where,
            examples=found.get(f"v{i}", []),
            rows=found[f"r{i}"],
        )
        for i, rule in hits
    ]


def verdict(failing: list[tuple[int, RowRule]]) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """``_rule``/``_column`` of the first failing rule and ``_reason`` joining them all."""
    fails = [(pl.col(mask_name(i)), rule) for i, rule in failing]
    return (
        pl.coalesce(pl.when(f).then(pl.lit(r.code)) for f, r in fails),
        pl.coalesce(pl.when(f).then(pl.lit(r.column, pl.String)) for f, r in fails),
        pl.concat_str(
            [pl.when(f).then(r.reason) for f, r in fails], separator="; ", ignore_nulls=True
        ),
    )


def quarantine_rows(
    rows: Frame,
    compiled: CompiledRules,
    outcome: Outcome,
    rule: pl.Expr,
    column: pl.Expr,
    reason: pl.Expr,
) -> Frame:
    """Rows shaped for the quarantine: source values as text, then the bookkeeping.

    One ``select``: a lazy frame in gives a lazy frame out, nothing collected.
    """
    return rows.select(
        *(compiled.text(c) for c in outcome.columns),
        pl.col(ROW),
        rule.alias("_rule"),
        column.alias("_column"),
        reason.alias("_reason"),
        pl.lit(None, pl.String).alias("_raw"),
    )


def _parsed_quarantine(outcome: Outcome) -> pl.DataFrame:
    schema = {c: pl.String for c in outcome.columns} | {ROW: pl.Int64}
    empty = pl.DataFrame(schema=schema | dict.fromkeys(META_COLUMNS[1:], pl.String))
    return pl.concat([empty, *outcome.quarantine]).sort(ROW)


def rejected_rows(rejected: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Rows the connector could not parse (``SourceRead.rejected``), shaped like the other
    quarantined rows of a source with ``columns``."""
    return rejected.select(
        *(pl.lit(None, pl.String).alias(c) for c in columns),
        pl.col("_row").cast(pl.Int64),
        pl.col("_rule").cast(pl.String),
        pl.lit(None, pl.String).alias("_column"),
        pl.col("_reason").cast(pl.String),
        pl.col("_raw").cast(pl.String),
    )


# --- keys and duplicates -------------------------------------------------------------


@dataclass(frozen=True)
class Repeats:
    """Later duplicates of a key: their positions in the frame and their rows (with the
    row number of the first occurrence, in ``_FIRST``)."""

    at: pl.Series
    rows: pl.DataFrame


def find_repeats(frame: pl.DataFrame, key: list[str], excluded: pl.Series | None) -> Repeats | None:
    """Later duplicates of ``key`` among the rows not ``excluded`` (nulls compare equal).

    Exact and fast: rows whose key hash occurs twice are the only candidates (a sort of
    the hashes finds them); the keys themselves are compared on those candidates only.
    """
    hashes = frame.select(key_value(key).hash()).to_series()
    live = hashes if excluded is None else hashes.filter(~excluded)
    ordered = np.sort(live.to_numpy())  # NumPy's sort of uint64 beats Polars' here
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not repeated.size:
        return None
    candidate = hashes.is_in(pl.Series(np.unique(repeated)).implode())
    at = (candidate if excluded is None else candidate & ~excluded).arg_true()
    rows = frame[at]
    later = rows.select(later_duplicates(key)).to_series()
    if not later.any():
        return None  # the hashes collided; the keys differ
    return Repeats(at.filter(later), rows.filter(later).with_columns(_first_rows(rows, key, later)))


def _first_rows(frame: pl.DataFrame, key: Sequence[str], later: pl.Series) -> pl.Series:
    """For each later duplicate, the row number of the first row with the same key."""
    repeated = frame.filter(later).select(key)
    firsts = frame.filter(~later).select(*key, pl.col(ROW).alias(_FIRST))
    joined = repeated.join(
        firsts, on=list(key), how="left", nulls_equal=True, maintain_order="left"
    )
    return joined[_FIRST]


def exact_duplicates(
    prepared: pl.DataFrame, compiled: CompiledRules, contract: Contract, outcome: Outcome
) -> pl.DataFrame:
    """Set aside rows identical in every source column to an earlier row (drop/quarantine)."""
    if contract.exact_duplicates == "keep" or not outcome.columns:
        return prepared
    key = [raw_name(c) if c in compiled.casts else c for c in outcome.columns]
    repeats = find_repeats(prepared, key, None)
    if repeats is None:
        return prepared
    remaining = prepared.filter(~_mask(prepared.height, repeats.at))
    if contract.exact_duplicates == "drop":
        outcome.removed = repeats.at.len()
        return remaining
    reason = pl.concat_str(pl.lit("exact duplicate of row "), pl.col(_FIRST).cast(pl.String))
    outcome.quarantine.append(
        quarantine_rows(
            repeats.rows, compiled, outcome, pl.lit("duplicate"), pl.lit(None, pl.String), reason
        )
    )
    outcome.findings.append(
        Finding(
            rule="duplicate",
            column=None,
            severity="quarantine",
            count=repeats.at.len(),
            message="exact duplicate of an earlier row",
            where=f"contracts.{compiled.source}.exact_duplicates",
            rows=repeats.rows[ROW].head(EXAMPLES).to_list(),
        )
    )
    return remaining


def _mask(height: int, at: pl.Series) -> pl.Series:
    """True at the positions ``at`` of a frame of ``height`` rows."""
    return pl.repeat(False, height, dtype=pl.Boolean, eager=True).scatter(at, True)


def _unique_keys(
    judged: pl.DataFrame, compiled: CompiledRules, excluded: pl.Series | None, outcome: Outcome
) -> pl.Series | None:
    """Quarantine later duplicates of each key among the rows still kept, key by key."""
    for index, key in enumerate(compiled.keys):
        repeats = find_repeats(judged, key, excluded)
        if repeats is None:
            continue
        quarantine_duplicate_keys(repeats.rows, compiled, key, index, outcome)
        base = excluded if excluded is not None else _mask(judged.height, repeats.at[:0])
        excluded = base.scatter(repeats.at, True)
    return excluded


def quarantine_duplicate_keys(
    rows: pl.DataFrame, compiled: CompiledRules, key: list[str], index: int, outcome: Outcome
) -> None:
    """Quarantine the later duplicates ``rows`` of the ``index``-th unique key, with a finding."""
    values = shown(compiled, key)
    named = [pl.lit(f"{key[0]}="), values.fill_null("null")] if len(key) == 1 else [values]
    reason = pl.concat_str(
        pl.lit("duplicate key "),
        *named,
        pl.lit(" (first at row "),
        pl.col(_FIRST).cast(pl.String),
        pl.lit(")"),
    )
    column = ", ".join(key)
    outcome.quarantine.append(
        quarantine_rows(rows, compiled, outcome, pl.lit("unique"), pl.lit(column), reason)
    )
    examples = rows.select(values.head(SCANNED).unique(maintain_order=True).head(EXAMPLES))
    where = f"contracts.{compiled.source}.unique" + (f"[{index}]" if len(compiled.keys) > 1 else "")
    outcome.findings.append(
        Finding(
            rule="unique",
            column=column,
            severity="quarantine",
            count=rows.height,
            message=f"duplicate key ({column})",
            where=where,
            examples=examples.to_series().to_list(),
            rows=rows[ROW].head(EXAMPLES).to_list(),
        )
    )


# --- schema changes ------------------------------------------------------------------


def _adopted(
    frame: pl.DataFrame, contract: Contract, schema: Mapping[str, pl.DataType]
) -> dict[str, tuple[int, list[str | None]]]:
    """With ``retyped: adopt``: the columns whose values do not all convert, with examples."""
    if contract.schema_changes.retyped != "adopt":
        return {}
    candidates = list(retype_candidates(contract, schema).items())
    if not candidates:
        return {}
    exprs = []
    for i, (col, kind) in enumerate(candidates):
        fails = conversion_failures(col, schema[col], kind)
        text = as_text(pl.col(col), schema[col]).filter(fails)
        exprs += [
            fails.sum().alias(f"n{i}"),
            text.unique(maintain_order=True).head(EXAMPLES).implode().alias(f"e{i}"),
        ]
    found = frame.select(exprs).row(0, named=True)
    return {
        col: (found[f"n{i}"], found[f"e{i}"])
        for i, (col, _) in enumerate(candidates)
        if found[f"n{i}"]
    }


def schema_changes(
    compiled: CompiledRules,
    contract: Contract,
    schema: Mapping[str, pl.DataType],
    adopted: Mapping[str, tuple[int, list[str | None]]],
    outcome: Outcome,
) -> tuple[list[dict[str, str]], list[Finding]]:
    """Every added, missing and retyped column with the decision taken; failures for fail."""
    policy = contract.schema_changes
    changes = [_added(c, policy.added, schema[c]) for c in compiled.added]
    changes += [_missing(c, policy.missing, compiled) for c in compiled.missing]
    converted = {
        f.column: f for f in outcome.findings if f.rule == "type" and f.column in contract.columns
    }
    for col, kind in retype_candidates(contract, schema).items():
        if col in adopted:
            changes.append(_retyped(col, "adopt", kind, schema[col], *adopted[col]))
        elif col in converted:
            finding = converted[col]
            changes.append(
                _retyped(col, policy.retyped, kind, schema[col], finding.count, finding.examples)
            )
    failures = [
        Finding(
            rule=f"schema:{change['change']}",
            column=change["column"],
            severity="fail",
            count=1,
            message=change["detail"],
            where=f"contracts.{compiled.source}.schema_changes.{change['change']}",
        )
        for change in changes
        if change["decision"] == "fail"
    ]
    return changes, failures


def _change(change: str, column: str, decision: str, detail: str) -> dict[str, str]:
    return {"change": change, "column": column, "decision": decision, "detail": detail}


def _added(col: str, decision: str, dtype: pl.DataType) -> dict[str, str]:
    detail = {
        "adopt": f"not in the contract; kept as {dtype}",
        "ignore": "not in the contract; left out of the kept rows (the quarantine keeps it)",
        "fail": f"not in the contract ({dtype}); add it to the contract's columns",
    }[decision]
    return _change("added", col, decision, detail)


def _missing(col: str, decision: str, compiled: CompiledRules) -> dict[str, str]:
    if decision == "ignore":
        return _change("missing", col, decision, "not in the source; added as nulls")
    hint = did_you_mean(col, compiled.added or list(compiled.schema))
    return _change(
        "missing",
        col,
        decision,
        f"declared but not in the source{hint}; its rules were not checked",
    )


def _retyped(
    col: str, decision: str, kind: str, dtype: pl.DataType, count: int, examples: list[str | None]
) -> dict[str, str]:
    listed = ", ".join(repr(e) for e in examples)
    values = "1 value does not" if count == 1 else f"{count} values do not"
    found = f"declared {kind}, the source has {dtype}; {values} convert (e.g. {listed})"
    then = {
        "ignore": "cast; the type rule handles the values that do not convert",
        "adopt": f"kept as {dtype}; the type rule (and min/max on text) not applied",
        "fail": "the run stops",
    }[decision]
    return _change("retyped", col, decision, f"{found}: {then}")


# --- table rules ---------------------------------------------------------------------


def freshness(
    kept: pl.DataFrame, compiled: CompiledRules, rule: Freshness | None, now: datetime | None
) -> Finding | None:
    """The newest kept value of the timestamp column must be at most ``max_age`` old."""
    if rule is None or (rule.column in compiled.missing and rule.column not in kept.columns):
        return None  # a missing column is reported as a schema change
    where = f"contracts.{compiled.source}.freshness"
    newest = kept.select(timestamps(kept, rule.column, where).max()).item()
    moment = _utc_naive(now or datetime.now(UTC))
    limit = parse_duration(rule.max_age)
    if newest is not None and moment - newest <= limit:
        return None
    if newest is None:
        message = f"no kept row has a {rule.column} timestamp; max_age {rule.max_age}"
    else:
        message = (
            f"newest {newest.isoformat()} is {moment - newest} old, above max_age {rule.max_age}"
        )
    examples: list[str | None] = [newest.isoformat()] if newest is not None else []
    return Finding("freshness", rule.column, rule.severity, 1, message, where, examples)


def timestamps(kept: pl.DataFrame, col: str, where: str) -> pl.Expr:
    """The column as naive UTC datetimes (naive values are taken as UTC)."""
    if col not in kept.columns:
        raise ContractError(
            f"column {col!r} is not in the kept rows{did_you_mean(col, kept.columns)}.",
            where=f"{where}.column",
            hint="Name a date or timestamp column of the source.",
        )
    dtype = kept.schema[col]
    if not (dtype.is_temporal() and dtype != pl.Time) and dtype not in (pl.String, pl.Null):
        raise ContractError(
            f"column {col!r} holds {dtype}; freshness needs dates or timestamps.",
            where=f"{where}.column",
            hint="Declare `type: datetime` for the column, or name another column.",
        )
    return cast_to(pl.col(col), dtype, "datetime")


def _utc_naive(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def row_count(source: str, n: int, rule: RowCount | None) -> Finding | None:
    """The ``n`` rows read (parsed or not) must be within ``rows.min``/``rows.max``."""
    if rule is None:
        return None
    if rule.min is not None and n < rule.min:
        message = f"{n} rows read, below min {rule.min}"
    elif rule.max is not None and n > rule.max:
        message = f"{n} rows read, above max {rule.max}"
    else:
        return None
    return Finding("rows", None, rule.severity, 1, message, f"contracts.{source}.rows", [str(n)])
