"""Partitioned Parquet validated on a real Dask cluster equals the local, in-memory path."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import psutil
import pytest
from distributed import Client
from polars.testing import assert_frame_equal

from keelson.data.contracts import Validation, validate
from keelson.data.executor import (
    connect_scheduler,
    dask_client,
    is_partitioned,
    partitioned_sources,
    read_partitioned,
    read_partitioned_source,
    validate_partitioned,
)
from keelson.data.pipeline import _validate_all
from keelson.data.sources import SourceRead, rejects
from keelson.errors import KeelsonError, SourceError
from keelson.run_context import RunContext
from keelson.spec import Contract, Execution, FileSource, parse_spec
from keelson.store.store import locate, open_store
from tests.data.dirty import contracts, every_rule
from tests.data.dirty import violations as dirty_violations

NOW = dt.datetime(2024, 6, 20, tzinfo=dt.UTC)
DASK = Execution(engine="dask", workers=2)
PLANS = {"plans": pl.DataFrame({"name": ["basic", "plus"]})}
SPLITS = (0, 300, 310, 310, 900)  # partitions of unequal sizes, one of them empty

EVERY_RULE = every_rule("3d", {"max": 1000})
CONTRACTS = contracts(EVERY_RULE)


def violations(rows: int = 1400) -> pl.DataFrame:
    frame = dirty_violations(rows, distinct_ids=1300)
    return pl.concat([frame, frame[100:140], frame[7:9], frame[1350:1352]])


def write_partitions(folder: Path, frame: pl.DataFrame) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [*SPLITS, frame.height]
    for n, (start, end) in enumerate(itertools.pairwise(bounds)):
        frame[start:end].write_parquet(folder / f"part-{n:03d}.parquet")
    return read_partitioned(FileSource(kind="parquet", path=str(folder)), folder)


def assert_same(local: Validation, remote: Validation) -> None:
    assert_frame_equal(remote.kept, local.kept)
    assert_frame_equal(remote.quarantined, local.quarantined)
    assert remote.findings == local.findings
    assert remote.schema_changes == local.schema_changes
    assert (remote.rows_in, remote.removed) == (local.rows_in, local.removed)
    assert remote.summary() == local.summary()


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A real local cluster (two worker processes, one thread each), closed afterwards."""
    with dask_client(DASK) as opened:
        workers = set(opened.run(os.getpid).values())
        yield opened
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) for p in workers), "worker processes outlived the cluster"


def test_the_local_cluster_has_pinned_worker_processes(client: Client) -> None:
    info = client.scheduler_info()["workers"]
    assert len(info) == 2
    assert {w["nthreads"] for w in info.values()} == {1}
    threads = client.run(lambda: os.environ.get("POLARS_MAX_THREADS"))
    assert set(threads.values()) == {"1"}
    assert len(set(client.run(os.getpid).values())) == 2  # processes, not threads


@pytest.mark.parametrize("fields", CONTRACTS.values(), ids=CONTRACTS.keys())
def test_partitions_on_dask_equal_the_local_path(
    client: Client, tmp_path: Path, fields: dict[str, Any] | None
) -> None:
    frame = violations()
    paths = write_partitions(tmp_path / "events", frame)
    contract = None if fields is None else Contract.model_validate(fields)
    source = FileSource(kind="parquet", path="events")
    local = validate(read_partitioned_source("src", source, tmp_path), contract, PLANS, NOW)
    whole = validate(SourceRead("src", frame, rejects([]), {}), contract, PLANS, NOW)
    remote = validate_partitioned(
        paths, contract, source="src", execution=DASK, references=PLANS, now=NOW, client=client
    )
    assert_same(whole, local)
    assert_same(local, remote)
    if fields is EVERY_RULE:  # the data really breaks every kind of rule, across partitions
        found = {f.rule for f in local.findings}
        assert {"type", "null", "min", "max", "allowed", "regex", "reference", "unique"} <= found
        assert {"duplicate", "check:adult_pro", "check:spend", "freshness", "rows"} <= found
        first_partition = SPLITS[1]
        moved = local.quarantined.filter(pl.col("_rule").is_in(["duplicate", "unique"]))
        assert moved["_row"].min() > first_partition  # duplicates of rows in other partitions
        assert max(f.count for f in local.findings) > 200  # examples from several partitions


def test_a_scheduler_address_is_used_and_its_client_closed(client: Client, tmp_path: Path) -> None:
    paths = write_partitions(tmp_path / "events", violations(400))
    address = client.scheduler.address
    contract = Contract.model_validate({"unique": ["id"], "columns": {"age": {"min": 0}}})
    before = _clients(client)
    remote = validate_partitioned(
        paths, contract, source="src", execution=Execution(engine="dask", address=address)
    )
    events = FileSource(kind="parquet", path="events")
    local = validate(read_partitioned_source("src", events, tmp_path), contract)
    assert_same(local, remote)
    deadline = time.monotonic() + 10
    while _clients(client) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _clients(client) == before  # the client it opened is closed


def _clients(client: Client) -> int:
    return len(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients)))


def test_an_unreachable_scheduler_is_a_keelson_error() -> None:
    with pytest.raises(KeelsonError, match="cannot reach the Dask scheduler") as raised:
        connect_scheduler("tcp://127.0.0.1:9", timeout="1s")
    assert raised.value.where == "execution.address"


def test_partitions_must_share_a_schema(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame({"id": [1, 2]}).write_parquet(folder / "a.parquet")
    pl.DataFrame({"id": ["3"]}).write_parquet(folder / "b.parquet")
    paths = read_partitioned(FileSource(kind="parquet", path="events"), tmp_path)
    with pytest.raises(SourceError, match="partition has columns") as remote:
        validate_partitioned(paths, None, source="src", execution=DASK, client=client)
    assert remote.value.where.endswith("b.parquet")  # type: ignore[union-attr]
    with pytest.raises(SourceError, match="the first partition"):
        read_partitioned_source("src", FileSource(kind="parquet", path="events"), tmp_path)


# --- finding and reading partitions -------------------------------------------------------


def test_read_partitioned_finds_files_in_path_order(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    for name in ["b/part-2.parquet", "a/part-1.parquet", "part-0.parquet"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"x": [1]}).write_parquet(folder / name)
    (folder / "_SUCCESS").write_text("")
    found = read_partitioned(FileSource(kind="parquet", path="events"), tmp_path)
    assert [Path(p).relative_to(folder).as_posix() for p in found] == [
        "a/part-1.parquet",
        "b/part-2.parquet",
        "part-0.parquet",
    ]
    glob = FileSource(kind="parquet", path="events/*/part-*.parquet")
    assert read_partitioned(glob, tmp_path) == found[:2]
    url = FileSource(kind="parquet", path=f"file://{folder.as_posix()}/a/*.parquet")
    assert read_partitioned(url, tmp_path) == [f"file://{found[0]}"]
    single = FileSource(kind="parquet", path="events/part-0.parquet")
    assert read_partitioned(single, tmp_path) == found[2:]
    assert is_partitioned(FileSource(kind="parquet", path="events"), tmp_path)
    assert is_partitioned(glob, tmp_path)
    assert not is_partitioned(single, tmp_path)
    assert not is_partitioned(FileSource(kind="csv", path="events"), tmp_path)


def test_no_partition_found_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no Parquet file found") as raised:
        read_partitioned(
            FileSource(kind="parquet", path="nothing/*.parquet"), tmp_path, source="ev"
        )
    assert "sources.ev.path" in str(raised.value)


def test_the_fingerprint_covers_content_and_order(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame({"x": [1, 2]}).write_parquet(folder / "p1.parquet")
    pl.DataFrame({"x": [3]}).write_parquet(folder / "p2.parquet")
    source = FileSource(kind="parquet", path="events")
    first = read_partitioned_source("ev", source, tmp_path)
    assert first.frame["x"].to_list() == [1, 2, 3]
    assert (first.fingerprint["partitions"], first.fingerprint["rows"]) == (2, 3)
    (folder / "p1.parquet").rename(folder / "p3.parquet")  # same files, other order
    second = read_partitioned_source("ev", source, tmp_path)
    assert second.frame["x"].to_list() == [3, 1, 2]
    assert second.fingerprint["sha256"] != first.fingerprint["sha256"]


# --- the data stage ------------------------------------------------------------------------


def _spec(execution: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "name": "p",
            "sources": {
                "plans": {"kind": "csv", "path": "plans.csv"},
                "events": {"kind": "parquet", "path": "events"},
            },
            "contracts": {
                "events": EVERY_RULE
                | {
                    "references": [{"columns": ["plan"], "source": "plans", "to": ["name"]}],
                    "freshness": None,  # its message names the clock time of each run
                },
                "plans": {"unique": ["name"]},
            },
            "integrate": {"base": "events", "joins": []},
            "execution": execution,
            "target": {"column": "plan"},
            "registry": {"name": "p"},
        }
    )


def test_the_data_stage_validates_partitioned_sources_on_dask(
    client: Client, tmp_path: Path
) -> None:
    from rich.console import Console

    from keelson.data.connectors.files import read_csv

    write_partitions(tmp_path / "events", violations())
    (tmp_path / "plans.csv").write_text("name\nbasic\nplus\npro\nbasic\n")
    dask = _spec({"engine": "dask", "address": client.scheduler.address})
    assert list(partitioned_sources(dask, tmp_path)) == ["events"]
    assert partitioned_sources(_spec({}), tmp_path) == {}
    reads = {
        "plans": read_csv("plans", dask.sources["plans"], tmp_path),
        "events": read_partitioned_source("events", dask.sources["events"], tmp_path),
    }
    results = {}
    for spec in (_spec({}), dask):
        ctx = RunContext(spec, tmp_path, open_store(locate(tmp_path)), Console(), quiet=True)
        ctx.start()
        results[spec.execution.engine] = _validate_all(ctx, reads)
        steps = {s.name: s.detail for s in ctx.steps}
        assert steps["validate.events"].get("engine") == ("dask" if spec is dask else None)
    for local, remote in zip(results["polars"], results["dask"], strict=True):
        assert_same(local, remote)
