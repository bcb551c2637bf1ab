"""Streaming validation gives what in-memory validation gives, without holding the table."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from keelson.data.contracts import META_COLUMNS, Validation, enforce, validate
from keelson.data.sources import read_source
from keelson.data.streaming import StreamedValidation, validate_streaming
from keelson.errors import ContractError, SourceError
from keelson.spec import Contract, FileSource
from tests.data.dirty import contracts, every_rule
from tests.data.dirty import violations as dirty_violations

NOW = dt.datetime(2024, 6, 20, tzinfo=dt.UTC)
PLANS = {"plans": pl.DataFrame({"name": ["basic", "plus"]})}

EVERY_RULE = every_rule("7d", {"min": 100_000})
CONTRACTS = contracts(EVERY_RULE)


def violations(rows: int = 1500) -> pl.DataFrame:
    frame = dirty_violations(rows, distinct_ids=1400)
    return pl.concat([frame, frame[100:140], frame[7:9]])  # exact duplicates, later on


def _contract(fields: dict[str, Any] | None) -> Contract | None:
    return None if fields is None else Contract.model_validate(fields)


def _both(
    path: Path, kind: str, contract: Contract | None, **options: Any
) -> tuple[Validation, StreamedValidation]:
    read = read_source("src", FileSource(kind=kind, path=path.name, **options), path.parent)
    eager = validate(read, contract, PLANS, now=NOW)
    spec = FileSource(kind=kind, path=str(path), **options)
    out = path.parent / "out"
    streamed = validate_streaming(
        path, kind, contract, out, source="src", options=spec, references=PLANS, now=NOW
    )
    return eager, streamed


def assert_same(eager: Validation, streamed: StreamedValidation) -> None:
    assert_frame_equal(pl.read_parquet(streamed.kept_path), eager.kept)
    quarantine = pl.read_parquet(streamed.quarantine_path)
    assert quarantine.columns[:6] == ["_source", *META_COLUMNS]
    assert set(quarantine["_source"]) <= {"src"}
    assert_frame_equal(quarantine.select(eager.quarantined.columns), eager.quarantined)
    assert streamed.findings == eager.findings
    assert streamed.schema_changes == eager.schema_changes
    assert (streamed.rows_in, streamed.removed) == (eager.rows_in, eager.removed)
    assert streamed.summary() == eager.summary()


@pytest.mark.parametrize("kind", ["parquet", "csv"])
@pytest.mark.parametrize("fields", CONTRACTS.values(), ids=CONTRACTS.keys())
def test_streaming_equals_in_memory_validation(
    tmp_path: Path, kind: str, fields: dict[str, Any] | None
) -> None:
    path = tmp_path / f"table.{kind}"
    table = violations()
    table.write_parquet(path, row_group_size=200) if kind == "parquet" else table.write_csv(path)
    eager, streamed = _both(path, kind, _contract(fields))
    assert_same(eager, streamed)
    if fields is EVERY_RULE:  # the data really breaks every kind of rule
        found = {f.rule for f in eager.findings}
        assert {"type", "null", "min", "max", "allowed", "regex", "reference", "unique"} <= found
        assert {"duplicate", "check:adult_pro", "check:spend", "freshness", "rows"} <= found
        assert max(f.count for f in eager.findings) > 200  # examples come from many rows


def test_csv_parsing_matches_the_connector(tmp_path: Path) -> None:
    """Ragged lines, quoted newlines, a BOM, no header, a separator, null spellings."""
    lines = [
        "1;ann;30;2024-01-01",
        "2;bob",  # too few fields
        '3;"cy\nline";41;2024-01-02',
        "4;dee;NA;2024-01-03",
        "5;eve;50;2024-01-04;extra",  # too many
        "2;bob",  # the same ragged line again: numbered by its own position
        "6;fay;-1;2024-01-05",
    ]
    path = tmp_path / "people.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    options = {
        "separator": ";",
        "has_header": False,
        "columns": ["id", "name", "age", "day"],
        "null_values": ["", "NA"],
    }
    contract = Contract.model_validate({"columns": {"age": {"min": 0}, "day": {"type": "date"}}})
    eager, streamed = _both(path, "csv", contract, **options)
    assert_same(eager, streamed)
    ragged = eager.quarantined.filter(pl.col("_rule") == "ragged_row")
    assert ragged["_row"].to_list() == [2, 6, 7]


def test_the_quarantine_file_is_stamped_and_enforce_works_on_the_outline(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    violations().write_parquet(path)
    contract = _contract(EVERY_RULE)
    eager, streamed = _both(path, "parquet", contract)
    metadata = pq.read_schema(streamed.quarantine_path).metadata
    assert metadata[b"keelson.format"] == b"quarantine/1"
    assert metadata[b"keelson.source"] == b"src"
    with pytest.raises(ContractError) as in_memory:
        enforce(eager, contract)
    with pytest.raises(ContractError) as outlined:
        enforce(streamed.outline(), contract)
    assert str(outlined.value) == str(in_memory.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "src.kept.parquet",
        "src.quarantine.parquet",
    ]  # nothing left behind: no staged or temporary file


def test_freshness_fails_as_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    violations().write_parquet(path)
    fields = EVERY_RULE | {"freshness": {"column": "ts", "max_age": "1d"}}
    eager, streamed = _both(path, "parquet", _contract(fields))
    assert [f.message for f in streamed.failures] == [f.message for f in eager.failures]
    assert [f.rule for f in streamed.failures] == ["freshness"]
    wrong = EVERY_RULE | {"freshness": {"column": "extra", "max_age": "1d"}}
    with pytest.raises(ContractError, match="freshness needs dates") as raised:
        validate_streaming(
            path, "parquet", _contract(wrong), tmp_path / "none", source="src", references=PLANS
        )
    assert raised.value.where == "contracts.src.freshness.column"
    assert list((tmp_path / "none").iterdir()) == []  # nothing written when validation fails


@pytest.mark.parametrize(
    ("name", "content", "kind", "options", "message"),
    [
        ("t.json", b"[]", "json", {}, "reads csv or parquet files, not json"),
        ("t.csv", b"", "csv", {}, "is empty"),
        ("t.parquet", b"not parquet", "parquet", {}, "is not a valid Parquet file"),
        ("t.csv", b"a\n\xe9\n", "csv", {"encoding": "latin-1"}, "reads UTF-8 text"),
        ("t.csv", b"a,b\n1,2\n", "csv", {"encoding": "klingon"}, "reads UTF-8 text"),
        ("t.csv", b'a,b\n1,"open\n2,3\n', "csv", {}, "unterminated quote"),
        ("t.csv", b"a,a\n1,2\n", "csv", {}, "appears twice"),
    ],
)
def test_input_errors_name_the_file(
    tmp_path: Path, name: str, content: bytes, kind: str, options: dict[str, Any], message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    spec = FileSource(kind="csv", path=name, **options) if kind == "csv" else None
    with pytest.raises(SourceError, match=message) as raised:
        validate_streaming(path, kind, None, tmp_path / "out", source="src", options=spec)
    assert raised.value.where == path.as_posix()
    if "unterminated" in message:  # the same words as the in-memory connector
        with pytest.raises(SourceError) as in_memory:
            read_source("src", FileSource(kind="csv", path=name), tmp_path)
        assert in_memory.value.message == raised.value.message


def test_a_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="file not found"):
        validate_streaming(tmp_path / "nope.parquet", "parquet", None, tmp_path, source="src")


# --- larger than memory -----------------------------------------------------------------

ROWS = 1_500_000
BUDGET_MB = 640  # address space the run may add once warmed up; the table is ~1.2 GB
# Polars' streaming engine keeps fewer rows in flight with these (see the report numbers).
SMALL_MEMORY = {
    "POLARS_MAX_THREADS": "1",
    "POLARS_IDEAL_MORSEL_SIZE": "10000",
    "POLARS_ROW_GROUP_PREFETCH_SIZE": "1",
}
BIG_CONTRACT = {
    "columns": {
        "age": {"min": 0, "max": 99},
        "plan": {"allowed": ["plan-0", "plan-1", "plan-2"]},
        "email": {"regex": "@"},
    },
    "unique": ["id"],
    "exact_duplicates": "quarantine",
}

_GENERATE = """
import json, sys
import polars as pl
rows, path = int(sys.argv[1]), sys.argv[2]
i, pad = pl.col("id"), "x" * 400
pl.LazyFrame({"id": pl.int_range(rows, dtype=pl.Int64, eager=True)}).select(
    "id",
    email=pl.format("user{}@example-{}.org", i * 31 % 999_983, i % 13),
    plan=pl.when(i % 1000 == 7).then(pl.lit("gold")).otherwise(pl.format("plan-{}", i % 3)),
    age=i * 37 % 120 - 5,
    note=pl.format("{} {} " + pad, i % 1009, i),
    memo=pl.format(pad + " {}", i % 7),
).sink_parquet(path, row_group_size=50_000)
sizes = pl.scan_parquet(path).select(
    pl.col(pl.String).str.len_bytes().cast(pl.Int64).sum() + 16 * pl.len(),  # views + bytes
    pl.col(pl.Int64).len() * 8,
)
out = sizes.collect(engine="streaming").sum_horizontal().item()
bad = pl.scan_parquet(path).select(
    ((pl.col("age") < 0) | (pl.col("age") > 99) | (pl.col("plan") == "gold")).sum()
).collect(engine="streaming").item()
print(json.dumps({"bytes": out, "quarantined": bad}))
"""

_VALIDATE = """
import json, resource, sys
from pathlib import Path
import polars as pl
from keelson.data.contracts import validate
from keelson.data.sources import read_source
from keelson.data.streaming import validate_streaming
from keelson.spec import Contract, FileSource

mode, path, budget = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]) << 20
contract = Contract.model_validate(json.loads(sys.argv[4]))

def run(file):
    if mode == "eager":
        read = read_source("big", FileSource(kind="parquet", path=file.name), file.parent)
        v = validate(read, contract)
        return v.kept.height, v.quarantined.height
    v = validate_streaming(file, "parquet", contract, file.parent / mode, source=file.stem)
    return v.kept, v.quarantined

def size(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key))
    return int(line.split()[1]) << 10

# warm up on a few rows: thread pools and allocator arenas exist before the cap is set
small = path.parent / "small.parquet"
pl.scan_parquet(path).head(20_000).sink_parquet(small)
run(small)
base = size("VmSize")
resource.setrlimit(resource.RLIMIT_AS, (base + budget, resource.RLIM_INFINITY))
kept, quarantined = run(path)
peak = (size("VmPeak") - base) >> 20
print(json.dumps({"kept": kept, "quarantined": quarantined, "peak_mb": peak}))
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | SMALL_MEMORY
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_a_table_bigger_than_the_memory_cap_streams(tmp_path: Path) -> None:
    """Under an address-space cap of about half the table, in-memory validation dies and
    streaming validation finishes with every row accounted for."""
    path = tmp_path / "big.parquet"
    made = _python(_GENERATE, str(ROWS), str(path))
    assert made.returncode == 0, made.stderr
    facts = json.loads(made.stdout)
    assert facts["bytes"] / 1.8 > BUDGET_MB << 20  # the cap is well below the table's size

    eager = _python(_VALIDATE, "eager", str(path), str(BUDGET_MB), json.dumps(BIG_CONTRACT))
    assert eager.returncode != 0, "in-memory validation fit under the cap: the cap proves nothing"
    assert "memory allocation" in eager.stderr or "MemoryError" in eager.stderr, eager.stderr

    streamed = _python(_VALIDATE, "stream", str(path), str(BUDGET_MB), json.dumps(BIG_CONTRACT))
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    result = json.loads(streamed.stdout)
    assert result["quarantined"] == facts["quarantined"]
    assert result["kept"] + result["quarantined"] == ROWS
