"""A proposed contract parses, round-trips through YAML, and the source passes it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from keelson.data.contracts import validate
from keelson.data.infer_contract import contract_yaml, infer_contract
from keelson.data.sources import SourceRead, read_source, rejects
from keelson.spec import Contract, FileSource, parse_spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "bank-marketing"


def _mixed(rows: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    income = rng.gamma(2.0, 20_000.0, rows).round(2)
    return pl.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + rows),
            "order_key": [f"ORD-{i:05d}" for i in range(rows)],
            "age": rng.integers(18, 91, rows),
            "income": pl.Series(income).scatter([3, 7], None),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "zip": [f"{z:05d}" for z in rng.integers(0, 100_000, rows)],
            "email": [f"user{i}@{d}.com" for i, d in enumerate(rng.choice(["a", "bb"], rows))],
            "signup": [
                str(dt.date(2020, 1, 1) + dt.timedelta(days=int(d)))
                for d in rng.integers(0, 900, rows)
            ],
            "seen": [
                dt.datetime(2024, 1, 1) + dt.timedelta(minutes=int(m))
                for m in rng.integers(0, 10**5, rows)
            ],
            "active": rng.random(rows) < 0.5,
            "note": [f"free text {i} " * int(n) for i, n in enumerate(rng.integers(0, 3, rows))],
            "tags": [[int(t)] for t in rng.integers(0, 3, rows)],
            "ratio": rng.random(rows) * 1e-3,
            "dup": rng.integers(0, 5, rows),
        }
    )


def _passes(frame: pl.DataFrame, contract: dict[str, Any]) -> None:
    result = validate(SourceRead("src", frame, rejects([]), {}), Contract.model_validate(contract))
    assert result.quarantined.height == 0, result.quarantined["_reason"].head(3).to_list()
    assert result.findings == [] and result.schema_changes == []
    assert result.kept.height == frame.height


def test_a_mixed_frame_passes_its_own_contract() -> None:
    frame = _mixed()
    contract = infer_contract(frame)
    _passes(frame, contract)
    columns = contract["columns"]
    assert contract["unique"] == [["customer_id"], ["order_key"]]
    assert columns["customer_id"] == {"type": "int", "nullable": False}
    assert columns["order_key"] == {"type": "str", "nullable": False, "regex": r"^[A-Z]{3}\-\d{5}$"}
    assert columns["age"] == {"type": "int", "nullable": False, "min": 18, "max": 90}
    assert columns["income"]["type"] == "float" and "nullable" not in columns["income"]
    assert (
        columns["income"]["min"]
        <= frame["income"].min()
        <= frame["income"].max()
        <= columns["income"]["max"]
    )
    assert columns["plan"]["allowed"] == ["basic", "plus", "pro"]
    assert columns["zip"]["regex"] == r"^\d{5}$"
    assert columns["email"]["regex"].startswith("^[^@")
    assert columns["signup"]["type"] == "date"
    assert columns["seen"]["type"] == "datetime"
    assert columns["active"] == {"type": "bool", "nullable": False}
    assert set(columns["note"]) == {"type", "nullable"}  # free text: no pattern, no list
    assert columns["tags"] == {"nullable": False}  # nested: no declared type
    assert "unique" not in str(columns["dup"]) and columns["dup"]["min"] == 0


def test_the_contract_round_trips_through_yaml_into_a_spec() -> None:
    frame = _mixed(60)
    contract = infer_contract(frame)
    snippet = contract_yaml("my source", contract)
    assert snippet.startswith("# Contract proposed by keelson for source 'my source'")
    document = yaml.safe_load(snippet)
    assert document["contracts"]["my source"] == contract
    spec = parse_spec(
        {
            "name": "p",
            "sources": {"my source": {"kind": "csv", "path": "x.csv"}},
            "contracts": document["contracts"],
            "target": {"column": "age"},
            "registry": {"name": "p"},
        }
    )
    assert spec.contracts["my source"].model_dump(exclude_defaults=True) == Contract.model_validate(
        contract
    ).model_dump(exclude_defaults=True)


def test_yaml_quotes_values_that_would_change_meaning() -> None:
    contract = {"columns": {"answer": {"type": "str", "allowed": ["no", "yes", "null", "1"]}}}
    assert yaml.safe_load(contract_yaml("s", contract))["contracts"]["s"] == contract


def test_ranges_are_rounded_outward() -> None:
    frame = pl.DataFrame({"t": [-50.8, -26.9, -30.0], "p": [92.201, 94.767, 93.0], "n": [7, 7, 7]})
    columns = infer_contract(frame)["columns"]
    assert (columns["t"]["min"], columns["t"]["max"]) == (-51, -26)
    assert (columns["p"]["min"], columns["p"]["max"]) == (92.2, 94.8)
    assert (columns["n"]["min"], columns["n"]["max"]) == (7, 7)
    _passes(frame, infer_contract(frame))


def test_patterns_are_proposed_only_when_every_value_fits() -> None:
    codes = [f"A{i:03d}" for i in range(300)] + ["B12"]
    frame = pl.DataFrame({"code": codes})
    sampled = infer_contract(frame, sample_rows=50)  # the odd value may be outside the sample
    assert "regex" not in sampled["columns"]["code"]
    _passes(frame, sampled)


def test_edge_frames() -> None:
    empty = pl.DataFrame({"a": []}, schema={"a": pl.String})
    assert infer_contract(empty) == {"columns": {"a": {"type": "str"}}}
    nulls = pl.DataFrame({"x": [None, None]})
    assert infer_contract(nulls) == {"columns": {"x": {}}}
    huge = pl.DataFrame({"u": pl.Series([1, 2**64 - 1], dtype=pl.UInt64)})
    assert "type" not in infer_contract(huge)["columns"]["u"]
    odd = pl.DataFrame({"nan": [1.0, float("nan")], "inf": [float("inf"), 1.0]})
    assert infer_contract(odd)["columns"] == {
        "nan": {"type": "float", "nullable": False},
        "inf": {"type": "float", "nullable": False},
    }
    _passes(odd, infer_contract(odd))
    codes = pl.DataFrame({"c": [f"K{i:02d}" for i in range(40)]}, schema={"c": pl.Categorical})
    assert infer_contract(codes)["columns"]["c"]["regex"] == r"^[A-Z]\d{2}$"
    _passes(codes, infer_contract(codes))
    zoned = pl.DataFrame({"t": [dt.datetime(2024, 1, 1)]}).with_columns(
        pl.col("t").dt.replace_time_zone("Europe/Paris")
    )
    _passes(zoned, infer_contract(zoned))


@pytest.mark.parametrize("sample_rows", [1_000, 100_000])
def test_the_bundled_example_passes_its_inferred_contract(sample_rows: int) -> None:
    read = read_source("clients", FileSource(kind="csv", path="data/clients.csv"), EXAMPLE)
    contract = infer_contract(read.frame, sample_rows=sample_rows)
    assert contract["unique"] == ["client_id"]
    assert contract["columns"]["client_id"]["regex"] == r"^[A-Z]\d{6}$"
    assert contract["columns"]["marital"]["allowed"] == ["divorced", "married", "single", "unknown"]
    assert contract["columns"]["age"]["type"] == "int"
    result = validate(read, Contract.model_validate(contract))
    assert (result.quarantined.height, result.kept.height) == (0, read.rows_in)
    assert result.findings == [] and result.schema_changes == []
