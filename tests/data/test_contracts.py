"""Contracts keep, warn, quarantine or stop, with a stable reason per rule; nothing is lost."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keelson.data.contracts import (
    META_COLUMNS,
    Validation,
    enforce,
    validate,
    write_quarantine,
)
from keelson.data.sources import SourceRead, rejects
from keelson.errors import ContractError
from keelson.spec import Contract

ReadFile = Callable[..., SourceRead]


def _read(
    frame: pl.DataFrame, bad: list[tuple[int | None, str, str, str]] | None = None
) -> SourceRead:
    return SourceRead("src", frame, rejects(bad or []), {})


def _contract(**fields: Any) -> Contract:
    return Contract.model_validate(fields)


def _check(values: list[Any], rule: dict[str, Any]) -> Validation:
    return validate(_read(pl.DataFrame({"x": values})), _contract(columns={"x": rule}))


def _finding(result: Validation, rule: str) -> Any:
    (found,) = [f for f in result.findings if f.rule == rule]
    return found


# --- one rule at a time --------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "rule", "failing", "code", "reason"),
    [
        (["1", "abc", "3.0", "3.5"], {"type": "int"}, [2, 4], "type", "x=abc is not an int"),
        (["1.5", "x", None], {"type": "float"}, [2], "type", "x=x is not a float"),
        (["yes", "No", "1", "FALSE", "maybe"], {"type": "bool"}, [5], "type", "x=maybe is not a"),
        (["2024-02-29", "2023-02-29", "x"], {"type": "date"}, [2, 3], "type", "is not a date"),
        (["2024-01-01T10:00", "noon"], {"type": "datetime"}, [2], "type", "x=noon is not a"),
        ([1, None, 3], {"nullable": False}, [2], "null", "x is null"),
        ([5, -1, 0], {"min": 0}, [2], "min", "x=-1 below min 0"),
        ([5, 130, 100], {"max": 100}, [2], "max", "x=130 above max 100"),
        ([0.5, float("nan"), None], {"min": 0}, [2], "min", "x=NaN below min 0"),
        ([0.5, float("nan"), 1.0], {"max": 2}, [2], "max", "x=NaN above max 2"),
        (["red", "blue", None], {"allowed": ["red", "green"]}, [2], "allowed", "x=blue not in"),
        ([1, 2, 3], {"allowed": [1, 3]}, [2], "allowed", "x=2 not in allowed [1, 3]"),
        ([True, False], {"allowed": [True]}, [2], "allowed", "x=false not in allowed [true]"),
        (["5", "abc"], {"min": 0}, [2], "type", "x=abc is not a number"),
        (["A-12", "B-7", None], {"regex": r"^[A-Z]-\d{2}$"}, [2], "regex", "x=B-7 does not match"),
        ([123, 45], {"regex": r"^\d{3}$"}, [2], "regex", "x=45 does not match regex"),
    ],
)
def test_each_rule_has_its_reason_code(
    values: list[Any], rule: dict[str, Any], failing: list[int], code: str, reason: str
) -> None:
    result = _check(values, rule)
    assert result.quarantined["_row"].to_list() == failing
    assert set(result.quarantined["_rule"]) == {code}
    assert set(result.quarantined["_column"]) == {"x"}
    assert reason in result.quarantined["_reason"][0]
    assert result.kept.height == len(values) - len(failing)
    finding = _finding(result, code)
    assert (finding.count, finding.severity, finding.rows) == (len(failing), "quarantine", failing)
    assert finding.where.startswith("contracts.src.columns.x.")


def test_declared_types_are_cast_in_kept_rows() -> None:
    frame = pl.DataFrame(
        {
            "i": ["1", " 2 ", "3.0"],
            "f": ["1", "2.5", None],
            "b": ["yes", "no", "TRUE"],
            "d": ["2024-01-01", "2024-01-02", " 2024-01-03"],
            "t": ["2024-01-01T10:00:00", "2024-01-01 10:00:00.250", "2024-01-01T12:00:00+02:00"],
            "s": [1, 2, 3],
            "other": [1.5, 2.5, 3.5],
        }
    )
    spec = {
        c: {"type": t}
        for c, t in zip("ifbdts", ["int", "float", "bool", "date", "datetime", "str"], strict=True)
    }
    result = validate(_read(frame), _contract(columns=spec))
    kept = result.kept
    assert kept.schema == {
        "i": pl.Int64,
        "f": pl.Float64,
        "b": pl.Boolean,
        "d": pl.Date,
        "t": pl.Datetime("us"),
        "s": pl.String,
        "other": pl.Float64,
    }
    assert kept["i"].to_list() == [1, 2, 3]
    assert kept["b"].to_list() == [True, False, True]
    assert kept["d"].to_list()[-1] == dt.date(2024, 1, 3)
    assert kept["t"].to_list() == [
        dt.datetime(2024, 1, 1, 10),
        dt.datetime(2024, 1, 1, 10, 0, 0, 250000),
        dt.datetime(2024, 1, 1, 10),
    ]
    assert result.quarantined.height == 0


def test_several_failures_quarantine_the_row_once_with_all_reasons() -> None:
    frame = pl.DataFrame({"a": ["x", "5"], "b": [None, "ok"]})
    contract = _contract(columns={"a": {"type": "int"}, "b": {"nullable": False}})
    result = validate(_read(frame), contract)
    assert result.quarantined.height == 1
    row = result.quarantined.row(0, named=True)
    assert (row["_rule"], row["_column"]) == ("type", "a")
    assert row["_reason"] == "a=x is not an int; b is null (nullable: false)"
    assert [(f.rule, f.column, f.count) for f in result.findings] == [
        ("type", "a", 1),
        ("null", "b", 1),
    ]


def test_findings_carry_distinct_failing_values_and_first_rows() -> None:
    values = [5, -1, -1, -2, 3, -3, -4, -5, -6, -7]
    finding = _finding(_check(values, {"min": 0}), "min")
    assert finding.count == 8
    assert finding.examples == ["-1", "-2", "-3", "-4", "-5"]
    assert finding.rows == [2, 3, 4, 6, 7]
    assert finding.describe() == (
        "min on 'x': below min 0 (8 rows, e.g. '-1', '-2', '-3', '-4', '-5')"
    )


def test_quarantine_keeps_original_values_as_text_and_rejects_with_raw() -> None:
    frame = pl.DataFrame({"n": [1, 500], "s": ["a", "b"], "l": [[1, 2], [3]]})
    bad = [(7, "ragged_row", "expected 3 fields, got 4", "1,2,3,4")]
    result = validate(_read(frame, bad), _contract(columns={"n": {"max": 10}}))
    q = result.quarantined
    assert q.columns == ["n", "s", "l", *META_COLUMNS]
    assert all(dtype == pl.String for name, dtype in q.schema.items() if name != "_row")
    assert q.rows() == [
        ("500", "b", "[3]", 2, "max", "n", "n=500 above max 10", None),
        (None, None, None, 7, "ragged_row", None, "expected 3 fields, got 4", "1,2,3,4"),
    ]
    assert result.rows_in == 3 and result.kept.height == 1


def test_quarantine_shows_the_value_as_it_came_not_as_cast() -> None:
    result = _check([" 007 ", "x7"], {"type": "int", "max": 5})
    assert result.quarantined.select("x", "_rule").rows() == [(" 007 ", "max"), ("x7", "type")]


def test_csv_file_end_to_end(read_file: ReadFile) -> None:
    read = read_file("id,age\n1,30\n2,abc\n3,40,extra\n4,\n")
    result = validate(read, _contract(columns={"age": {"type": "int", "nullable": False}}))
    assert result.kept.to_dict(as_series=False) == {"id": [1], "age": [30]}
    assert result.quarantined.select("_row", "_rule").rows() == [
        (2, "type"),
        (3, "null"),
        (4, "ragged_row"),
    ]
    summary = result.summary()
    assert {k: summary[k] for k in ("source", "rows_in", "kept", "quarantined", "removed")} == {
        "source": "src",
        "rows_in": 4,
        "kept": 1,
        "quarantined": 3,
        "removed": 0,
    }
    assert summary["share"] == 0.75
    assert summary["reasons"] == {"null": 1, "ragged_row": 1, "type": 1}
    assert (summary["warnings"], summary["failures"]) == ([], [])
    assert [(c["change"], c["column"], c["decision"]) for c in summary["schema_changes"]] == [
        ("added", "id", "adopt"),
        ("retyped", "age", "ignore"),
    ]


# --- severities ------------------------------------------------------------------


def test_warn_keeps_the_row_and_reports_it() -> None:
    result = _check([5, -1, 200], {"min": 0, "max": 100, "severity": {"min": "warn"}})
    assert result.kept["x"].to_list() == [5, -1]
    assert result.quarantined.select("_row", "_rule").rows() == [(3, "max")]
    (warning,) = result.warnings
    assert (warning.rule, warning.column, warning.count, warning.examples) == (
        "min",
        "x",
        1,
        ["-1"],
    )
    assert result.failures == []
    assert result.summary()["warnings"][0]["rule"] == "min"


def test_a_type_warning_keeps_the_row_with_a_null_value() -> None:
    result = _check(["1", "x"], {"type": "int", "severity": "warn"})
    assert result.kept["x"].to_list() == [1, None]
    assert result.warnings[0].examples == ["x"]


def test_fail_quarantines_the_rows_and_enforce_stops_the_run() -> None:
    contract = _contract(
        columns={"x": {"allowed": ["a", "b"], "severity": "fail"}}, max_quarantine_share=1.0
    )
    result = validate(_read(pl.DataFrame({"x": ["a", "zz", "b", "q"]})), contract)
    assert result.quarantined.select("_row", "_rule").rows() == [(2, "allowed"), (4, "allowed")]
    (failure,) = result.failures
    assert (failure.count, failure.examples, failure.rows) == (2, ["zz", "q"], [2, 4])
    with pytest.raises(ContractError) as err:
        enforce(result, contract)
    message = str(err.value)
    assert "source 'src'" in message and "1 rule with severity fail broke" in message
    assert "allowed on 'x': not in allowed [a, b] (2 rows, e.g. 'zz', 'q')" in message
    assert "contracts.src.columns.x.allowed" in message and "severity warn" in message


def test_quarantine_severity_alone_does_not_stop_below_the_share() -> None:
    contract = _contract(columns={"x": {"min": 0}}, max_quarantine_share=0.5)
    result = validate(_read(pl.DataFrame({"x": [1, -1, 2]})), contract)
    assert result.failures == [] and result.quarantined.height == 1
    enforce(result, contract)


# --- keys and duplicates -----------------------------------------------------------


def test_unique_keeps_first_and_ignores_rows_failing_other_rules() -> None:
    frame = pl.DataFrame(
        {"id": [1, 2, 1, 2, 1], "k": ["a", "a", "a", "a", "b"], "v": [1, -1, 2, 3, 4]}
    )
    result = validate(_read(frame), _contract(columns={"v": {"min": 0}}, unique=["id", "k"]))
    assert result.kept["v"].to_list() == [1, 3, 4]
    quarantined = result.quarantined.select("_row", "_rule", "_column", "_reason").rows()
    assert quarantined == [
        (2, "min", "v", "v=-1 below min 0"),
        (3, "unique", "id, k", "duplicate key id=1, k=a (first at row 1)"),
    ]
    finding = _finding(result, "unique")
    assert (finding.count, finding.examples, finding.where) == (
        1,
        ["id=1, k=a"],
        "contracts.src.unique",
    )


def test_several_keys_are_checked_one_after_the_other() -> None:
    frame = pl.DataFrame({"a": [1, 1, 2, 3], "b": ["x", "y", "y", "x"]})
    result = validate(_read(frame), _contract(unique=[["a"], ["b"]]))
    # row 2 repeats a=1; without it, row 3 (b=y) is the first y, so only row 4 repeats b=x
    assert result.kept.rows() == [(1, "x"), (2, "y")]
    assert result.quarantined.select("_row", "_column", "_reason").rows() == [
        (2, "a", "duplicate key a=1 (first at row 1)"),
        (4, "b", "duplicate key b=x (first at row 1)"),
    ]
    assert [f.where for f in result.findings] == [
        "contracts.src.unique[0]",
        "contracts.src.unique[1]",
    ]


def test_unique_compares_declared_types_and_nulls_as_equal() -> None:
    frame = pl.DataFrame({"id": ["1", "01", None, None]})
    result = validate(_read(frame), _contract(columns={"id": {"type": "int"}}, unique=["id"]))
    assert result.quarantined.select("_row", "_reason").rows() == [
        (2, "duplicate key id=01 (first at row 1)"),
        (4, "duplicate key id=null (first at row 3)"),
    ]


def test_unique_key_duplicated_many_times_points_at_the_first_row() -> None:
    frame = pl.DataFrame({"id": [7, 8, 7, 7, 8, 7]})
    result = validate(_read(frame), _contract(unique=["id"]))
    assert result.quarantined.select("_row", "_reason").rows() == [
        (3, "duplicate key id=7 (first at row 1)"),
        (4, "duplicate key id=7 (first at row 1)"),
        (5, "duplicate key id=8 (first at row 2)"),
        (6, "duplicate key id=7 (first at row 1)"),
    ]


_TWICE = pl.DataFrame({"a": [1, 2, 1, 1, 1], "b": ["x", "y", "x", "z", "x"]})


def test_exact_duplicates_kept_by_default() -> None:
    result = validate(_read(_TWICE), None)
    assert (result.kept.height, result.quarantined.height, result.removed) == (5, 0, 0)


def test_exact_duplicates_dropped_are_counted_as_removed_not_quarantined() -> None:
    result = validate(_read(_TWICE), _contract(exact_duplicates="drop"))
    assert result.kept.rows() == [(1, "x"), (2, "y"), (1, "z")]
    assert (result.quarantined.height, result.removed) == (0, 2)
    assert result.rows_in == result.kept.height + result.quarantined.height + result.removed
    assert result.summary()["removed"] == 2


def test_exact_duplicates_quarantined_with_the_first_row() -> None:
    result = validate(_read(_TWICE), _contract(exact_duplicates="quarantine"))
    assert result.kept.height == 3 and result.removed == 0
    assert result.quarantined.select("_row", "_rule", "_reason").rows() == [
        (3, "duplicate", "exact duplicate of row 1"),
        (5, "duplicate", "exact duplicate of row 1"),
    ]
    assert _finding(result, "duplicate").rows == [3, 5]


def test_exact_duplicates_compare_values_as_they_came() -> None:
    frame = pl.DataFrame({"n": ["1", "1.0", "1"]})
    result = validate(
        _read(frame), _contract(columns={"n": {"type": "float"}}, exact_duplicates="drop")
    )
    assert result.kept["n"].to_list() == [1.0, 1.0] and result.removed == 1


# --- structural errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("contract", "expected"),
    [
        ({"unique": ["nope"]}, r"column 'nope' is not in source 'src'"),
        ({"unique": ["agee"]}, r"\(did you mean 'age'\?\)"),
        ({"columns": {"name": {"type": "str", "min": 1}}}, "min/max apply to int or float"),
        ({"columns": {"age": {"allowed": ["old"]}}}, "allowed value 'old' is not a number"),
        ({"columns": {"name": {"regex": "(["}}}, "the regex of column 'name' is not valid"),
    ],
)
def test_contract_errors(contract: dict[str, Any], expected: str) -> None:
    frame = pl.DataFrame({"age": [1], "name": ["a"]})
    with pytest.raises(ContractError, match=expected):
        validate(_read(frame), _contract(**contract))


def test_an_invalid_regex_names_the_key_path() -> None:
    with pytest.raises(ContractError) as err:
        _check(["a"], {"regex": "a{2,1}"})
    assert err.value.where == "contracts.src.columns.x.regex"
    assert "Rust regex syntax" in str(err.value)


def test_reserved_column_names() -> None:
    with pytest.raises(ContractError, match="reserved"):
        validate(_read(pl.DataFrame({"_reason": [1]})), None)


# --- the invariant -------------------------------------------------------------

_VALUES = st.one_of(
    st.none(),
    st.integers(-200, 200).map(str),
    st.floats(-1e3, 1e3, allow_nan=False).map(str),
    st.sampled_from(["abc", "", " 7 ", "yes", "true", "3.0", "3.5", "2024-01-01", "nan", "1e400"]),
)
_SEVERITY = st.sampled_from(["warn", "quarantine", "fail"])


@st.composite
def _rules(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([None, "int", "float", "bool", "str", "date", "datetime"]))
    rule: dict[str, Any] = {"type": kind, "nullable": draw(st.booleans())}
    if kind in (None, "int", "float") and draw(st.booleans()):
        rule["min"], rule["max"] = sorted(
            draw(st.lists(st.integers(-100, 100), min_size=2, max_size=2))
        )
    if kind in ("int", "float") and draw(st.booleans()):
        rule["allowed"] = draw(st.lists(st.integers(-5, 5), max_size=4))
    if kind == "str" and draw(st.booleans()):
        rule["allowed"] = draw(st.lists(st.sampled_from(["abc", "yes", "1", "3.0"]), max_size=3))
    if kind in (None, "str") and draw(st.booleans()):
        rule["regex"] = draw(st.sampled_from([r"^\d+$", "a", r"^\s", r"\.0$"]))
    if draw(st.booleans()):
        rule["severity"] = draw(_SEVERITY)
    return rule


@st.composite
def _dirty(draw: st.DrawFn) -> tuple[SourceRead, Contract]:
    n = draw(st.integers(0, 30))
    frame = pl.DataFrame(
        {c: draw(st.lists(_VALUES, min_size=n, max_size=n)) for c in "abc"},
        schema=dict.fromkeys("abc", pl.String),
    )
    columns = draw(st.dictionaries(st.sampled_from("ab"), _rules(), max_size=2))
    keys = draw(st.lists(st.lists(st.sampled_from("abc"), min_size=1, max_size=2), max_size=2))
    checks = draw(
        st.lists(st.sampled_from(["c IS NOT NULL", "c <> 'abc' OR c IS NULL"]), max_size=2)
    )
    bad = [
        (i, "ragged_row", "expected 3 fields, got 1", "x") for i in range(draw(st.integers(0, 3)))
    ]
    contract = _contract(
        columns=columns,
        unique=keys,
        exact_duplicates=draw(st.sampled_from(["keep", "drop", "quarantine"])),
        checks=[
            {"name": f"c{i}", "expr": e, "severity": draw(_SEVERITY)} for i, e in enumerate(checks)
        ],
    )
    return _read(frame, bad), contract


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_dirty())
def test_rows_in_equals_kept_plus_quarantined_plus_removed(
    case: tuple[SourceRead, Contract],
) -> None:
    read, contract = case
    result = validate(read, contract)
    kept, quarantined = result.kept.height, result.quarantined.height
    assert result.rows_in == read.rows_in == kept + quarantined + result.removed
    parsed = result.quarantined.filter(pl.col("_rule") != "ragged_row")["_row"]
    assert parsed.is_unique().all()
    assert parsed.is_between(1, read.frame.height).all()
    assert result.quarantined["_rule"].null_count() == 0
    assert result.quarantined["_reason"].null_count() == 0
    for finding in result.findings:
        assert finding.count > 0 and len(finding.examples) <= 5 and len(finding.rows) <= 5
    blocking = {f.rule for f in result.findings if f.severity != "warn"}
    assert set(result.quarantined["_rule"]) - {"ragged_row"} <= blocking
    for col, rule in contract.columns.items():
        severities = {rule.severity_of("null"), rule.severity_of("type")}
        if rule.nullable is False and "warn" not in severities:
            assert result.kept[col].null_count() == 0
    for key in contract.unique_keys:
        assert not result.kept.select(list(dict.fromkeys(key))).is_duplicated().any()
    repeats = read.frame.height - read.frame.unique().height
    duplicates = result.quarantined.filter(pl.col("_rule") == "duplicate").height
    assert (result.removed, duplicates) == {
        "keep": (0, 0),
        "drop": (repeats, 0),
        "quarantine": (0, repeats),
    }[contract.exact_duplicates]


# --- enforce and the quarantine file ---------------------------------------------


def test_enforce_raises_with_share_threshold_reasons_and_hint() -> None:
    frame = pl.DataFrame({"age": [str(a) for a in range(90)] + ["x"] * 6 + ["200"] * 4})
    contract = _contract(columns={"age": {"type": "int", "max": 100}}, max_quarantine_share=0.05)
    result = validate(_read(frame), contract)
    with pytest.raises(ContractError) as err:
        enforce(result, contract)
    message = str(err.value)
    assert "source 'src'" in message and "10.0% of 100 rows" in message and "5.0%" in message
    assert "type on 'age' (6, e.g. 'x')" in message and "max on 'age' (4, e.g. '200')" in message
    assert "quarantine file" in message and "contracts.src.max_quarantine_share" in message
    enforce(result, _contract(columns=contract.columns, max_quarantine_share=0.1))


def test_enforce_without_contract_counts_rejects_against_default() -> None:
    frame = pl.DataFrame({"a": list(range(10))})
    result = validate(_read(frame, [(12, "ragged_row", "r", "x")]), None)
    assert result.kept.height == 10 and result.share == pytest.approx(1 / 11)
    with pytest.raises(ContractError, match="ragged_row"):
        enforce(result, None)
    enforce(validate(_read(frame), None), None)


def test_share_of_an_empty_source_is_zero() -> None:
    result = validate(_read(pl.DataFrame({"a": []}, schema={"a": pl.String})), None)
    assert result.share == 0.0
    enforce(result, None)


def test_write_quarantine_is_one_parquet_with_source(tmp_path: Path) -> None:
    first = _check(["1", "x"], {"type": "int"})
    other = validate(
        SourceRead("other", pl.DataFrame({"y": [1]}), rejects([(3, "bad_json", "r", "{")]), {}),
        None,
    )
    path = write_quarantine([first, other], tmp_path / "out" / "quarantine.parquet")
    table = pl.read_parquet(path)
    assert table.columns == ["_source", *META_COLUMNS, "x", "y"]
    assert table.select("_source", "_row", "_rule", "x", "_raw").rows() == [
        ("src", 2, "type", "x", None),
        ("other", 3, "bad_json", None, "{"),
    ]
    assert pq.read_schema(path).metadata[b"keelson.format"] == b"quarantine/1"
    assert [p.name for p in path.parent.iterdir()] == ["quarantine.parquet"]


def test_write_quarantine_with_nothing_quarantined(tmp_path: Path) -> None:
    path = write_quarantine([], tmp_path / "q.parquet")
    assert pl.read_parquet(path).columns == ["_source", *META_COLUMNS]
