"""Unions stack sources, drop exact duplicates and merge rows by key, losing nothing."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keelson.data.dedup import union
from keelson.errors import ContractError
from keelson.spec import Union

CRM = pl.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "email": ["a@crm", "b@crm", None, "d@crm"],
        "city": ["Oslo", None, "Rome", None],
        "ts": [datetime(2024, 1, 1), datetime(2024, 3, 1), datetime(2024, 1, 1), None],
    }
)
ERP = pl.DataFrame(
    {
        "id": [1, 2, 5, 4],
        "email": ["a@erp", "b@crm", "e@erp", "d@erp"],
        "phone": ["11", "22", "55", None],
        "ts": [datetime(2024, 2, 1), datetime(2024, 1, 1), datetime(2024, 1, 1), None],
    }
)
FRAMES = {"crm": CRM, "erp": ERP}


def _union(frames: dict[str, pl.DataFrame] = FRAMES, **fields: Any) -> Any:
    spec = Union.model_validate(
        {"name": "people", "sources": ["crm", "erp"], "keys": ["id"], "timestamp": "ts", **fields}
    )
    return union(frames, spec, where="integrate.unions[0]")


def _by_id(frame: pl.DataFrame, col: str) -> dict[Any, Any]:
    return dict(zip(frame["id"].to_list(), frame[col].to_list(), strict=True))


def test_latest_takes_the_newest_value_and_keeps_values_a_null_would_hide() -> None:
    result = _union()
    assert result.frame.columns == ["id", "email", "city", "ts", "phone"]
    assert result.frame["id"].to_list() == [1, 2, 3, 4, 5]  # order of first appearance
    assert _by_id(result.frame, "email") == {
        1: "a@erp",  # erp is newer
        2: "b@crm",
        3: None,
        4: "d@crm",  # no times: priority (sources order) decides
        5: "e@erp",
    }
    assert _by_id(result.frame, "city")[1] == "Oslo"  # erp has no city: not a conflict
    assert _by_id(result.frame, "phone")[2] == "22"
    assert _by_id(result.frame, "ts")[2] == datetime(2024, 3, 1)
    assert (result.rows_in, result.exact_duplicates, result.merged) == (8, 0, 3)
    assert result.conflicts.sort("id").to_dicts() == [
        {
            "id": 1,
            "column": "email",
            "policy": "latest",
            "chosen": "a@erp",
            "values": "erp=a@erp, crm=a@crm",
        },
        {
            "id": 4,
            "column": "email",
            "policy": "latest",
            "chosen": "d@crm",
            "values": "crm=d@crm, erp=d@erp",
        },
    ]


def test_priority_defaults_to_sources_order_and_can_be_set() -> None:
    result = _union(default="priority")
    assert _by_id(result.frame, "email")[1] == "a@crm"
    result = _union(default="priority", priority=["erp"])
    assert _by_id(result.frame, "email") == {
        1: "a@erp",
        2: "b@crm",
        3: None,
        4: "d@erp",
        5: "e@erp",
    }
    emails = result.conflicts.filter(pl.col("column") == "email")
    assert set(emails["values"]) == {"erp=a@erp, crm=a@crm", "erp=d@erp, crm=d@crm"}
    assert set(result.conflicts["column"]) == {"email", "ts"}  # ts is not ordering here


def test_most_complete_prefers_the_row_with_fewest_nulls() -> None:
    # id 1: crm lacks a phone, erp lacks a city: a tie, which priority breaks
    result = _union(default="most_complete")
    assert _by_id(result.frame, "email")[1] == "a@crm"
    assert _by_id(result.frame, "phone")[1] == "11"
    erp = ERP.with_columns(pl.Series("city", ["Bergen", None, None, None]))
    result = _union({"crm": CRM, "erp": erp}, default="most_complete")
    assert _by_id(result.frame, "email")[1] == "a@erp"  # erp's row 1 has no null
    assert _by_id(result.frame, "city")[1] == "Bergen"


def test_policies_per_column_override_the_default() -> None:
    result = _union(default="priority", conflicts={"email": "latest"})
    assert _by_id(result.frame, "email")[1] == "a@erp"
    policies = dict(result.conflicts.select("column", "policy").unique().iter_rows())
    assert policies == {"email": "latest", "ts": "priority"}


def test_fail_lists_conflicting_keys_with_each_source_value() -> None:
    with pytest.raises(ContractError) as err:
        _union(default="priority", conflicts={"email": "fail"})
    message = str(err.value)
    assert message.startswith("integrate.unions[0].conflicts.email: union 'people': 2 ")
    assert "id=1: email (crm=a@crm, erp=a@erp); id=4: email (crm=d@crm, erp=d@erp)" in message
    many = pl.DataFrame({"id": range(10), "v": range(10)})
    with pytest.raises(ContractError, match=r"unions\[0\].default: .* 10 \(key, column\)") as err:
        union(
            {"a": many, "b": many.with_columns(pl.col("v") + 1)},
            Union(name="u", sources=["a", "b"], keys=["id"], default="fail"),
            where="integrate.unions[0]",
        )
    assert str(err.value).count("; ") == 4  # five examples shown


def test_fail_accepts_a_value_filling_a_null() -> None:
    result = _union(default="fail", conflicts={"email": "priority", "ts": "latest"})
    assert _by_id(result.frame, "city")[1] == "Oslo"
    assert _by_id(result.frame, "phone")[1] == "11"


def test_exact_duplicates_are_counted_apart_from_merges() -> None:
    crm, erp = pl.concat([CRM, CRM.head(1)]), pl.concat([ERP, ERP.head(1)])
    result = _union({"crm": crm, "erp": erp})
    assert (result.rows_in, result.exact_duplicates, result.merged) == (10, 2, 3)
    assert result.rows_in == result.frame.height + result.exact_duplicates + result.merged
    result = _union({"crm": CRM, "erp": CRM})  # the same rows from two systems
    assert (result.exact_duplicates, result.merged, result.conflicts.height) == (4, 0, 0)
    assert result.frame.equals(CRM)


def test_rows_with_a_null_key_are_never_merged() -> None:
    crm = pl.DataFrame({"id": [None, None, 1], "k2": ["a", "a", None], "v": [1, 2, 3]})
    erp = pl.DataFrame({"id": [None, 1], "k2": ["a", None], "v": [4, 5]})
    result = union(
        {"crm": crm, "erp": erp},
        Union(name="u", sources=["crm", "erp"], keys=["id", "k2"], default="priority"),
    )
    assert result.frame["v"].to_list() == [1, 2, 3, 4, 5]
    assert result.merged == 0


def test_columns_are_aligned_by_name_and_types_widened() -> None:
    crm = pl.DataFrame({"id": pl.Series([1, 2], dtype=pl.Int32), "score": [1, 2]})
    erp = pl.DataFrame({"id": [2, 3], "score": [2.5, 3.5], "extra": ["x", "y"]})
    result = union(
        {"crm": crm, "erp": erp},
        Union(name="u", sources=["crm", "erp"], keys=["id"], default="priority"),
    )
    assert result.frame.schema == pl.Schema(
        {"id": pl.Int64, "score": pl.Float64, "extra": pl.String}
    )
    assert result.frame.rows() == [(1, 1.0, None), (2, 2.0, "x"), (3, 3.5, "y")]


def test_summary_is_json() -> None:
    summary = _union().summary()
    assert json.loads(json.dumps(summary)) == {
        "name": "people",
        "rows_in": 8,
        "rows_out": 5,
        "exact_duplicates": 0,
        "merged": 3,
        "conflicts": {"email": 2},
    }


def test_conflicts_of_nested_values_are_shown_as_json() -> None:
    a = pl.DataFrame({"id": [1], "tags": [["x", "y"]]})
    b = pl.DataFrame({"id": [1], "tags": [["z"]]})
    result = union(
        {"a": a, "b": b}, Union(name="u", sources=["a", "b"], keys=["id"], default="priority")
    )
    assert result.conflicts.row(0, named=True)["values"] == 'a=["x","y"], b=["z"]'
    assert result.frame["tags"].to_list() == [["x", "y"]]


@pytest.mark.parametrize(
    ("frames", "fields", "expected"),
    [
        (
            {"crm": CRM.rename({"id": "ident"}), "erp": ERP},
            {},
            r"unions\[0\].keys: column 'id' is not in source 'crm' of union 'people'",
        ),
        (
            {"crm": CRM, "erp": ERP.drop("ts")},
            {},
            r"unions\[0\].timestamp: column 'ts' is not in source 'erp'",
        ),
        ({"crm": CRM}, {}, r"unions\[0\].sources: union 'people' needs source 'erp'"),
        (FRAMES, {"priority": ["crm", "sap"]}, r"unions\[0\].priority: .*\['sap'\]"),
        (FRAMES, {"sources": ["crm", "erp", "crm"]}, r"lists \['crm'\] twice"),
        (FRAMES, {"conflicts": {"id": "priority"}}, r"conflicts.id: 'id' is a key"),
        (FRAMES, {"conflicts": {"mail": "priority"}}, r"conflicts.mail: .*did you mean 'email'"),
        (
            {"crm": CRM.with_columns(pl.col("ts").cast(pl.String)), "erp": ERP},
            {},
            r"unions\[0\].timestamp: timestamp column 'ts' is String",
        ),
        (
            {"crm": CRM.with_columns(_source=pl.lit("x")), "erp": ERP},
            {},
            r"source 'crm' has columns \['_source'\], reserved",
        ),
        (
            {"crm": CRM.with_columns(pl.col("city").map_elements(lambda v: [v])), "erp": ERP},
            {"sources": ["crm", "erp"]},
            None,  # no clash: erp has no city
        ),
        (
            {"crm": CRM, "erp": ERP.with_columns(email=pl.col("id").map_elements(lambda v: [v]))},
            {},
            r"cannot be stacked: 'email' is String in crm, List\(Int64\) in erp",
        ),
    ],
)
def test_errors_name_the_source_and_key_path(
    frames: dict[str, pl.DataFrame], fields: dict[str, Any], expected: str | None
) -> None:
    if expected is None:
        assert _union(frames, **fields).frame.height == 5
        return
    with pytest.raises(ContractError, match=expected):
        _union(frames, **fields)


# --- properties --------------------------------------------------------------------

_POLICIES = ("latest", "priority", "most_complete")
_cell = st.one_of(st.none(), st.integers(0, 2))


@st.composite
def _sources(draw: st.DrawFn) -> dict[str, pl.DataFrame]:
    frames = {}
    for name in ("a", "b", "c")[: draw(st.integers(2, 3))]:
        rows = draw(st.lists(st.tuples(_cell, _cell, _cell, _cell), max_size=12))
        columns = ["id", "ts", "x", "y"]
        frames[name] = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.Int64), orient="row")
    return frames


def _reference(frames: dict[str, pl.DataFrame], spec: Union) -> dict[int, dict[str, Any]]:
    """Merged rows by key, from every stacked row in plain Python."""
    order = [*spec.priority, *(s for s in spec.sources if s not in spec.priority)]
    stacked = [
        {**row, "_rank": order.index(name), "_pos": pos}
        for pos, (name, row) in enumerate(
            (n, r) for n in spec.sources for r in frames[n].iter_rows(named=True)
        )
    ]
    merged: dict[int, dict[str, Any]] = {}
    for key in {r["id"] for r in stacked if r["id"] is not None}:
        rows = [r for r in stacked if r["id"] == key]
        merged[key] = {col: _pick(rows, col, spec) for col in ("ts", "x", "y")}
    return merged


def _pick(rows: list[dict[str, Any]], col: str, spec: Union) -> Any:
    policy = spec.conflicts.get(col, spec.default)
    if policy == "latest":
        rows = sorted(rows, key=lambda r: (r["ts"] is None, -(r["ts"] or 0), r["_rank"], r["_pos"]))
    elif policy == "most_complete":
        nulls = {id(r): sum(r[c] is None for c in ("id", "ts", "x", "y")) for r in rows}
        rows = sorted(rows, key=lambda r: (nulls[id(r)], r["_rank"], r["_pos"]))
    else:
        rows = sorted(rows, key=lambda r: (r["_rank"], r["_pos"]))
    return next((r[col] for r in rows if r[col] is not None), None)


@settings(max_examples=80, deadline=None)
@given(
    frames=_sources(),
    default=st.sampled_from(_POLICIES),
    x_policy=st.sampled_from(_POLICIES),
    reverse=st.booleans(),
)
def test_union_loses_no_row_and_matches_a_reference(
    frames: dict[str, pl.DataFrame], default: str, x_policy: str, reverse: bool
) -> None:
    sources = list(frames)
    spec = Union.model_validate(
        {
            "name": "u",
            "sources": sources,
            "keys": ["id"],
            "timestamp": "ts",
            "default": default,
            "conflicts": {"x": x_policy},
            "priority": sources[::-1] if reverse else [],
        }
    )
    result = union(frames, spec)
    out = result.frame
    assert result.rows_in == sum(f.height for f in frames.values())
    assert result.rows_in == out.height + result.exact_duplicates + result.merged
    keyed = out.filter(pl.col("id").is_not_null())
    assert keyed["id"].is_unique().all()
    null_keyed = pl.concat(f.filter(pl.col("id").is_null()) for f in frames.values())
    assert out.filter(pl.col("id").is_null()).height == null_keyed.unique().height
    expected = _reference(frames, spec)
    assert {r["id"]: {c: r[c] for c in ("ts", "x", "y")} for r in keyed.iter_rows(named=True)} == (
        expected
    )
    disputed = result.conflicts.select("id", "column").rows()
    assert len(disputed) == len(set(disputed))
