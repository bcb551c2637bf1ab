"""Dirty files end to end through read → validate: clear reasons, nothing lost."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from keelson.data.contracts import validate
from keelson.data.sources import read_source
from keelson.spec import Contract, FileSource


def test_a_column_whose_type_changes_mid_file_loses_nothing(tmp_path: Path) -> None:
    lines = ["id,amount"] + [f"{i},{i * 3}" for i in range(5000)]
    lines += ["5000,12.5", "5001,n/a", "5002,", "5003,7"]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    read = read_source("t", FileSource(kind="csv", path="t.csv"), tmp_path)
    assert read.frame.schema["amount"] == pl.String  # not every value is a number
    contract = Contract.model_validate({"columns": {"amount": {"type": "float"}}})
    checked = validate(read, contract)
    assert checked.rows_in == 5004 == checked.kept.height + checked.quarantined.height
    assert checked.kept.schema["amount"] == pl.Float64
    assert checked.kept.filter(pl.col("id") == 5000)["amount"].item() == 12.5
    bad = checked.quarantined.row(0, named=True)
    assert bad["_rule"] == "type" and bad["_column"] == "amount" and "n/a" in bad["_reason"]


def test_a_partitioned_parquet_source_reads_every_part_in_order(tmp_path: Path) -> None:
    parts = tmp_path / "events"
    parts.mkdir()
    for index in range(3):
        pl.DataFrame({"id": [index * 10 + 1, index * 10 + 2]}).write_parquet(
            parts / f"part-{index:03d}.parquet"
        )
    read = read_source("events", FileSource(kind="parquet", path="events"), tmp_path)
    assert read.frame["id"].to_list() == [1, 2, 11, 12, 21, 22]
    assert read.rows_in == 6 and len(read.fingerprint["sha256"]) == 64
