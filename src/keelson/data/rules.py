"""Compile a contract's row rules into Polars expressions, once per source schema.

The compiled rules are plain expressions, so the same object runs on a DataFrame, a
LazyFrame or one partition of a larger table: :meth:`CompiledRules.prepare` casts the
declared types (the original values stay under hidden names, for the quarantine), then
each :attr:`RowRule.fails` is true on exactly the rows that break that rule, never null.

Rules that need the whole table at once (unique keys, exact duplicates, freshness, row
counts) are not row rules; :mod:`keelson.data.contracts` applies them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import polars as pl

from keelson.errors import ContractError
from keelson.spec import ColumnRule, ColumnRuleName, ColumnType, Contract, Reference, Severity

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

DTYPES: dict[ColumnType, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "str": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
}
BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_DATETIME_TZ_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_RAW = "\x00raw"
_MASK = "\x00fails"


@dataclass(frozen=True)
class RowRule:
    """One row-level rule: which rows break it, and how to say why.

    ``code`` is the stable reason code (``type``, ``null``, ``min``, ``max``, ``allowed``,
    ``regex``, ``check:<name>``, ``reference``); ``where`` is its key path in keelson.yaml.
    """

    code: str
    column: str | None
    severity: Severity
    where: str
    describe: str
    fails: pl.Expr
    value: pl.Expr | None
    reason: pl.Expr


@dataclass(frozen=True)
class CompiledRules:
    """A contract compiled against one source schema.

    ``casts`` are the columns cast to a declared type; ``added`` and ``missing`` compare
    the source's columns with the declared ones; ``keys`` are the unique keys to check
    on the rows that pass every row rule; ``output`` the columns of the kept rows.
    """

    source: str
    schema: dict[str, pl.DataType]
    casts: dict[str, ColumnType]
    rules: list[RowRule]
    keys: list[list[str]]
    output: list[str]
    added: list[str]
    missing: list[str]
    first: list[pl.Expr]
    retry: dict[str, ColumnType]

    def prepare(self, frame: FrameT) -> FrameT:
        """Cast declared types in place, keeping each original column under a hidden name.

        Text is parsed as it is first (the fast path); only the values that did not parse
        are stripped of spaces and tried with the other parsers of their type.
        """
        frame = frame.with_columns(self.first) if self.first else frame
        if not self.retry:
            return frame
        if isinstance(frame, pl.DataFrame):
            return _retry_rows(frame, self.retry)
        return frame.with_columns(_retry(c, kind) for c, kind in self.retry.items())

    def masks(self) -> list[pl.Expr]:
        """One boolean column per rule (named by :func:`mask_name`), on a prepared frame."""
        return [rule.fails.alias(mask_name(i)) for i, rule in enumerate(self.rules)]

    def count_violations(self, frame: FrameT) -> FrameT:
        """One row: how many rows break each rule, then each unique key, in one pass.

        Columns are named by :func:`mask_name` for rules and ``unique[i]`` for keys. Keys
        count later duplicates over all rows; ``validate`` counts them among the rows that
        pass the row rules, so the two differ when a duplicate also breaks a rule.
        """
        keys = [_later_count(key).alias(f"unique[{i}]") for i, key in enumerate(self.keys)]
        return self.prepare(frame).select(*(m.sum() for m in self.masks()), *keys)

    def raw(self, col: str) -> pl.Expr:
        """The column's value as the source gave it, on a prepared frame."""
        return pl.col(raw_name(col)) if col in self.casts else pl.col(col)

    def text(self, col: str) -> pl.Expr:
        """The source value as text, as close as possible to how it came."""
        return as_text(self.raw(col), self.schema[col]).alias(col)


def later_duplicates(key: Sequence[str]) -> pl.Expr:
    """True on every row whose key already appeared above it (nulls compare equal)."""
    return ~key_value(key).is_first_distinct()


def _later_count(key: Sequence[str]) -> pl.Expr:
    """How many rows repeat an earlier key: the fastest exact form for one or more columns."""
    if len(key) == 1:
        return pl.len() - pl.col(key[0]).n_unique()
    return later_duplicates(key).sum()


def key_value(columns: Sequence[str]) -> pl.Expr:
    """The key as one value: the column itself, or a struct of several."""
    return pl.col(columns[0]) if len(columns) == 1 else pl.struct(columns)


def mask_name(index: int) -> str:
    return f"{_MASK}{index}"


def raw_name(col: str) -> str:
    return f"{col}{_RAW}"


def compile_rules(
    contract: Contract,
    schema: Mapping[str, pl.DataType],
    *,
    source: str = "source",
    references: Mapping[str, pl.DataFrame] | None = None,
    adopted: Collection[str] = (),
) -> CompiledRules:
    """Compile ``contract`` for a source with ``schema``.

    ``references`` holds the kept rows of the sources named in ``contract.references``;
    ``adopted`` lists retyped columns whose source type is kept (``retyped: adopt``).
    Raises :class:`ContractError` for a rule that cannot apply to this schema.
    """
    columns, compiled = _layout(contract, schema, source, adopted)
    scope = _Scope(source, compiled.schema, set(compiled.missing) - set(compiled.output))
    compiled.keys.extend(
        list(dict.fromkeys(key))
        for i, key in enumerate(contract.unique_keys)
        if scope.usable(key, f"unique[{i}]")
    )
    empty = compiled.prepare(pl.DataFrame(schema=schema))
    refs = references or {}
    for col, rule in columns.items():
        compiled.rules.extend(_column_rules(compiled, col, rule))
    for i in range(len(contract.checks)):
        compiled.rules.extend(_check_rule(compiled, scope, contract, i, empty))
    for i, ref in enumerate(contract.references):
        compiled.rules.extend(_reference_rule(compiled, scope, ref, i, refs))
    return compiled


def _layout(
    contract: Contract, schema: Mapping[str, pl.DataType], source: str, adopted: Collection[str]
) -> tuple[dict[str, ColumnRule], CompiledRules]:
    """The column rules that apply, and the rules compiled so far: casts and columns."""
    declared = contract.columns
    missing = [c for c in declared if c not in schema]
    filled = missing if contract.schema_changes.missing == "ignore" else []
    full = dict(schema) | {c: _declared_dtype(declared[c]) for c in filled}
    columns = {
        c: _adopt(r, full[c]) if c in adopted else r for c, r in declared.items() if c in full
    }
    casts = {
        c: kind
        for c, rule in columns.items()
        if c in schema and (kind := _cast_type(source, c, rule, schema[c]))
    }
    added = [c for c in schema if declared and c not in declared]
    dropped = added if contract.schema_changes.added == "ignore" else []
    retry: dict[str, ColumnType] = {
        c: kind for c, kind in casts.items() if schema[c] == pl.String and kind != "str"
    }
    compiled = CompiledRules(
        source=source,
        schema=full,
        casts=casts,
        rules=[],
        keys=[],
        output=[c for c in full if c not in dropped],
        added=added,
        missing=missing,
        first=_first_casts(schema, casts, {c: full[c] for c in filled}),
        retry=retry,
    )
    return columns, compiled


def conversion_failures(col: str, dtype: pl.DataType, kind: ColumnType) -> pl.Expr:
    """True where a non-null value of ``col`` does not convert to ``kind``."""
    return pl.col(col).is_not_null() & cast_to(pl.col(col), dtype, kind).is_null()


def retype_candidates(
    contract: Contract, schema: Mapping[str, pl.DataType]
) -> dict[str, ColumnType]:
    """Declared types that differ from the source's dtype and may not convert."""
    return {
        c: rule.type
        for c, rule in contract.columns.items()
        if rule.type not in (None, "str") and c in schema and schema[c] != DTYPES[rule.type]
    }


# --- structure -------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """The columns a rule may name: present (or filled) ones; missing ones are skipped."""

    source: str
    schema: Mapping[str, pl.DataType]
    skipped: set[str]

    def usable(self, columns: Iterable[str], key: str) -> bool:
        for col in columns:
            if col in self.skipped:
                return False
            if col not in self.schema:
                raise ContractError(
                    f"column {col!r} is not in source {self.source!r}"
                    f"{did_you_mean(col, self.schema)}; the source has {list(self.schema)}.",
                    where=f"contracts.{self.source}.{key}",
                    hint="Fix the column name in keelson.yaml or the source itself.",
                )
        return True


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _declared_dtype(rule: ColumnRule) -> pl.DataType:
    return DTYPES[rule.type] if rule.type else pl.String()


def _adopt(rule: ColumnRule, dtype: pl.DataType) -> ColumnRule:
    """The rule for a column whose source type is kept: no type, no range on text."""
    update: dict[str, Any] = {"type": None}
    if not dtype.is_numeric():
        update |= {"min": None, "max": None}
    return rule.model_copy(update=update)


def _cast_type(source: str, col: str, rule: ColumnRule, dtype: pl.DataType) -> ColumnType | None:
    """The type to cast to, if any; a range on an undeclared text column implies ``float``."""
    ranged = rule.min is not None or rule.max is not None
    where = f"contracts.{source}.columns.{col}"
    if ranged and rule.type not in (None, "int", "float"):
        raise ContractError(
            f"min/max apply to int or float columns, not {rule.type}.",
            where=where,
            hint="Remove min/max or declare `type: int` or `type: float`.",
        )
    kind = rule.type
    if kind is None and ranged and not dtype.is_numeric():
        if dtype != pl.String:
            raise ContractError(
                f"min/max apply to numbers, but column {col!r} holds {dtype}.",
                where=where,
                hint="Remove min/max, or express the bound as a check.",
            )
        kind = "float"
    return kind if kind is not None and DTYPES[kind] != dtype else None


def _first_casts(
    schema: Mapping[str, pl.DataType], casts: Mapping[str, ColumnType], filled: Mapping[str, Any]
) -> list[pl.Expr]:
    """Keep the raw values, cast (text with its first parser, as it is), add filled columns."""
    keep = [pl.col(c).alias(raw_name(c)) for c in casts]
    cast = [_first_cast(c, schema[c], kind) for c, kind in casts.items()]
    return keep + cast + [pl.lit(None, dtype).alias(c) for c, dtype in filled.items()]


def _first_cast(col: str, dtype: pl.DataType, kind: ColumnType) -> pl.Expr:
    if dtype == pl.String and kind != "str":
        return _PARSERS[kind][0](pl.col(col)).alias(col)
    return cast_to(pl.col(col), dtype, kind).alias(col)


def _retry(col: str, kind: ColumnType) -> pl.Expr:
    """Text the first parser left null: stripped, then every parser of ``kind`` in turn."""
    rest = pl.when(pl.col(col).is_null()).then(pl.col(raw_name(col)))
    return pl.coalesce(pl.col(col), cast_to(rest, pl.String(), kind)).alias(col)


def _retry_rows(frame: pl.DataFrame, retry: Mapping[str, ColumnType]) -> pl.DataFrame:
    """:func:`_retry` on a DataFrame, parsing only the rows left null (usually none)."""
    left = frame.select(
        (pl.col(c).is_null() & pl.col(raw_name(c)).is_not_null()).arg_true().implode().alias(c)
        for c in retry
    )
    fixed = []
    for col, kind in retry.items():
        at = left[col].explode().drop_nulls()
        if at.len():
            parsed = frame[at].select(_retry(col, kind)).to_series()
            fixed.append(frame[col].scatter(at, parsed))
    return frame.with_columns(fixed) if fixed else frame


# --- casting -----------------------------------------------------------------------


def cast_to(expr: pl.Expr, dtype: pl.DataType, kind: ColumnType) -> pl.Expr:
    """``expr`` (of ``dtype``) cast to ``kind``; a value that cannot be cast becomes null.

    Text is stripped of surrounding spaces and tried with each parser of ``kind`` in turn.
    """
    if kind == "str":
        return as_text(expr, dtype)
    if dtype == DTYPES[kind]:
        return expr
    if dtype == pl.String:
        text = expr.str.strip_chars()
        return pl.coalesce(parse(text) for parse in _PARSERS[kind])
    return _CASTS[kind](expr, dtype)


def _to_int(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_integer() or dtype == pl.Boolean:
        return expr.cast(pl.Int64, strict=False)
    return _whole(expr.cast(pl.Float64, strict=False))


def _whole(as_float: pl.Expr) -> pl.Expr:
    """A float that holds a whole number, as Int64; other values null."""
    whole = as_float.is_finite() & (as_float.floor() == as_float) & (as_float.abs() < 2.0**63)
    return pl.when(whole).then(as_float).cast(pl.Int64, strict=False)


def _to_float(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return expr.cast(pl.Float64, strict=False)


def _to_bool(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_numeric():
        return pl.when(expr == 1).then(True).when(expr == 0).then(False)
    return expr.cast(pl.Boolean, strict=False)


def _to_date(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return expr.cast(pl.Date, strict=False)


def _to_datetime(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Datetime in microseconds, naive UTC: aware values are converted, naive ones kept."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us"))
    return expr.cast(pl.Datetime("us"), strict=False)


_CASTS: dict[ColumnType, Callable[[pl.Expr, pl.DataType], pl.Expr]] = {
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "date": _to_date,
    "datetime": _to_datetime,
}


def _naive(fmt: str) -> Callable[[pl.Expr], pl.Expr]:
    return lambda text: text.str.to_datetime(fmt, strict=False, time_unit="us")


def _aware(fmt: str) -> Callable[[pl.Expr], pl.Expr]:
    return lambda text: text.str.to_datetime(
        fmt, strict=False, time_unit="us", time_zone="UTC"
    ).dt.replace_time_zone(None)


# Parsers of text, tried in order; each gives null where it does not apply.
_PARSERS: dict[ColumnType, list[Callable[[pl.Expr], pl.Expr]]] = {
    "int": [
        lambda text: text.cast(pl.Int64, strict=False),
        lambda text: _whole(text.cast(pl.Float64, strict=False)),  # "3.0", "1e3"
    ],
    "float": [lambda text: text.cast(pl.Float64, strict=False)],
    "bool": [
        lambda text: text.str.to_lowercase().replace_strict(
            BOOLS, default=None, return_dtype=pl.Boolean
        )
    ],
    "date": [lambda text: text.str.to_date("%Y-%m-%d", strict=False)],
    "datetime": [*map(_naive, _DATETIME_FORMATS), *map(_aware, _DATETIME_TZ_FORMATS)],
}


def as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The value as text, as close as possible to how it came (nested values as JSON)."""
    if dtype.is_nested():
        encoded = pl.struct(expr.alias("v")).struct.json_encode()
        text = encoded.str.strip_prefix('{"v":').str.strip_suffix("}")
        return pl.when(expr.is_not_null()).then(text)
    return expr.cast(pl.String)


# --- column rules --------------------------------------------------------------------


def _say(*parts: str | pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])


def number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _row_rule(
    compiled: CompiledRules, col: str, name: ColumnRuleName, rule: ColumnRule, describe: str
) -> Callable[[pl.Expr], RowRule]:
    """A column rule builder: give it the failure condition."""
    where = f"contracts.{compiled.source}.columns.{col}.{'nullable' if name == 'null' else name}"
    text = compiled.text(col)
    value = None if name == "null" else text

    def build(fails: pl.Expr) -> RowRule:
        reason = (
            _say(f"{col} {describe}") if value is None else _say(f"{col}=", value, f" {describe}")
        )
        severity = rule.severity_of(name)
        return RowRule(name, col, severity, where, describe, fails.fill_null(False), value, reason)

    return build


def _column_rules(compiled: CompiledRules, col: str, rule: ColumnRule) -> list[RowRule]:
    """Every rule of one column, in order: type, null, min, max, allowed, regex."""
    value, raw = pl.col(col), compiled.raw(col)
    kind = compiled.casts.get(col)
    rules = []
    if kind and kind != "str":
        what = kind if rule.type else "number"
        describe = f"is not {'an' if what == 'int' else 'a'} {what}"
        rules.append(
            _row_rule(compiled, col, "type", rule, describe)(raw.is_not_null() & value.is_null())
        )
    if not rule.nullable:
        rules.append(
            _row_rule(compiled, col, "null", rule, "is null (nullable: false)")(raw.is_null())
        )
    # NaN is within no range: it breaks min and max alike
    nan = value.is_nan() if _prepared_dtype(compiled, col).is_float() else pl.lit(False)
    if rule.min is not None:
        describe = f"below min {number_text(rule.min)}"
        rules.append(_row_rule(compiled, col, "min", rule, describe)((value < rule.min) | nan))
    if rule.max is not None:
        describe = f"above max {number_text(rule.max)}"
        rules.append(_row_rule(compiled, col, "max", rule, describe)((value > rule.max) | nan))
    if rule.allowed is not None:
        rules.append(_allowed_rule(compiled, col, rule))
    if rule.regex is not None:
        rules.append(_regex_rule(compiled, col, rule, rule.regex))
    return rules


def _allowed_rule(compiled: CompiledRules, col: str, rule: ColumnRule) -> RowRule:
    allowed = rule.allowed or []
    kind = compiled.casts.get(col)
    target = DTYPES[kind] if kind else compiled.schema[col]
    where = f"contracts.{compiled.source}.columns.{col}.allowed"
    value = pl.col(col)
    if target.is_numeric():
        numbers = [_allowed_number(where, col, v) for v in allowed]
        whole = target.is_integer() and all(float(n).is_integer() for n in numbers)
        members = pl.Series(numbers, dtype=pl.Float64).cast(pl.Int64 if whole else pl.Float64)
        inside = (value if whole else value.cast(pl.Float64)).is_in(members.implode())
    elif target == pl.Boolean:
        members = pl.Series([_allowed_bool(where, col, v) for v in allowed], dtype=pl.Boolean)
        inside = value.is_in(members.implode())
    else:
        members = pl.Series([_allowed_text(v) for v in allowed], dtype=pl.String)
        inside = value.cast(pl.String).is_in(members.implode())
    listed = ", ".join(_allowed_text(v) for v in allowed)
    build = _row_rule(compiled, col, "allowed", rule, f"not in allowed [{listed}]")
    return build(value.is_not_null() & ~inside)


def _allowed_text(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return number_text(v) if isinstance(v, float) else str(v)


def _allowed_number(where: str, col: str, v: str | int | float | bool) -> float:
    try:
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    except ValueError:
        raise ContractError(
            f"allowed value {v!r} is not a number but column {col!r} is numeric.",
            where=where,
            hint="List numbers, or declare `type: str` to compare as text.",
        ) from None


def _allowed_bool(where: str, col: str, v: str | int | float | bool) -> bool:
    text = _allowed_text(v).lower()
    if text not in BOOLS:
        raise ContractError(
            f"allowed value {v!r} is not a boolean but column {col!r} is bool.",
            where=where,
            hint="List true/false, or declare `type: str` to compare as text.",
        )
    return BOOLS[text]


def _regex_rule(compiled: CompiledRules, col: str, rule: ColumnRule, pattern: str) -> RowRule:
    """Text values must contain a match of ``pattern`` (Rust regex syntax, as Polars)."""
    try:
        pl.select(pl.lit("", pl.String).str.contains(pattern))
    except pl.exceptions.PolarsError as exc:
        raise ContractError(
            f"the regex of column {col!r} is not valid: {_polars_message(exc)}",
            where=f"contracts.{compiled.source}.columns.{col}.regex",
            hint="Fix the pattern (Rust regex syntax; in YAML, quote it with single quotes).",
        ) from None
    text = (
        as_text(pl.col(col), compiled.schema[col]) if col in compiled.casts else compiled.text(col)
    )
    build = _row_rule(compiled, col, "regex", rule, f"does not match regex {pattern!r}")
    return build(text.is_not_null() & ~text.str.contains(pattern))


# --- checks and references ----------------------------------------------------------


def shown(compiled: CompiledRules, columns: Sequence[str], named: bool = False) -> pl.Expr:
    """``v`` for one column (``a=v`` if ``named``), ``a=1, b=2`` for several (nulls: null)."""
    if len(columns) == 1 and not named:
        return compiled.text(columns[0])
    parts: list[str | pl.Expr] = []
    for i, col in enumerate(columns):
        parts += [f"{', ' if i else ''}{col}=", compiled.text(col).fill_null("null")]
    return _say(*parts)


def _check_rule(
    compiled: CompiledRules, scope: _Scope, contract: Contract, index: int, empty: pl.DataFrame
) -> list[RowRule]:
    """A custom check: valid when the SQL expression is true (false or null break it)."""
    check = contract.checks[index]
    where = f"contracts.{compiled.source}.checks[{index}].expr"
    expr = _parse_check(where, check.expr)
    names = list(dict.fromkeys(expr.meta.root_names()))
    if not scope.usable(names, f"checks[{index}].expr"):
        return []  # names a missing column: reported as a schema change, not checked
    _check_dtype(where, check.expr, expr, empty)
    describe = f"check {check.name} ({check.expr}) is not true"
    values = shown(compiled, names, named=True) if names else None
    reason = _say(describe) if values is None else _say(describe, " for ", values.fill_null("null"))
    return [
        RowRule(
            code=f"check:{check.name}",
            column=", ".join(names) or None,
            severity=check.severity,
            where=where,
            describe=describe,
            fails=~expr.fill_null(False),
            value=values,
            reason=reason,
        )
    ]


_CHECK_HINT = "Write a Polars SQL expression over the row, true for a valid row."


def _polars_message(exc: Exception) -> str:
    return " ".join(str(exc).split("This error occurred")[0].split())


def _parse_check(where: str, text: str) -> pl.Expr:
    try:
        return pl.sql_expr(text)
    except pl.exceptions.PolarsError as exc:
        raise ContractError(
            f"{text!r} is not a valid check: {_polars_message(exc)}", where=where, hint=_CHECK_HINT
        ) from None


def _check_dtype(where: str, text: str, expr: pl.Expr, empty: pl.DataFrame) -> None:
    """Evaluate the check on no rows: type errors surface here, once, not mid-run."""
    try:
        dtype = empty.select(expr).to_series().dtype
    except pl.exceptions.PolarsError as exc:
        raise ContractError(
            f"{text!r} is not a valid check: {_polars_message(exc)}", where=where, hint=_CHECK_HINT
        ) from None
    if dtype not in (pl.Boolean, pl.Null):
        raise ContractError(
            f"{text!r} gives {dtype} values; a check must be true or false for each row.",
            where=where,
            hint=_CHECK_HINT,
        )


def _reference_rule(
    compiled: CompiledRules,
    scope: _Scope,
    ref: Reference,
    index: int,
    references: Mapping[str, pl.DataFrame],
) -> list[RowRule]:
    """Values of ``ref.columns`` must exist in the referenced source (nulls are fine)."""
    where = f"contracts.{compiled.source}.references[{index}]"
    if not scope.usable(ref.columns, f"references[{index}].columns"):
        return []
    target = _referenced(where, ref, references)
    inside = _is_in(compiled, ref.columns, target)
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in ref.columns)
    to = ref.to or ref.columns
    describe = f"not found in {ref.source}.{', '.join(to)}"
    values = shown(compiled, ref.columns)
    return [
        RowRule(
            code="reference",
            column=", ".join(ref.columns),
            severity=ref.severity,
            where=where,
            describe=describe,
            fails=(complete & ~inside.fill_null(False)).fill_null(False),
            value=values,
            reason=_say(
                f"{ref.columns[0]}=" if len(ref.columns) == 1 else "", values, f" {describe}"
            ),
        )
    ]


def _referenced(where: str, ref: Reference, references: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The referenced key columns, renamed to the referencing names, distinct and non-null."""
    frame = references.get(ref.source)
    if frame is None:
        raise ContractError(
            f"source {ref.source!r} must be validated before this one to check the reference.",
            where=f"{where}.source",
            hint="Validate sources in `validation_order`; a reference cannot point back.",
        )
    to = ref.to or ref.columns
    if len(to) != len(ref.columns):
        raise ContractError(
            f"`to` names {len(to)} columns but `columns` names {len(ref.columns)}.",
            where=f"{where}.to",
            hint="List one referenced column per referencing column.",
        )
    for col in to:
        if col not in frame.columns:
            raise ContractError(
                f"column {col!r} is not in source {ref.source!r}"
                f"{did_you_mean(col, frame.columns)}; it has {frame.columns}.",
                where=f"{where}.{'to' if ref.to else 'columns'}",
                hint="Name the referenced columns with `to`.",
            )
    renamed = frame.select(pl.col(t).alias(c) for t, c in zip(to, ref.columns, strict=True))
    return renamed.drop_nulls().unique()


def _is_in(compiled: CompiledRules, columns: Sequence[str], target: pl.DataFrame) -> pl.Expr:
    """Membership of the row's values in ``target``; text comparison when dtypes differ."""
    local = {c: pl.col(c) for c in columns}
    same = all(target.schema[c] == _prepared_dtype(compiled, c) for c in columns)
    if not same:
        local = {c: e.cast(pl.String) for c, e in local.items()}
        target = target.select(pl.col(c).cast(pl.String) for c in columns)
    if len(columns) == 1:
        return local[columns[0]].is_in(target.to_series().implode())
    return pl.struct(list(local.values())).is_in(
        target.select(pl.struct(pl.all())).to_series().implode()
    )


def _prepared_dtype(compiled: CompiledRules, col: str) -> pl.DataType:
    kind = compiled.casts.get(col)
    return DTYPES[kind] if kind else compiled.schema[col]
