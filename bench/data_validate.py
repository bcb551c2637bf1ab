"""Validate 30 rules on a generated table: keelson against pandera, Great Expectations and
a hand-written Polars pass (the floor).

The table is generated here (seeded, vectorised), so the benchmark needs no data folder:
``--rows`` rows (default 10,000,000) x 20 columns of integers, floats with nulls,
low-cardinality text, identifiers, e-mail-like text, codes and dates, with a known number
of violations injected for each rule, on disjoint rows.

The 30 rules are written once, as a keelson ``Contract``, and translated to:

- pandera's Polars backend (``pandera.polars``, ``lazy=True`` to collect every failure);
- Great Expectations 1.x on pandas (ephemeral context, one suite, ``result_format=BASIC``,
  the smallest format that still counts the failing rows);
- the floor: one Polars ``select`` that counts the violations of all 30 rules.

Before timing, every tool must find the injected number of failing rows for every rule.
Uniqueness: pandera and GX count every member of a duplicated group, keelson and the floor
the later occurrences; the injected duplicates are pairs, so the first two count twice.

Each tool is timed on equal terms: the data is in memory in its native frame type (the
pandas copy for GX is made before timing and its cost reported as ``gx_to_pandas``).
keelson does more than count: it casts the declared types, builds the kept table and
the quarantine rows with their reasons and example values. ``keelson_count`` times its
count-only path (the compiled rules' violation counts plus the unique keys), which does
the same work as the floor.

    uv run --group bench python bench/data_validate.py [--rows N] [--repeats R]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import string
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from keelson.data.contracts import Validation, validate
from keelson.data.rules import compile_rules
from keelson.data.sources import SourceRead, rejects
from keelson.spec import Contract

Schema = Mapping[str, pl.DataType]
SEED = 20240611
INT_TEXT = r"^\s*[+-]?\d+\s*$"
FLOAT_TEXT = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"

CONTRACT = Contract.model_validate(
    {
        "unique": [["id"], ["customer", "seq"]],
        "columns": {
            "id": {"type": "int"},
            "customer": {"type": "int"},
            "seq": {"type": "int"},
            "age": {"type": "int", "nullable": False, "min": 18, "max": 100},
            "income": {"type": "float", "min": 0},
            "score": {"type": "float", "min": 0, "max": 1},
            "balance": {"type": "float", "nullable": False, "max": 1_000_000},
            "country": {"allowed": ["US", "DE", "FR", "GB", "ES", "IT", "NL", "SE"]},
            "channel": {"nullable": False, "allowed": ["web", "store", "phone", "partner"]},
            "status": {"allowed": ["active", "dormant", "closed"]},
            "email": {"nullable": False, "regex": r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"},
            "zip": {"regex": r"^\d{5}$"},
            "code": {"regex": r"^[A-Z]{2}-\d{4}$"},
            "signup": {"type": "date", "nullable": False},
            "last_seen": {"type": "date"},
            "qty": {"type": "int", "nullable": False, "min": 0},
            "price": {"type": "float", "min": 0},
            "discount": {"type": "float"},
            "amount_text": {"type": "int"},
            "rate_text": {"type": "float"},
        },
        "checks": [
            {"name": "seen_after_signup", "expr": "signup IS NULL OR last_seen >= signup"},
            {"name": "discount_le_price", "expr": "discount IS NULL OR discount <= price"},
            {"name": "customer_positive", "expr": "customer > 0"},
            {"name": "seq_in_range", "expr": "seq BETWEEN 1 AND 8"},
            {"name": "closed_is_empty", "expr": "status <> 'closed' OR balance = 0"},
            {"name": "us_has_zip", "expr": "country <> 'US' OR zip IS NOT NULL"},
        ],
        "max_quarantine_share": 1.0,
    }
)


# --- data ----------------------------------------------------------------------------


def generate(rows: int, seed: int = SEED) -> tuple[pl.DataFrame, int]:
    """A clean table, then ``per_rule`` violations of each rule on disjoint clean rows."""
    rng = np.random.default_rng(seed)
    frame = _clean(rows, rng)
    per_rule = max(1, rows // 10_000)
    return _inject(frame, per_rule, rng), per_rule


def _clean(n: int, rng: np.random.Generator) -> pl.DataFrame:
    ids = np.arange(1, n + 1, dtype=np.int64)
    status = rng.choice(np.array(["active", "dormant", "closed"]), n, p=[0.8, 0.15, 0.05])
    signup = rng.integers(0, 3000, n)
    price = rng.uniform(1, 1000, n).round(2)
    raw = pl.DataFrame(
        {
            "id": ids,
            "customer": ids // 8 + 1,
            "seq": ids % 8 + 1,
            "age": rng.integers(18, 101, n),
            "income": _with_nulls(rng.gamma(2.0, 20_000.0, n).round(2), 0.05, rng),
            "score": _with_nulls(rng.random(n), 0.03, rng),
            "balance": np.where(status == "closed", 0.0, rng.normal(5000, 2000, n).round(2)),
            "country": _pick(COUNTRIES, n, rng),
            "channel": _pick(CHANNELS, n, rng),
            "status": status,
            "zip": rng.integers(0, 100_000, n),
            "letters": rng.integers(0, 26 * 26, n),
            "digits": rng.integers(0, 10_000, n),
            "signup": signup,
            "last_seen": signup + rng.integers(0, 1000, n),
            "qty": rng.integers(0, 50, n),
            "price": price,
            "discount": _with_nulls((price * rng.uniform(0, 0.5, n)).round(2), 0.2, rng),
            "amount_text": rng.integers(0, 100_000, n),
            "rate_text": rng.random(n).round(4),
        }
    )
    return raw.with_columns(_derived()).select(list(CONTRACT.columns))


COUNTRIES = ["US", "DE", "FR", "GB", "ES", "IT", "NL", "SE"]
CHANNELS = ["web", "store", "phone", "partner"]


def _pick(values: list[str], n: int, rng: np.random.Generator) -> pl.Series:
    return pl.Series(rng.integers(0, len(values), n)).replace_strict(
        dict(enumerate(values)), return_dtype=pl.String
    )


def _derived() -> list[pl.Expr]:
    """Text and date columns built from numbers with expressions (no Python loop)."""
    letter = dict(enumerate(string.ascii_uppercase))
    first = (pl.col("letters") // 26).replace_strict(letter, return_dtype=pl.String)
    second = (pl.col("letters") % 26).replace_strict(letter, return_dtype=pl.String)
    digits = pl.col("digits").cast(pl.String).str.zfill(4)
    start = pl.lit(date(2015, 1, 1))
    return [
        pl.format("user{}@example.com", pl.col("id")).alias("email"),
        pl.col("zip").cast(pl.String).str.zfill(5),
        pl.concat_str(first, second, pl.lit("-"), digits).alias("code"),
        *((start + pl.duration(days=pl.col(c))).alias(c) for c in ("signup", "last_seen")),
        pl.col("amount_text").cast(pl.String),
        pl.col("rate_text").cast(pl.String),
    ]


def _with_nulls(values: np.ndarray, share: float, rng: np.random.Generator) -> pl.Series:
    return pl.Series(values).scatter(np.flatnonzero(rng.random(values.size) < share), None)


def _null(col: str) -> Callable[[pl.DataFrame, np.ndarray], dict[str, Any]]:
    return lambda frame, at: {col: None}


# Each rule's violation, applied to its own rows: column -> new value (None = null), or a
# function of the frame and the rows. The key is the rule's name in the comparison.
Change = Callable[[pl.DataFrame, np.ndarray], dict[str, Any]]
_VIOLATIONS: dict[str, Change] = {
    "type:amount_text": lambda f, at: {"amount_text": "12x"},
    "type:rate_text": lambda f, at: {"rate_text": "n/a"},
    **{f"null:{c}": _null(c) for c in ("age", "balance", "channel", "email", "signup", "qty")},
    "min:age": lambda f, at: {"age": 12},
    "max:age": lambda f, at: {"age": 140},
    "min:income": lambda f, at: {"income": -5.0},
    "min:score": lambda f, at: {"score": -0.5},
    "max:score": lambda f, at: {"score": 1.5},
    "max:balance": lambda f, at: {"balance": 2_000_000.0},
    "min:qty": lambda f, at: {"qty": -3},
    "min:price": lambda f, at: {"price": -1.0, "discount": None},
    "allowed:country": lambda f, at: {"country": "XX"},
    "allowed:channel": lambda f, at: {"channel": "fax"},
    "allowed:status": lambda f, at: {"status": "unknown"},
    "regex:email": lambda f, at: {"email": "not-an-email"},
    "regex:zip": lambda f, at: {"zip": "ABCDE"},
    "regex:code": lambda f, at: {"code": "A1-xx"},
    "check:seen_after_signup": lambda f, at: {
        "last_seen": f["signup"].gather(at) - timedelta(days=5)
    },
    "check:discount_le_price": lambda f, at: {"discount": f["price"].gather(at) + 10.0},
    "check:customer_positive": lambda f, at: {"customer": -f["customer"].gather(at)},
    "check:seq_in_range": lambda f, at: {"seq": 0},
    "check:closed_is_empty": lambda f, at: {"status": "closed", "balance": 100.0},
    "check:us_has_zip": lambda f, at: {"country": "US", "zip": None},
}
_PAIRS = {"unique:id": ["id"], "unique:customer, seq": ["customer", "seq"]}


def _inject(frame: pl.DataFrame, k: int, rng: np.random.Generator) -> pl.DataFrame:
    """Violate every rule on ``k`` rows of its own (pairs of ``k`` rows for unique keys).

    The rows are active and outside the US, so that no violation breaks another rule.
    """
    clean = frame.select((pl.col("status") == "active") & (pl.col("country") != "US"))
    pool = clean.to_series().arg_true().to_numpy()
    need = k * (len(_VIOLATIONS) + 2 * len(_PAIRS))
    chosen = rng.choice(pool, need, replace=False)
    blocks = iter(np.split(chosen, need // k))
    for change in _VIOLATIONS.values():
        at = next(blocks)
        frame = frame.with_columns(_scatter(frame, c, at, v) for c, v in change(frame, at).items())
    for key in _PAIRS.values():
        first, later = next(blocks), next(blocks)
        frame = frame.with_columns(_scatter(frame, c, later, frame[c].gather(first)) for c in key)
    return frame


def _scatter(frame: pl.DataFrame, col: str, at: np.ndarray, value: Any) -> pl.Series:
    return frame[col].scatter(at, value)


def rule_names() -> list[str]:
    return [*_VIOLATIONS, *_PAIRS]


def numbers_as_text(contract: Contract, schema: Schema) -> dict[str, str]:
    """Columns declared int or float that hold text: the rows where the type can fail."""
    return {
        col: str(rule.type)
        for col, rule in contract.columns.items()
        if rule.type in ("int", "float") and schema[col] == pl.String
    }


# --- keelson -------------------------------------------------------------------------


def keelson_counts(frame: pl.DataFrame) -> dict[str, int]:
    """Rows failing each rule, from the findings of a full validation."""
    return {_finding_name(f.rule, f.column): f.count for f in run_keelson(frame).findings}


def _finding_name(rule: str, column: str | None) -> str:
    return rule if rule.startswith("check:") else f"{rule}:{column}"


def run_keelson(frame: pl.DataFrame) -> Validation:
    return validate(SourceRead("bench", frame, rejects([]), {}), CONTRACT)


def run_keelson_count(frame: pl.DataFrame) -> dict[str, int]:
    """The count-only path: compiled rule counts and unique keys in one select."""
    compiled = compile_rules(CONTRACT, frame.schema, source="bench")
    found = compiled.count_violations(frame).row(0, named=True)
    names = [_finding_name(r.code, r.column) for r in compiled.rules]
    names += [f"unique:{', '.join(key)}" for key in compiled.keys]
    return dict(zip(names, found.values(), strict=True))


# --- the floor -----------------------------------------------------------------------


def floor_expressions(contract: Contract, schema: Schema) -> list[pl.Expr]:
    """What one would write by hand: one violation count per rule, for one select."""
    exprs: dict[str, pl.Expr] = {}
    for col, rule in contract.columns.items():
        c = pl.col(col)
        if col in numbers_as_text(contract, schema):
            target = pl.Int64 if rule.type == "int" else pl.Float64
            exprs[f"type:{col}"] = (
                c.is_not_null() & c.str.strip_chars().cast(target, strict=False).is_null()
            )
        if not rule.nullable:
            exprs[f"null:{col}"] = c.is_null()
        if rule.min is not None:
            exprs[f"min:{col}"] = c < rule.min
        if rule.max is not None:
            exprs[f"max:{col}"] = c > rule.max
        if rule.allowed is not None:
            exprs[f"allowed:{col}"] = c.is_not_null() & ~c.is_in(rule.allowed)
        if rule.regex is not None:
            exprs[f"regex:{col}"] = ~c.str.contains(rule.regex)
    for check in contract.checks:
        exprs[f"check:{check.name}"] = ~pl.sql_expr(check.expr).fill_null(False)
    counts = [e.sum().alias(n) for n, e in exprs.items()]
    for key in contract.unique_keys:  # later occurrences: the fastest exact form we found
        name = f"unique:{', '.join(key)}"
        if len(key) == 1:
            counts.append((pl.len() - pl.col(key[0]).n_unique()).alias(name))
        else:
            counts.append((~pl.struct(key).is_first_distinct()).sum().alias(name))
    return counts


def run_floor(frame: pl.DataFrame, counts: list[pl.Expr]) -> dict[str, int]:
    return frame.select(counts).row(0, named=True)


# --- pandera -------------------------------------------------------------------------


def pandera_schema(
    contract: Contract, schema: Schema
) -> tuple[Any, dict[tuple[str | None, str], str]]:
    """The contract as a pandera Polars schema, and (column, check) -> rule name."""
    import pandera.polars as pa

    names: dict[tuple[str | None, str], str] = {}
    columns = {}
    single = {key[0] for key in contract.unique_keys if len(key) == 1}
    for col, rule in contract.columns.items():
        checks = _pandera_checks(pa, col, rule, col in numbers_as_text(contract, schema))
        names |= {(col, str(i)): name for i, (name, _) in enumerate(checks)}
        names[(col, "not_nullable")] = f"null:{col}"
        names[(col, "field_uniqueness")] = f"unique:{col}"
        columns[col] = pa.Column(
            schema[col],
            checks=[check for _, check in checks],
            nullable=rule.nullable,
            unique=col in single,
        )
    compound = [key for key in contract.unique_keys if len(key) > 1]
    names[(None, "multiple_fields_uniqueness")] = f"unique:{', '.join(compound[0])}"
    checks = [pa.Check(_sql_check(c.expr), name=f"check:{c.name}") for c in contract.checks]
    names |= {(None, f"check:{c.name}"): f"check:{c.name}" for c in contract.checks}
    return pa.DataFrameSchema(columns, checks=checks, unique=compound[0]), names


def _pandera_checks(pa: Any, col: str, rule: Any, as_text: bool) -> list[tuple[str, Any]]:
    checks = []
    if as_text:
        checks.append((f"type:{col}", pa.Check(_castable(rule.type), name=f"castable_{rule.type}")))
    if rule.min is not None:
        checks.append((f"min:{col}", pa.Check.ge(rule.min)))
    if rule.max is not None:
        checks.append((f"max:{col}", pa.Check.le(rule.max)))
    if rule.allowed is not None:
        checks.append((f"allowed:{col}", pa.Check.isin(rule.allowed)))
    if rule.regex is not None:
        checks.append((f"regex:{col}", pa.Check.str_contains(rule.regex)))
    return checks


def _castable(kind: str) -> Callable[[Any], pl.LazyFrame]:
    target = pl.Int64 if kind == "int" else pl.Float64

    def check(data: Any) -> pl.LazyFrame:
        c = pl.col(data.key)
        return data.lazyframe.select(
            c.is_null() | c.str.strip_chars().cast(target, strict=False).is_not_null()
        )

    return check


def _sql_check(expr: str) -> Callable[[Any], pl.LazyFrame]:
    def check(data: Any) -> pl.LazyFrame:
        return data.lazyframe.select(pl.sql_expr(expr).fill_null(False))

    return check


def run_pandera(
    frame: pl.DataFrame, schema: Any, names: dict[tuple[str | None, str], str]
) -> dict[str, int]:
    import pandera.polars as pa

    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    else:
        return {}
    key = pl.when(pl.col("check_number").is_not_null() & (pl.col("schema_context") == "Column"))
    grouped = (
        cases.with_columns(
            key.then(pl.col("check_number").cast(pl.String)).otherwise(pl.col("check")).alias("k")
        )
        .group_by("column", "k")
        .len()
    )
    return {names[(col, k)]: n for col, k, n in grouped.iter_rows()}


# --- Great Expectations ----------------------------------------------------------------


def gx_run(contract: Contract, schema: Schema) -> Callable[[Any], dict[str, int]]:
    """Build the context and suite once; return a function validating a pandas frame."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("bench").add_dataframe_asset("frame")
    suite = context.suites.add(gx.ExpectationSuite(name="bench"))
    for name, expectation in gx_expectations(contract, schema):
        expectation.meta = {"rule": name}
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name="bench", data=batch.add_batch_definition_whole_dataframe("all"), suite=suite
        )
    )

    def run(frame: Any) -> dict[str, int]:
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC")
        return {
            r.expectation_config.meta["rule"]: int(r.result.get("unexpected_count") or 0)
            for r in result.results
        }

    return run


def gx_expectations(contract: Contract, schema: Schema) -> list[tuple[str, Any]]:
    import great_expectations.expectations as gxe

    out: list[tuple[str, Any]] = []
    for col, rule in contract.columns.items():
        if col in numbers_as_text(contract, schema):
            pattern = INT_TEXT if rule.type == "int" else FLOAT_TEXT
            out.append(
                (f"type:{col}", gxe.ExpectColumnValuesToMatchRegex(column=col, regex=pattern))
            )
        if not rule.nullable:
            out.append((f"null:{col}", gxe.ExpectColumnValuesToNotBeNull(column=col)))
        if rule.min is not None:
            out.append(
                (f"min:{col}", gxe.ExpectColumnValuesToBeBetween(column=col, min_value=rule.min))
            )
        if rule.max is not None:
            out.append(
                (f"max:{col}", gxe.ExpectColumnValuesToBeBetween(column=col, max_value=rule.max))
            )
        if rule.allowed is not None:
            out.append(
                (
                    f"allowed:{col}",
                    gxe.ExpectColumnValuesToBeInSet(column=col, value_set=rule.allowed),
                )
            )
        if rule.regex is not None:
            out.append(
                (f"regex:{col}", gxe.ExpectColumnValuesToMatchRegex(column=col, regex=rule.regex))
            )
    for key in contract.unique_keys:
        name = f"unique:{', '.join(key)}"
        if len(key) == 1:
            out.append((name, gxe.ExpectColumnValuesToBeUnique(column=key[0])))
        else:
            out.append((name, gxe.ExpectCompoundColumnsToBeUnique(column_list=key)))
    return out + [(f"check:{c.name}", _GX_CHECKS[c.name]()) for c in contract.checks]


def _gx_pair(a: str, b: str) -> Any:
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing"
    )


def _gx_between(col: str, low: float, high: float | None = None, strict: bool = False) -> Any:
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnValuesToBeBetween(
        column=col, min_value=low, max_value=high, strict_min=strict
    )


def _gx_when(expectation: str, condition: str, **kwargs: Any) -> Any:
    import great_expectations.expectations as gxe

    cls = getattr(gxe, expectation)
    return cls(row_condition=condition, condition_parser="pandas", **kwargs)


# GX has no row-level SQL expression on pandas: each check, written with built-in expectations.
_GX_CHECKS: dict[str, Callable[[], Any]] = {
    "seen_after_signup": lambda: _gx_pair("last_seen", "signup"),
    "discount_le_price": lambda: _gx_pair("price", "discount"),
    "customer_positive": lambda: _gx_between("customer", 0, strict=True),
    "seq_in_range": lambda: _gx_between("seq", 1, 8),
    "closed_is_empty": lambda: _gx_when(
        "ExpectColumnValuesToBeInSet", 'status=="closed"', column="balance", value_set=[0]
    ),
    "us_has_zip": lambda: _gx_when("ExpectColumnValuesToNotBeNull", 'country=="US"', column="zip"),
}


# --- the run ---------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """The median wall-clock seconds of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def verify(expected: dict[str, int], found: dict[str, dict[str, int]]) -> None:
    """Stop unless every tool found the injected number of failing rows for every rule."""
    tools = list(found)
    say(f"{'rule':34}{'injected':>10}" + "".join(f"{t:>14}" for t in tools))
    wrong = []
    for rule, want in expected.items():
        got = [found[t].get(rule, 0) // _members(t, rule) for t in tools]
        say(f"{rule:34}{want:>10}" + "".join(f"{g:>14}" for g in got))
        wrong += [
            f"{t} {rule}: {g} != {want}" for t, g in zip(tools, got, strict=True) if g != want
        ]
    if wrong:
        sys.exit("the tools disagree with the injected violations: " + "; ".join(wrong))


def _members(tool: str, rule: str) -> int:
    """pandera and GX count both rows of a duplicated pair; keelson and the floor one."""
    return 2 if rule.startswith("unique:") and tool in ("pandera", "gx") else 1


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    quiet_peers()
    start = time.perf_counter()
    frame, per_rule = generate(args.rows, args.seed)
    say(f"generated {frame.height:,} x {frame.width} in {time.perf_counter() - start:.1f}s")
    runs, to_pandas = prepare_runs(frame)
    expected = dict.fromkeys(rule_names(), per_rule)
    verify(expected, {tool: run() for tool, run in runs.items()})  # also a warm-up
    s = {}
    for tool, run in runs.items():
        gc.collect()
        s[tool] = timed(run, args.repeats)
        say(f"{tool}: {s[tool]:.2f}s (median of {args.repeats})")
    print(
        f"data_validate rows={frame.height} rules={len(expected)} keelson={s['keelson']:.2f}s "
        f"pandera={s['pandera']:.2f}s gx={s['gx']:.1f}s floor={s['floor']:.2f}s "
        f"keelson/pandera={s['keelson'] / s['pandera']:.2f} "
        f"keelson/gx={s['keelson'] / s['gx']:.3f} "
        f"keelson/floor={s['keelson'] / s['floor']:.2f} keelson_count={s['keelson_count']:.2f}s "
        f"gx_to_pandas={to_pandas:.1f}s"
    )


def prepare_runs(frame: pl.DataFrame) -> tuple[dict[str, Callable[[], dict[str, int]]], float]:
    """Each tool's run on ``frame``, set up outside the timing; and the pandas copy's cost."""
    floor = floor_expressions(CONTRACT, frame.schema)
    schema, names = pandera_schema(CONTRACT, frame.schema)
    gx = gx_run(CONTRACT, frame.schema)
    start = time.perf_counter()
    pandas_frame = frame.to_pandas()
    to_pandas = time.perf_counter() - start
    runs: dict[str, Callable[[], dict[str, int]]] = {
        "keelson": lambda: keelson_counts(frame),
        "keelson_count": lambda: run_keelson_count(frame),
        "pandera": lambda: run_pandera(frame, schema, names),
        "gx": lambda: gx(pandas_frame),
        "floor": lambda: run_floor(frame, floor),
    }
    return runs, to_pandas


def quiet_peers() -> None:
    """Peers' progress bars and warnings are not part of the measurement."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    warnings.filterwarnings("ignore")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


if __name__ == "__main__":
    main()
