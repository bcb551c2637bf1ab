"""Profiles summarise every column with JSON-safe values."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from keelson import __version__
from keelson.data.profile import PROFILE_FORMAT, profile, profile_table


def test_profile_of_a_mixed_frame() -> None:
    frame = pl.DataFrame(
        {
            "n": [1, 2, None, 4, 5],
            "x": [0.5, float("nan"), None, 1.5, float("inf")],
            "s": ["a", "b", "a", None, "a"],
            "b": [True, None, False, True, True],
            "d": [dt.date(2024, 1, 1), None, None, dt.date(2024, 3, 1), None],
            "l": [[1], [2], None, [1], []],
        }
    )
    columns = {c["name"]: c for c in profile(frame)}
    json.dumps(list(columns.values()), allow_nan=False)
    n = columns["n"]
    assert (n["dtype"], n["missing"], n["missing_share"], n["distinct"]) == ("Int64", 1, 0.2, 4)
    assert (n["min"], n["max"], n["mean"], n["p50"]) == (1.0, 5.0, 3.0, 3.0)
    assert n["std"] == pytest.approx(1.825741858)
    assert n["p05"] == pytest.approx(1.15) and n["p95"] == pytest.approx(4.85)
    x = columns["x"]
    assert x["missing"] == 2 and x["min"] == 0.5 and x["max"] is None
    assert columns["s"]["top"] == [["a", 3], ["b", 1]] and columns["s"]["distinct"] == 2
    assert "min" not in columns["s"]
    assert columns["b"]["top"] == [["true", 3], ["false", 1]]
    assert (columns["d"]["min"], columns["d"]["max"]) == ("2024-01-01", "2024-03-01")
    assert columns["l"]["missing"] == 1 and "top" not in columns["l"]


def test_profile_of_empty_frames() -> None:
    assert profile(pl.DataFrame()) == []
    [col] = profile(pl.DataFrame({"a": []}, schema={"a": pl.Float64}))
    assert (col["missing"], col["missing_share"], col["distinct"], col["mean"]) == (0, 0.0, 0, None)


def test_top_is_limited_to_five() -> None:
    frame = pl.DataFrame({"s": [str(i % 8) for i in range(100)]})
    [col] = profile(frame)
    assert len(col["top"]) == 5 and all(count in (12, 13) for _, count in col["top"])


def test_profile_table_document() -> None:
    frame = pl.DataFrame(
        {
            "n": [1, 2, None, 4, 5, 5],
            "x": [0.0, float("nan"), None, 10.0, float("inf"), 10.0],
            "s": ["a", "b", "a", None, "a", "a"],
            "c": [3.0] * 6,
        }
    )
    frame = pl.concat([frame, frame.tail(2)])  # two rows repeat earlier rows
    document = profile_table(frame)
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert document["format"] == PROFILE_FORMAT == "keelson.profile/1"
    assert document["keelson_version"] == __version__
    assert (document["rows"], document["columns"], document["duplicates"]) == (8, 4, 2)
    columns = {c["name"]: c for c in document["columns_profile"]}
    assert [c | {"histogram": None} for c in profile(frame)] == [
        c | {"histogram": None} for c in document["columns_profile"]
    ]  # the per-column statistics are profile()'s, unchanged
    assert "histogram" not in columns["s"] and columns["s"]["top"] == [["a", 6], ["b", 1]]
    # integers spanning 1..5: one bin per value, edges halfway between them
    assert columns["n"]["histogram"] == {
        "edges": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
        "counts": [1, 1, 0, 1, 4],
        "non_finite": 0,
    }
    x = columns["x"]["histogram"]  # finite values 0, 10, 10, 10: 20 bins, the last closed
    assert len(x["edges"]) == 21 and (x["edges"][0], x["edges"][-1]) == (0.0, 10.0)
    assert x["counts"] == [1] + [0] * 18 + [3] and x["non_finite"] == 2
    assert columns["c"]["histogram"] == {"edges": [3.0, 3.0], "counts": [8], "non_finite": 0}


def test_histogram_counts_every_finite_value() -> None:
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({"f": rng.normal(size=997), "i": rng.integers(-500, 500, 997)})
    for column in profile_table(frame)["columns_profile"]:
        histogram = column["histogram"]
        assert sum(histogram["counts"]) == 997 and len(histogram["counts"]) == 20
        assert histogram["edges"] == sorted(histogram["edges"])


def test_correlations_are_pairwise_pearson() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=200)
    b = 2 * a + rng.normal(scale=0.5, size=200)
    frame = pl.DataFrame({"a": a, "s": ["t"] * 200, "b": b, "k": [1] * 200})
    frame = frame.with_columns(
        pl.when(pl.int_range(200) < 10).then(None).otherwise(pl.col("b")).alias("b")
    )
    matrix = profile_table(frame)["correlations"]
    assert matrix["method"] == "pearson" and matrix["columns"] == ["a", "b", "k"]
    values = matrix["values"]
    expected = np.corrcoef(a[10:], b[10:])[0, 1]  # only rows where both are present
    assert values[0][1] == values[1][0] == pytest.approx(expected)
    assert values[0][0] == values[1][1] == pytest.approx(1.0)
    assert values[2] == [None, None, None]  # a constant has no correlation
    limited = profile_table(frame, max_columns_for_correlation=2)["correlations"]
    assert (limited["columns"], limited["omitted"]) == (["a", "b"], ["k"])


def test_profile_table_edge_cases() -> None:
    empty = profile_table(pl.DataFrame())
    assert (empty["rows"], empty["columns"], empty["duplicates"]) == (0, 0, 0)
    assert empty["columns_profile"] == [] and empty["correlations"]["values"] == []
    no_rows = profile_table(pl.DataFrame({"a": []}, schema={"a": pl.Float64}))
    assert no_rows["columns_profile"][0]["histogram"] == {
        "edges": [],
        "counts": [],
        "non_finite": 0,
    }
    assert no_rows["correlations"]["values"] == [[None]]
    nulls = profile_table(pl.DataFrame({"a": [None, None], "b": [None, 1.0]}))
    assert nulls["duplicates"] == 0 and nulls["columns_profile"][0]["dtype"] == "Null"
    assert nulls["columns_profile"][1]["histogram"]["counts"] == [1]
    json.dumps([empty, no_rows, nulls], allow_nan=False)
