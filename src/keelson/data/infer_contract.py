"""Propose a contract from the data: the rules a source already satisfies, as a start.

Statistics (nulls, ranges, distinct values) are computed over the whole frame in one
pass, so the source always passes the proposed contract with nothing quarantined. A
sample of ``sample_rows`` rows is used only to guess text patterns; a guessed pattern
is proposed only when every sampled value has the same shape, and only after every
value of the whole column matches it.
"""

from __future__ import annotations

import math
import re
from typing import Any

import polars as pl
import yaml

from keelson.spec import ColumnType, Contract

MAX_ALLOWED = 20  # at most this many distinct values become an ``allowed`` list
ALLOWED_SHARE = 0.1  # ... and only when distinct values are at most this share of the rows
MAX_SHAPE = 40  # longer text is free text, not a code: no pattern is guessed
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key)$|[a-z0-9]Id$", re.IGNORECASE)
_EMAIL = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_DATE_SHAPE = "9999-99-99"
_CLASSES = {"A": "[A-Z]", "a": "[a-z]", "9": r"\d"}


def infer_contract(frame: pl.DataFrame, *, sample_rows: int = 100_000) -> dict[str, Any]:
    """The contract ``frame`` satisfies, as the dict that goes under ``contracts.<source>``."""
    stats = _stats(frame)
    sample = frame if frame.height <= sample_rows else frame.sample(sample_rows, seed=0)
    columns = {col: _column(frame, sample, col, stats) for col in frame.columns}
    keys = [[col] for col in frame.columns if _is_key(frame, col, stats)]
    contract: dict[str, Any] = {}
    if keys:
        contract["unique"] = keys[0] if len(keys) == 1 else keys
    contract["columns"] = columns
    Contract.model_validate(contract)  # a proposal that does not parse is a bug here
    return contract


def contract_yaml(name: str, contract: dict[str, Any]) -> str:
    """A commented YAML snippet to paste into keelson.yaml (``contracts.<name>``)."""
    lines = [
        f"# Contract proposed by keelson for source {name!r}, from the values it holds now.",
        "# Review it: ranges are rounded outward from the values seen, `allowed` lists the",
        "# values seen. A row that breaks a rule is quarantined (severity: warn only reports,",
        "# fail stops the run).",
        "contracts:",
        f"  {_scalar(name)}:",
    ]
    if "unique" in contract:
        lines.append(f"    unique: {_flow(contract['unique'])}")
    lines.append("    columns:")
    lines += [f"      {_scalar(col)}: {_flow(rule)}" for col, rule in contract["columns"].items()]
    return "\n".join(lines) + "\n"


# --- statistics ------------------------------------------------------------------------


def _stats(frame: pl.DataFrame) -> dict[str, Any]:
    """Nulls and distinct values of every column; min and max of the numeric ones."""
    exprs = [pl.col(c).null_count().alias(f"{c}\x00nulls") for c in frame.columns]
    exprs += [pl.col(c).n_unique().alias(f"{c}\x00distinct") for c in frame.columns]
    numeric = [c for c, t in frame.schema.items() if t.is_numeric() and not t.is_decimal()]
    exprs += [pl.col(c).min().alias(f"{c}\x00min") for c in numeric]
    exprs += [pl.col(c).max().alias(f"{c}\x00max") for c in numeric]
    exprs += [
        pl.col(c).is_nan().any().alias(f"{c}\x00nan") for c in numeric if frame.schema[c].is_float()
    ]
    return frame.select(exprs).row(0, named=True) if exprs else {}


def _distinct(stats: dict[str, Any], col: str) -> int:
    """Distinct non-null values."""
    return int(stats[f"{col}\x00distinct"]) - (1 if stats[f"{col}\x00nulls"] else 0)


def _is_key(frame: pl.DataFrame, col: str, stats: dict[str, Any]) -> bool:
    dtype = frame.schema[col]
    return (
        frame.height >= 2
        and (dtype.is_integer() or dtype == pl.String)
        and stats[f"{col}\x00nulls"] == 0
        and _distinct(stats, col) == frame.height
        and bool(_ID_NAME.search(col))
    )


# --- columns -----------------------------------------------------------------------------


def _column(
    frame: pl.DataFrame, sample: pl.DataFrame, col: str, stats: dict[str, Any]
) -> dict[str, Any]:
    dtype = frame.schema[col]
    rule: dict[str, Any] = {}
    kind = _type(dtype, stats, col)
    if dtype == pl.String:
        kind = _text_type(frame[col], sample[col]) or kind
    if kind:
        rule["type"] = kind
    if stats[f"{col}\x00nulls"] == 0 and frame.height:
        rule["nullable"] = False
    ranged = dtype.is_numeric() and not stats.get(f"{col}\x00nan")  # NaN is in no range
    if kind in ("int", "float") and ranged and not _is_key(frame, col, stats):
        rule |= _range(stats[f"{col}\x00min"], stats[f"{col}\x00max"], kind)
    if kind == "str":
        text = frame[col].cast(pl.String), sample[col].cast(pl.String)  # categorical too
        rule |= _text_rules(*text, _distinct(stats, col))
    return rule


def _type(dtype: pl.DataType, stats: dict[str, Any], col: str) -> ColumnType | None:
    """The declared type every value already has (none for nested and exotic types)."""
    if dtype.is_integer():
        biggest = stats.get(f"{col}\x00max")
        return "int" if biggest is None or biggest < 2**63 else None
    if dtype.is_float():
        return "float"
    simple: dict[Any, ColumnType] = {
        pl.String: "str",
        pl.Categorical: "str",
        pl.Enum: "str",
        pl.Boolean: "bool",
        pl.Date: "date",
        pl.Datetime: "datetime",
    }
    return simple.get(dtype.base_type())


def _text_type(values: pl.Series, sample: pl.Series) -> ColumnType | None:
    """``date`` or ``datetime`` for text that holds nothing else (checked on every value)."""
    from keelson.data.rules import cast_to

    shapes = _shapes(sample)
    if shapes.is_empty() or not shapes.str.starts_with(_DATE_SHAPE).all():
        return None
    for kind in ("date", "datetime"):
        parsed = values.to_frame().select(cast_to(pl.col(values.name), pl.String(), kind))
        if parsed.to_series().null_count() == values.null_count():
            return kind
    return None


def _range(low: float | None, high: float | None, kind: str) -> dict[str, Any]:
    """``min``/``max`` rounded outward to a step of about a tenth of the range's magnitude."""
    if low is None or high is None or not math.isfinite(float(high) - float(low)):
        return {}  # no values, or infinities: no range to propose
    spread = float(high) - float(low)
    step = 10.0 ** (math.floor(math.log10(spread)) - 1) if spread > 0 else 1.0
    if kind == "int":
        step = max(step, 1.0)
    return {
        "min": _outward(float(low), step, math.floor),
        "max": _outward(float(high), step, math.ceil),
    }


def _outward(value: float, step: float, direction: Any) -> int | float:
    digits = max(0, -math.floor(math.log10(step)))
    rounded = round(direction(value / step) * step, digits)
    if direction is math.floor and rounded > value:
        rounded = round(rounded - step, digits)
    if direction is math.ceil and rounded < value:
        rounded = round(rounded + step, digits)
    return int(rounded) if float(rounded).is_integer() else rounded


def _text_rules(values: pl.Series, sample: pl.Series, distinct: int) -> dict[str, Any]:
    """``allowed`` for low-cardinality text, else ``regex`` when one shape fits every value."""
    present = values.len() - values.null_count()
    if 0 < distinct <= MAX_ALLOWED and distinct <= ALLOWED_SHARE * present:
        return {"allowed": sorted(values.drop_nulls().unique().to_list())}
    pattern = _pattern(sample)
    if pattern and values.drop_nulls().str.contains(pattern).all():
        return {"regex": pattern}
    return {}


def _shapes(sample: pl.Series) -> pl.Series:
    """Each value with letters as A/a and digits as 9: ``C000123`` -> ``A999999``."""
    return (
        sample.drop_nulls()
        .str.replace_all("[A-Z]", "A")
        .str.replace_all("[a-z]", "a")
        .str.replace_all("[0-9]", "9")
        .unique()
    )


def _pattern(sample: pl.Series) -> str | None:
    """A regex every sampled value matches: one shared shape, an e-mail or a UUID."""
    values = sample.drop_nulls()
    if values.is_empty():
        return None
    shapes = _shapes(values)
    if shapes.len() == 1 and 0 < len(shapes[0]) <= MAX_SHAPE:
        return _shape_regex(shapes[0])
    for pattern in (_UUID, _EMAIL):
        if values.str.contains(pattern).all():
            return pattern
    return None


def _shape_regex(shape: str) -> str:
    """``A999999`` -> ``^[A-Z]\\d{6}$``; other characters are matched literally."""
    parts = []
    for run in re.finditer(r"(.)\1*", shape):
        char, count = run.group(1), len(run.group(0))
        token = _CLASSES.get(char, re.escape(char))
        parts.append(token if count == 1 else f"{token}{{{count}}}")
    return "^" + "".join(parts) + "$"


# --- YAML ------------------------------------------------------------------------------


def _flow(value: Any) -> str:
    """One-line YAML (flow style), keys in order, quoted where YAML needs it."""
    dumped = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    return dumped.strip().removesuffix("...").strip()


def _scalar(value: str) -> str:
    return _flow(value)
