"""Profiles summarise every column with JSON-safe values."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from keelson.data.profile import profile


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
