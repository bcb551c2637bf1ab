"""Reconcile makes a source agree with the others; rows that do not convert are kept aside."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import polars as pl
import pytest

from keelson.data.contracts import validate
from keelson.data.reconcile import derive_columns, reconcile
from keelson.data.sources import REJECTED_SCHEMA, SourceRead, rejects
from keelson.errors import ContractError
from keelson.spec import Contract, Reconcile

ReadFile = Callable[..., SourceRead]


def _read(frame: pl.DataFrame, rejected: pl.DataFrame | None = None) -> SourceRead:
    return SourceRead("src", frame, rejects([]) if rejected is None else rejected, {"rows": 0})


def _reconcile(frame: pl.DataFrame, **spec: Any) -> SourceRead:
    return reconcile(_read(frame), Reconcile.model_validate(spec), "src")


# --- rename ----------------------------------------------------------------------------


def test_rename_and_swap() -> None:
    out = _reconcile(pl.DataFrame({"a": [1], "b": [2], "c": [3]}), rename={"a": "b", "b": "a"})
    assert out.frame.columns == ["b", "a", "c"]
    assert out.frame.row(0) == (1, 2, 3)


@pytest.mark.parametrize(
    ("rename", "expected"),
    [
        ({"Agee": "age"}, r"reconcile.src.rename.Agee: column 'Agee' .*did you mean 'Age'"),
        ({"Age": "name"}, r"rename.Age: renaming 'Age' to 'name' would give two columns"),
        ({"Age": "x", "name": "x"}, r"would give two columns named 'x'"),
    ],
)
def test_rename_errors(rename: dict[str, str], expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        _reconcile(pl.DataFrame({"Age": [1], "name": ["x"]}), rename=rename)


# --- standardize ---------------------------------------------------------------------------


BOOLS: dict[str, list[Any]] = {"true": ["Y", "yes", 1], "false": ["N", "no", 0]}


def test_standardize_is_trimmed_case_insensitive_and_textual() -> None:
    frame = pl.DataFrame(
        {
            "flag": [" y ", "YES", "n", "No", "TRUE", "maybe", None],
            "code": [1, 0, 1, 0, 1, 7, None],
            "ok": [True, False, True, False, True, True, None],
        }
    )
    out = _reconcile(
        frame,
        standardize={"flag": BOOLS, "code": BOOLS, "ok": {"yes": [True], "no": [False]}},
    )
    assert out.frame["flag"].to_list() == ["true", "true", "false", "false", "true", "maybe", None]
    assert out.frame["code"].to_list() == ["true", "false", "true", "false", "true", "7", None]
    assert out.frame["ok"].to_list() == ["yes", "no", "yes", "no", "yes", "yes", None]
    assert out.rejected.height == 0


def test_standardize_float_spellings_match_whole_numbers() -> None:
    out = _reconcile(pl.DataFrame({"v": ["1", "2"]}), standardize={"v": {"one": [1.0]}})
    assert out.frame["v"].to_list() == ["one", "2"]


@pytest.mark.parametrize(
    ("standardize", "expected"),
    [
        ({"flagg": BOOLS}, r"standardize.flagg: column 'flagg' .*did you mean 'flag'"),
        ({"flag": {"a": ["x"], "b": ["X "]}}, r"standardize.flag: spelling 'X ' maps to both"),
        ({"tags": BOOLS}, r"standardize.tags: column 'tags' holds lists"),
    ],
)
def test_standardize_errors(standardize: dict[str, Any], expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        _reconcile(pl.DataFrame({"flag": ["x"], "tags": [["a"]]}), standardize=standardize)


# --- coerce -------------------------------------------------------------------------------------


def test_coerce_casts_every_type() -> None:
    frame = pl.DataFrame(
        {
            "i": [" 7", "3.0"],
            "f": ["1.5", "2"],
            "s": [1, 2],
            "b": ["Yes", "0"],
            "d": ["2024-02-29", "2023-01-01"],
            "t": ["2024-01-01T10:00:00", "2024-01-01 10:00:00+02:00"],
        }
    )
    kinds = {"i": "int", "f": "float", "s": "str", "b": "bool", "d": "date", "t": "datetime"}
    out = _reconcile(frame, coerce=kinds)
    assert out.frame.schema == pl.Schema(
        {
            "i": pl.Int64,
            "f": pl.Float64,
            "s": pl.String,
            "b": pl.Boolean,
            "d": pl.Date,
            "t": pl.Datetime("us"),
        }
    )
    assert out.frame.rows() == [
        (7, 1.5, "1", True, date(2024, 2, 29), datetime(2024, 1, 1, 10)),
        (3, 2.0, "2", False, date(2023, 1, 1), datetime(2024, 1, 1, 8)),
    ]


def test_values_that_do_not_convert_move_their_row_to_rejected() -> None:
    frame = pl.DataFrame(
        {
            "age": ["1", "x", None, "4", "5", "z"],
            "day": ["2024-01-01", None, None, "2024-13-01", "y", "q"],
        }
    )
    earlier = rejects([(9, "ragged_row", "expected 2 fields, got 3", "a,b,c")])
    out = reconcile(_read(frame, earlier), Reconcile(coerce={"age": "int", "day": "date"}), "src")
    assert out.frame.to_dict(as_series=False) == {
        "age": [1, None],
        "day": [date(2024, 1, 1), None],
    }
    assert out.rejected.schema == pl.Schema(REJECTED_SCHEMA)
    assert out.rejected.rows() == [
        (9, "ragged_row", "expected 2 fields, got 3", "a,b,c"),
        (2, "coerce", "age=x is not an int", '{"age":"x","day":null}'),
        (4, "coerce", "day=2024-13-01 is not a date", '{"age":"4","day":"2024-13-01"}'),
        (5, "coerce", "day=y is not a date", '{"age":"5","day":"y"}'),
        (6, "coerce", "age=z is not an int; day=q is not a date", '{"age":"z","day":"q"}'),
    ]
    assert out.rows_in == frame.height + earlier.height


def test_raw_is_the_row_as_the_source_gave_it() -> None:
    frame = pl.DataFrame({"Age": ["x"], "w": [10.0]})
    out = _reconcile(
        frame, rename={"Age": "age"}, coerce={"age": "int"}, units={"w": {"from": "kg", "to": "g"}}
    )
    assert json.loads(out.rejected["_raw"][0]) == {"Age": "x", "w": 10.0}
    assert out.rejected["_reason"][0] == "age=x is not an int"


def test_coerce_unknown_column() -> None:
    with pytest.raises(ContractError, match=r"reconcile.src.coerce.agee: .*did you mean 'age'"):
        _reconcile(pl.DataFrame({"age": [1]}), coerce={"agee": "int"})


def test_rejected_rows_reach_the_quarantine(read_file: ReadFile) -> None:
    read = read_file("id,Weight\n1,150\n2,heavy\n3,\n4,1,extra\n")
    out = reconcile(read, Reconcile(rename={"Weight": "weight"}, coerce={"weight": "float"}), "src")
    validation = validate(out, Contract())
    assert validation.rows_in == 4
    assert validation.kept["id"].to_list() == [1, 3]
    assert sorted(validation.quarantined["_rule"].to_list()) == ["coerce", "ragged_row"]
    row = validation.quarantined.filter(pl.col("_rule") == "coerce").row(0, named=True)
    assert (row["_row"], row["_reason"]) == (2, "weight=heavy is not a float")


# --- units ----------------------------------------------------------------------------


def test_units_convert_scales_and_offsets() -> None:
    frame = pl.DataFrame(
        {"w": [100, None, 0], "f": [212.0, 32.0, -40.0], "c": [100.0, 0.0, -40.0], "d": [1, 2, 3]}
    )
    out = _reconcile(
        frame,
        units={
            "w": {"from": "lb", "to": "kg"},
            "f": {"from": "degF", "to": "degC"},
            "c": {"from": "degC", "to": "degF"},
            "d": {"from": "mi", "to": "km"},
        },
    )
    assert out.frame["w"].to_list()[:2] == [pytest.approx(45.359237), None]
    assert out.frame["f"].to_list() == pytest.approx([100.0, 0.0, -40.0])
    assert out.frame["c"].to_list() == pytest.approx([212.0, 32.0, -40.0])
    assert out.frame["d"].to_list() == pytest.approx([1.609344, 3.218688, 4.828032])


def test_units_after_coerce() -> None:
    out = _reconcile(
        pl.DataFrame({"w": ["1", "2"]}),
        coerce={"w": "float"},
        units={"w": {"from": "kg", "to": "g"}},
    )
    assert out.frame["w"].to_list() == [1000.0, 2000.0]


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        ({"w": {"from": "lbz", "to": "kg"}}, r"units.w: cannot convert 'lbz' to 'kg': .*lbz"),
        ({"w": {"from": "lb", "to": "km"}}, r"units.w: .*Cannot convert from 'pound'"),
        ({"w": {"from": "kg/", "to": "g"}}, r"units.w: cannot convert 'kg/' to 'g'"),
        ({"s": {"from": "kg", "to": "g"}}, r"units.s: column 's' is String; units convert"),
        ({"x": {"from": "kg", "to": "g"}}, r"units.x: column 'x' is not in the source"),
    ],
)
def test_unit_errors(units: dict[str, Any], expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        _reconcile(pl.DataFrame({"w": [1.0], "s": ["1"]}), units=units)


# --- time zones -------------------------------------------------------------------------------


def test_naive_times_are_read_in_from_and_converted() -> None:
    frame = pl.DataFrame({"t": [datetime(2024, 7, 1, 12), datetime(2024, 1, 1, 12), None]})
    out = _reconcile(frame, timezone={"t": {"from": "America/New_York", "to": "Europe/Paris"}})
    assert out.frame.schema["t"] == pl.Datetime("us", "Europe/Paris")
    utc = out.frame["t"].dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    assert utc.to_list() == [datetime(2024, 7, 1, 16), datetime(2024, 1, 1, 17), None]


def test_aware_times_and_dates_are_converted() -> None:
    frame = pl.DataFrame(
        {
            "t": pl.Series([datetime(2024, 1, 1, 12)]).dt.replace_time_zone("Asia/Tokyo"),
            "d": [date(2024, 1, 2)],
            "ns": pl.Series([datetime(2024, 1, 1, 12)]).dt.cast_time_unit("ns"),
        }
    )
    out = _reconcile(frame, timezone={"t": {"to": "UTC"}, "d": {"from": "Europe/Paris"}, "ns": {}})
    assert out.frame.schema == pl.Schema(
        {
            "t": pl.Datetime("us", "UTC"),
            "d": pl.Datetime("us", "UTC"),
            "ns": pl.Datetime("us", "UTC"),
        }
    )
    assert out.frame.row(0) == tuple(
        pl.Series([v]).dt.replace_time_zone("UTC")[0]
        for v in (datetime(2024, 1, 1, 3), datetime(2024, 1, 1, 23), datetime(2024, 1, 1, 12))
    )


def test_text_times_iso_with_and_without_offsets() -> None:
    frame = pl.DataFrame(
        {
            "t": [
                "2024-01-01 10:00:00",
                "2024-01-01T10:00:00+02:00",
                "2024-01-01T10:00:00Z",
                "2024-01-02",
                "2024-03-31 02:30:00",  # does not exist in Paris (clocks go forward)
                "soon",
                None,
            ]
        }
    )
    out = _reconcile(frame, timezone={"t": {"from": "Europe/Paris", "to": "UTC"}})
    assert out.frame["t"].dt.replace_time_zone(None).to_list() == [
        datetime(2024, 1, 1, 9),
        datetime(2024, 1, 1, 8),
        datetime(2024, 1, 1, 10),
        datetime(2024, 1, 1, 23),
        None,
    ]
    assert out.rejected.select("_row", "_rule").rows() == [(5, "timezone"), (6, "timezone")]
    assert out.rejected["_reason"][1] == (
        "t=soon is not a valid time (ISO 8601, naive times read in Europe/Paris)"
    )


def test_text_times_with_a_format() -> None:
    frame = pl.DataFrame({"t": ["01/02/2024 10:00", "bad"], "z": ["01/02/2024 10:00 +0100", None]})
    out = _reconcile(
        frame,
        timezone={
            "t": {"from": "Europe/Paris", "format": "%d/%m/%Y %H:%M"},
            "z": {"from": "Asia/Tokyo", "format": "%d/%m/%Y %H:%M %z"},
        },
    )
    assert out.frame.rows() == [
        (
            pl.Series([datetime(2024, 2, 1, 9)]).dt.replace_time_zone("UTC")[0],
            pl.Series([datetime(2024, 2, 1, 9)]).dt.replace_time_zone("UTC")[0],
        )
    ]
    assert out.rejected["_reason"].to_list() == [
        "t=bad is not a valid time (the format '%d/%m/%Y %H:%M', naive times read in Europe/Paris)"
    ]


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ({"t": {"from": "Europe/Pariss"}}, r"timezone.t.from: unknown time zone 'Europe/Pariss'"),
        ({"t": {"to": "Mars/Base"}}, r"timezone.t.to: unknown time zone 'Mars/Base'"),
        ({"n": {}}, r"timezone.n: column 'n' is Int64; a time zone applies to datetimes"),
        ({"x": {}}, r"timezone.x: column 'x' is not in the source"),
    ],
)
def test_time_zone_errors(timezone: dict[str, Any], expected: str) -> None:
    with pytest.raises(ContractError, match=expected) as err:
        _reconcile(pl.DataFrame({"t": [datetime(2024, 1, 1)], "n": [1]}), timezone=timezone)
    if "Pariss" in expected:
        assert "did you mean 'Europe/Paris'" in str(err.value)


# --- derive ---------------------------------------------------------------------------------


def test_derive_in_order_after_the_other_steps() -> None:
    frame = pl.DataFrame({"Price": ["2", "3"], "qty": [1, 4]})
    out = _reconcile(
        frame,
        rename={"Price": "price"},
        coerce={"price": "float"},
        derive={"total": "price * qty", "big": "total > 5", "label": "upper(concat('q', qty))"},
    )
    assert out.frame.rows() == [(2.0, 1, 2.0, False, "Q1"), (3.0, 4, 12.0, True, "Q4")]


@pytest.mark.parametrize(
    ("derive", "expected"),
    [
        ({"x": "qty +* 2"}, r"derive.x: the expression 'qty \+\* 2' cannot be evaluated: .*parse"),
        ({"x": "nope + 1"}, r"derive.x: .*unable to find column \"nope\""),
        ({"qty": "qty + 1"}, r"derive.qty: column 'qty' already exists"),
    ],
)
def test_derive_errors(derive: dict[str, str], expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        _reconcile(pl.DataFrame({"qty": [1]}), derive=derive)


def test_derive_columns_names_the_key_path_it_is_given() -> None:
    with pytest.raises(ContractError, match=r"^integrate.derive.y: "):
        derive_columns(pl.DataFrame({"x": [1]}), {"y": "z"}, "integrate.derive")


def test_an_empty_section_changes_nothing() -> None:
    frame = pl.DataFrame({"a": [1, 2], "b": ["x", None]})
    out = _reconcile(frame)
    assert out.frame.equals(frame) and out.rejected.height == 0 and out.fingerprint == {"rows": 0}
