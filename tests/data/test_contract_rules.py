"""Checks, references, freshness, row counts, schema changes and the compiled rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from keelson.data.contracts import (
    Finding,
    Validation,
    enforce,
    parse_duration,
    validate,
    validation_order,
)
from keelson.data.rules import compile_rules, mask_name
from keelson.data.sources import SourceRead, rejects
from keelson.errors import ContractError
from keelson.spec import Contract

NOW = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


def _read(frame: pl.DataFrame, name: str = "src") -> SourceRead:
    return SourceRead(name, frame, rejects([]), {})


def _contract(**fields: Any) -> Contract:
    return Contract.model_validate(fields)


def _validate(frame: pl.DataFrame, **fields: Any) -> Validation:
    return validate(_read(frame), _contract(**fields), now=NOW)


def _only(result: Validation, rule: str) -> Finding:
    (found,) = [f for f in result.findings if f.rule == rule]
    return found


# --- checks --------------------------------------------------------------------------

_ORDERS = pl.DataFrame({"qty": [1, 0, None, 5], "price": [2.0, 3.0, 1.0, -1.0]})


def test_a_check_is_true_for_valid_rows_and_null_breaks_it() -> None:
    result = _validate(_ORDERS, checks=[{"name": "positive", "expr": "qty * price > 0"}])
    assert result.quarantined.select("_row", "_rule", "_column").rows() == [
        (2, "check:positive", "qty, price"),
        (3, "check:positive", "qty, price"),
        (4, "check:positive", "qty, price"),
    ]
    assert result.quarantined["_reason"].to_list()[1] == (
        "check positive (qty * price > 0) is not true for qty=null, price=1.0"
    )
    finding = _only(result, "check:positive")
    assert (finding.count, finding.where) == (3, "contracts.src.checks[0].expr")
    assert finding.examples == ["qty=0, price=3.0", "qty=null, price=1.0", "qty=5, price=-1.0"]
    single = _validate(_ORDERS, checks=[{"name": "cheap", "expr": "price < 2.5"}])
    assert _only(single, "check:cheap").examples == ["price=3.0"]


def test_a_check_that_handles_nulls_lets_them_pass() -> None:
    checks = [{"name": "sold", "expr": "qty > 0 OR qty IS NULL", "severity": "warn"}]
    result = _validate(_ORDERS, checks=checks)
    assert result.kept.height == 4 and result.quarantined.height == 0
    assert [(w.rule, w.count, w.rows) for w in result.warnings] == [("check:sold", 1, [2])]


def test_checks_see_declared_types() -> None:
    frame = pl.DataFrame({"n": ["10", "3", "x"]})
    result = _validate(
        frame, columns={"n": {"type": "int"}}, checks=[{"name": "big", "expr": "n >= 5"}]
    )
    assert result.quarantined.select("_row", "_rule", "_reason").rows() == [
        (2, "check:big", "check big (n >= 5) is not true for n=3"),
        (3, "type", "n=x is not an int; check big (n >= 5) is not true for n=x"),
    ]


def test_a_check_of_fail_severity_stops_the_run() -> None:
    contract = _contract(
        checks=[{"name": "cheap", "expr": "price < 2.5", "severity": "fail"}],
        max_quarantine_share=1.0,
    )
    result = validate(_read(_ORDERS), contract)
    with pytest.raises(
        ContractError, match=r"check:cheap on 'price'.*\(1 rows, e\.g\. 'price=3\.0'\)"
    ):
        enforce(result, contract)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("qty >>> 1", "'qty >>> 1' is not a valid check: unable to parse"),
        ("nope > 1", r"column 'nope' is not in source 'src'"),
        ("qty + 1", "gives Int64 values; a check must be true or false"),
        ("price > 'x'", "is not a valid check"),
    ],
)
def test_an_invalid_check_names_its_key_path(expr: str, message: str) -> None:
    with pytest.raises(ContractError, match=message) as err:
        _validate(
            _ORDERS, checks=[{"name": "ok", "expr": "qty > 0"}, {"name": "bad", "expr": expr}]
        )
    assert err.value.where == "contracts.src.checks[1].expr"


# --- references ----------------------------------------------------------------------

_CLIENTS = pl.DataFrame({"client_id": ["C1", "C2", "C3"], "region": ["n", "s", "n"]})


def test_reference_values_must_exist_in_the_referenced_source() -> None:
    calls = pl.DataFrame({"call": [1, 2, 3, 4], "client": ["C1", "C9", None, "C3"]})
    contract = _contract(
        references=[{"columns": ["client"], "source": "clients", "to": ["client_id"]}]
    )
    result = validate(_read(calls), contract, references={"clients": _CLIENTS})
    assert result.kept["call"].to_list() == [1, 3, 4]
    assert result.quarantined.select("_row", "_rule", "_column", "_reason").rows() == [
        (2, "reference", "client", "client=C9 not found in clients.client_id")
    ]
    assert _only(result, "reference").where == "contracts.src.references[0]"


def test_compound_references_and_warn_severity() -> None:
    calls = pl.DataFrame({"client_id": ["C1", "C1", "C2"], "region": ["n", "s", None]})
    ref = {"columns": ["client_id", "region"], "source": "clients", "severity": "warn"}
    result = validate(_read(calls), _contract(references=[ref]), references={"clients": _CLIENTS})
    assert result.kept.height == 3
    warning = _only(result, "reference")
    assert (warning.count, warning.examples) == (1, ["client_id=C1, region=s"])


def test_references_compare_as_text_when_types_differ() -> None:
    calls = pl.DataFrame({"client": [1, 2]})
    clients = pl.DataFrame({"id": ["1", "3"]})
    ref = {"columns": ["client"], "source": "clients", "to": ["id"]}
    result = validate(_read(calls), _contract(references=[ref]), references={"clients": clients})
    assert result.quarantined["_row"].to_list() == [2]


@pytest.mark.parametrize(
    ("ref", "references", "message", "where"),
    [
        ({"columns": ["client"], "source": "clients"}, {}, "must be validated before", ".source"),
        (
            {"columns": ["client"], "source": "clients", "to": ["a", "b"]},
            {"clients": _CLIENTS},
            "`to` names 2 columns but `columns` names 1",
            ".to",
        ),
        (
            {"columns": ["client"], "source": "clients", "to": ["clientid"]},
            {"clients": _CLIENTS},
            r"did you mean 'client_id'",
            ".to",
        ),
    ],
)
def test_reference_errors(
    ref: dict[str, Any], references: dict[str, pl.DataFrame], message: str, where: str
) -> None:
    calls = pl.DataFrame({"client": ["C1"]})
    with pytest.raises(ContractError, match=message) as err:
        validate(_read(calls), _contract(references=[ref]), references=references)
    assert err.value.where == f"contracts.src.references[0]{where}"


def test_validation_order_puts_referenced_sources_first() -> None:
    contracts = {
        "calls": _contract(references=[{"columns": ["c"], "source": "clients"}]),
        "clients": _contract(references=[{"columns": ["r"], "source": "regions"}]),
    }
    assert validation_order(contracts, ["calls", "clients", "regions", "other"]) == [
        "regions",
        "clients",
        "calls",
        "other",
    ]
    contracts["regions"] = _contract(references=[{"columns": ["x"], "source": "calls"}])
    with pytest.raises(ContractError, match="form a cycle"):
        validation_order(contracts, ["calls", "clients", "regions"])


# --- freshness and row counts ----------------------------------------------------------


@pytest.mark.parametrize(
    ("stamps", "max_age", "stale"),
    [
        ([dt.datetime(2024, 5, 31, 13)], "1d", False),
        ([dt.datetime(2024, 5, 31, 11)], "1d", True),
        (["2024-06-01 11:59:00", "2024-01-01 00:00:00"], "90s", False),
        (["2024-06-01T10:00:00+02:00"], "3h", True),
        ([dt.date(2024, 5, 31)], "2d", False),
        ([dt.date(2024, 5, 30)], "2d", True),
        ([None, None], "1w", True),
    ],
)
def test_freshness_against_a_fixed_now(stamps: list[Any], max_age: str, stale: bool) -> None:
    frame = pl.DataFrame({"at": stamps})
    result = _validate(frame, freshness={"column": "at", "max_age": max_age})
    assert bool(result.failures) is stale
    assert result.kept.height == len(stamps)


def test_stale_data_reports_the_newest_value_and_age() -> None:
    frame = pl.DataFrame({"at": [dt.datetime(2024, 5, 1), dt.datetime(2024, 5, 20, 12)]})
    result = _validate(frame, freshness={"column": "at", "max_age": "7d", "severity": "warn"})
    (warning,) = result.warnings
    assert warning.rule == "freshness" and warning.examples == ["2024-05-20T12:00:00"]
    assert warning.message == "newest 2024-05-20T12:00:00 is 12 days, 0:00:00 old, above max_age 7d"


def test_freshness_takes_aware_now_and_aware_timestamps_in_utc() -> None:
    frame = pl.DataFrame({"at": [dt.datetime(2024, 6, 1, 13, 30)]}).with_columns(
        pl.col("at").dt.replace_time_zone("Europe/Paris")
    )
    paris_now = NOW.astimezone(dt.timezone(dt.timedelta(hours=2)))
    result = validate(
        _read(frame),
        _contract(freshness={"column": "at", "max_age": "1h"}),
        now=paris_now,
    )
    assert result.failures == []  # 11:30 UTC is 30 minutes before 12:00 UTC


def test_freshness_on_a_column_that_is_not_a_time() -> None:
    with pytest.raises(ContractError, match="freshness needs dates or timestamps") as err:
        _validate(pl.DataFrame({"n": [1]}), freshness={"column": "n", "max_age": "1d"})
    assert err.value.where == "contracts.src.freshness.column"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"min": 5}, "3 rows read, below min 5"),
        ({"max": 2}, "3 rows read, above max 2"),
        ({"min": 1, "max": 3}, None),
    ],
)
def test_row_count_bounds(rows: dict[str, int], message: str | None) -> None:
    result = _validate(pl.DataFrame({"a": [1, 2, 3]}), rows=rows)
    assert [f.message for f in result.failures] == ([message] if message else [])


def test_row_count_warning_and_enforce() -> None:
    contract = _contract(rows={"min": 10, "severity": "warn"})
    result = validate(_read(pl.DataFrame({"a": [1]})), contract)
    assert [w.rule for w in result.warnings] == ["rows"]
    enforce(result, contract)
    strict = _contract(rows={"min": 10})
    with pytest.raises(ContractError, match=r"rows: 1 rows read, below min 10.*contracts.src.rows"):
        enforce(validate(_read(pl.DataFrame({"a": [1]})), strict), strict)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1.5h", 5400), ("2w", 1209600), ("5ms", 0.005)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


# --- schema changes ------------------------------------------------------------------

_PEOPLE = pl.DataFrame({"id": [1, 2], "name": ["a", "b"], "extra": [True, False]})


def _changes(result: Validation) -> list[tuple[str, str, str]]:
    return [(c["change"], c["column"], c["decision"]) for c in result.schema_changes]


def test_added_columns_adopted_by_default() -> None:
    result = _validate(_PEOPLE, columns={"id": {}, "name": {}})
    assert _changes(result) == [("added", "extra", "adopt")]
    assert result.kept.columns == ["id", "name", "extra"] and result.failures == []


def test_added_columns_ignored_are_dropped_from_kept_but_quarantined_whole() -> None:
    result = _validate(
        _PEOPLE, columns={"id": {"max": 1}, "name": {}}, schema_changes={"added": "ignore"}
    )
    assert result.kept.columns == ["id", "name"]
    assert result.quarantined.columns[:3] == ["id", "name", "extra"]
    assert result.schema_changes[0]["detail"].startswith("not in the contract; left out")


def test_added_columns_fail() -> None:
    contract = _contract(columns={"id": {}, "name": {}}, schema_changes={"added": "fail"})
    result = validate(_read(_PEOPLE), contract)
    assert [(f.rule, f.column) for f in result.failures] == [("schema:added", "extra")]
    with pytest.raises(ContractError, match="schema:added on 'extra'") as err:
        enforce(result, contract)
    assert "contracts.src.schema_changes.added" in str(err.value)


def test_a_contract_without_columns_reports_no_added_columns() -> None:
    assert _validate(_PEOPLE, unique=["id"]).schema_changes == []


def test_missing_columns_fail_with_a_suggestion_and_skip_their_rules() -> None:
    contract = _contract(
        columns={"nmae": {"nullable": False}, "id": {"min": 2}},
        unique=["nmae"],
        checks=[{"name": "c", "expr": "nmae <> ''"}],
    )
    result = validate(_read(_PEOPLE), contract)
    assert ("missing", "nmae", "fail") in _changes(result)
    (change,) = [c for c in result.schema_changes if c["change"] == "missing"]
    assert "(did you mean 'name'?)" in change["detail"]
    assert result.quarantined["_rule"].to_list() == ["min"]
    with pytest.raises(ContractError, match="schema:missing on 'nmae'"):
        enforce(result, contract)


def test_missing_columns_ignored_are_added_as_nulls() -> None:
    result = _validate(
        _PEOPLE,
        columns={"id": {}, "name": {}, "extra": {}, "score": {"type": "float"}},
        schema_changes={"missing": "ignore"},
    )
    assert _changes(result) == [("missing", "score", "ignore")]
    assert result.kept["score"].dtype == pl.Float64
    assert result.kept["score"].null_count() == 2


_AGES = pl.DataFrame({"age": ["30", "forty", "50"]})


def test_retyped_ignore_casts_and_quarantines_what_does_not_convert() -> None:
    result = _validate(_AGES, columns={"age": {"type": "int", "min": 0}})
    assert _changes(result) == [("retyped", "age", "ignore")]
    assert "1 value does not convert (e.g. 'forty')" in result.schema_changes[0]["detail"]
    assert result.kept["age"].to_list() == [30, 50]
    assert result.quarantined["_rule"].to_list() == ["type"]


def test_retyped_adopt_keeps_the_source_type_and_every_row() -> None:
    result = _validate(
        _AGES,
        columns={"age": {"type": "int", "min": 0, "allowed": ["30", "50"]}},
        schema_changes={"retyped": "adopt"},
    )
    assert _changes(result) == [("retyped", "age", "adopt")]
    assert result.kept.schema == {"age": pl.String}
    assert result.quarantined.select("_row", "_rule").rows() == [(2, "allowed")]


def test_retyped_adopt_casts_when_every_value_converts() -> None:
    result = _validate(
        pl.DataFrame({"age": ["30", "40"]}),
        columns={"age": {"type": "int"}},
        schema_changes={"retyped": "adopt"},
    )
    assert result.schema_changes == [] and result.kept.schema == {"age": pl.Int64}


def test_retyped_fail() -> None:
    contract = _contract(columns={"age": {"type": "int"}}, schema_changes={"retyped": "fail"})
    result = validate(_read(_AGES), contract)
    assert [f.rule for f in result.failures] == ["schema:retyped"]
    with pytest.raises(ContractError, match="schema:retyped on 'age': declared int"):
        enforce(result, contract)


# --- the compiled rules ----------------------------------------------------------------


def test_compiled_rules_run_the_same_on_a_lazy_frame() -> None:
    frame = pl.DataFrame(
        {
            "n": ["1", " 2 ", "3.0", "x", None],
            "s": ["ab", "b", "ab", None, "c"],
            "k": [1, 1, 2, 3, 3],
        }
    )
    contract = _contract(
        columns={"n": {"type": "int", "max": 2}, "s": {"regex": "^a", "nullable": False}},
        checks=[{"name": "c", "expr": "n IS NULL OR n < k + 1"}],
        unique=[["k"], ["k", "s"]],
    )
    compiled = compile_rules(contract, frame.schema, source="src")
    eager = compiled.prepare(frame).select(compiled.masks())
    lazy = compiled.prepare(frame.lazy()).select(compiled.masks()).collect()
    assert eager.equals(lazy)
    assert compiled.prepare(frame.lazy()).collect()["n"].to_list() == [1, 2, 3, None, None]
    counts = compiled.count_violations(frame.lazy()).collect().row(0, named=True)
    codes = [r.code for r in compiled.rules]
    assert codes == ["type", "max", "null", "regex", "check:c"]
    assert [counts[mask_name(i)] for i in range(len(codes))] == [1, 1, 1, 2, 2]
    assert (counts["unique[0]"], counts["unique[1]"]) == (2, 0)
