"""Dataset versions: saved by content, found by id/prefix/latest, diffed, traced to models."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import update

from keelson.data.versions import (
    content_hash,
    diff,
    get_version,
    lineage,
    list_versions,
    load_version,
    save_version,
)
from keelson.errors import KeelsonError, NotFoundError
from keelson.store.store import Store, locate, open_store
from keelson.store.tables import Alias, DatasetVersion, ModelVersion, Run

LINEAGE = {
    "sources": {"clients": {"kind": "csv", "sha256": "ab" * 32, "rows": 3}},
    "spec_sha256": "cd" * 32,
    "keelson_version": "0.1.0",
    "run_id": None,
}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(locate(tmp_path))


def save(store: Store, frame: pl.DataFrame, project: str = "demo", **when: int) -> str:
    version, _ = save_version(store, project, frame, LINEAGE, None)
    if when:  # pin the creation time so that "newest first" does not depend on the clock
        stamp = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(**when)
        with store.session() as session:
            session.execute(
                update(DatasetVersion)
                .where(DatasetVersion.id == version.id)
                .values(created_at=stamp)
            )
    return version.id


def frame(n: int) -> pl.DataFrame:
    return pl.DataFrame({"n": list(range(n))})


def test_save_is_by_content_and_round_trips(store: Store) -> None:
    table = pl.DataFrame({"a": [1, None], "s": ["x", "y"], "d": [dt.date(2024, 1, 1), None]})
    first, created = save_version(store, "demo", table, LINEAGE, None)
    again, created_again = save_version(store, "demo", table.clone(), LINEAGE, None)
    assert (created, created_again, again.id) == (True, False, first.id)
    assert first.id == content_hash(table)[:16] and first.schema["d"] == "Date"
    assert load_version(store, first.id).equals(table)
    with pytest.raises(NotFoundError, match="keelson data log"):
        load_version(store, "0" * 16)


def test_list_versions_newest_first_by_project(store: Store) -> None:
    old, new, other = save(store, frame(1), days=1), save(store, frame(2), days=3), None
    other = save(store, frame(3), project="elsewhere", days=2)
    assert [v.id for v in list_versions(store, "demo")] == [new, old]
    assert [v.id for v in list_versions(store)] == [new, other, old]
    assert [v.id for v in list_versions(store, limit=1)] == [new]
    assert list_versions(store, "nobody") == []


def test_get_version_by_id_prefix_hash_and_latest(store: Store) -> None:
    old, new = save(store, frame(1), days=1), save(store, frame(2), days=2)
    version = get_version(store, old)
    assert get_version(store, old[:6].upper()).id == old
    assert get_version(store, version.content_hash).id == old
    assert get_version(store, version.content_hash[:20]).id == old
    assert get_version(store, "latest").id == new
    assert get_version(store, " LATEST ", project="demo").id == new


def test_get_version_refuses_unknown_short_and_ambiguous(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no dataset version yet"):
        get_version(store, "latest")
    real = get_version(store, save(store, frame(1)))
    with store.session() as session:  # two ids sharing the prefix "beef"
        for suffix in ("000000000001", "000000000002"):
            session.add(
                DatasetVersion(
                    id=f"beef{suffix}", project="demo", content_hash=f"beef{suffix}".ljust(64, "0"),
                    rows=0, columns=0, schema={}, lineage={}, artifact_id=real.artifact_id,
                )
            )  # fmt: skip
    with pytest.raises(NotFoundError, match=r"'beef' is ambiguous: it matches beef0+1, beef0+2"):
        get_version(store, "beef")
    assert get_version(store, "beef000000000002").id == "beef000000000002"
    with pytest.raises(NotFoundError, match=r"'0123abcd'.*keelson data log"):
        get_version(store, "0123abcd")
    with pytest.raises(NotFoundError, match="too short"):
        get_version(store, "bee")
    with pytest.raises(NotFoundError, match="no dataset version 'be_f'"):
        get_version(store, "be_f")  # a LIKE wildcard is a literal character here


OLD = pl.DataFrame(
    {
        "id": [1, 2, 3, 4, None],
        "x": [1.0, 2.0, None, float("nan"), 5.0],
        "s": ["a", "b", "c", "d", "e"],
        "gone": [0, 0, 0, 0, 0],
        "n": [1, 2, 3, 4, 5],
    }
)
NEW = pl.DataFrame(
    {
        "id": [2, 3, 4, 5, None],
        "x": [2.0, 3.0, float("nan"), 6.0, 5.0],
        "s": ["b", "c", "D", "f", "e"],
        "n": [2.0, 3.0, 4.0, 5.0, 6.0],
        "added": ["u", "v", "w", "x", "y"],
    }
)


def test_diff_by_key(store: Store) -> None:
    result = diff(store, save(store, OLD), save(store, NEW), keys=["id"])
    assert (result.columns_added, result.columns_removed) == (
        {"added": "String"},
        {"gone": "Int64"},
    )
    assert result.columns_retyped == {"n": ["Int64", "Float64"]}
    assert result.compared == ["id", "x", "s", "n"] and result.uncompared == []
    # id 1 removed, 5 added; 3: x null -> 3; 4: NaN = NaN but "d" -> "D"; null id: n 5 -> 6
    assert (result.rows_added, result.rows_removed) == (1, 1)
    assert (result.rows_changed, result.rows_unchanged) == (3, 1)
    assert result.changed_by_column == {"x": 1, "s": 1, "n": 1}
    assert result.examples == {
        "added": [{"id": 5}],
        "removed": [{"id": 1}],
        "changed": [{"id": 3}, {"id": 4}, {"id": None}],
    }
    summary = result.summary()
    assert summary["format"] == "keelson.diff/1" and summary["identical"] is False
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary


def test_diff_by_composite_key_gives_ten_sorted_examples(store: Store) -> None:
    before = pl.DataFrame({"day": [dt.date(2024, 1, d) for d in range(1, 29)], "v": [0] * 28})
    before = before.with_columns(shop=pl.lit("a"))
    after = before.with_columns(v=pl.col("v") + 1).reverse()
    result = diff(store, save(store, before), save(store, after), keys=["shop", "day"])
    assert (result.rows_changed, result.changed_by_column) == (28, {"v": 28})
    assert result.examples["changed"][:2] == [
        {"shop": "a", "day": "2024-01-01"},
        {"shop": "a", "day": "2024-01-02"},
    ]
    assert len(result.examples["changed"]) == 10
    json.dumps(result.summary(), allow_nan=False)


def test_diff_without_keys_is_a_multiset_diff(store: Store) -> None:
    before = pl.DataFrame({"a": [1, 1, 1, None, 2], "b": ["x", "x", "x", None, "y"]})
    after = pl.DataFrame({"a": [None, 1, 3, 2, 2], "b": [None, "x", "z", "y", "y"]})
    result = diff(store, save(store, before), save(store, after))
    # (1, x) three times then once: 2 removed; (null, null) kept; (3, z) added; (2, y) once more
    assert (result.rows_removed, result.rows_added, result.rows_unchanged) == (2, 2, 3)
    assert result.rows_changed is None and result.changed_by_column is None
    same = diff(store, save(store, before), save(store, before.reverse()))
    assert (same.rows_added, same.rows_removed, same.rows_unchanged) == (0, 0, 5)
    assert same.identical and same.old != same.new  # only the row order (and the hash) differ


def test_diff_of_a_version_with_itself_is_identical(store: Store) -> None:
    ref = save(store, OLD)
    assert diff(store, ref, ref).identical and diff(store, ref, ref, ["id"]).identical


def test_diff_compares_retyped_columns_through_a_common_type(store: Store) -> None:
    before = pl.DataFrame({"k": [1, 2, 3], "c": ["a", "b", "a"], "v": [1, 2, 3]})
    before = before.with_columns(pl.col("c").cast(pl.Categorical))
    after = pl.DataFrame({"k": [1, 2, 3], "c": ["a", "b", "b"], "v": [[1], [2], [3]]})
    result = diff(store, save(store, before), save(store, after), keys=["k"])
    assert result.columns_retyped == {"c": ["Categorical", "String"], "v": ["Int64", "List(Int64)"]}
    assert result.uncompared == ["v"] and result.changed_by_column == {"c": 1}
    with pytest.raises(KeelsonError, match="key column 'v' changed from Int64 to List"):
        diff(store, save(store, before), save(store, after), keys=["v"])


def test_diff_with_no_shared_column(store: Store) -> None:
    result = diff(store, save(store, frame(3)), save(store, pl.DataFrame({"m": [1, 2]})))
    assert (result.rows_added, result.rows_removed, result.rows_unchanged) == (2, 3, 0)


def test_diff_key_errors_name_the_column(store: Store) -> None:
    old, new = save(store, OLD), save(store, NEW)
    with pytest.raises(KeelsonError, match="'gone' is not in dataset version") as error:
        diff(store, old, new, keys=["id", "gone"])
    assert error.value.where == "--key gone" and "added" in str(error.value.hint)
    with pytest.raises(KeelsonError, match="'nope' is not in dataset version"):
        diff(store, old, new, keys=["nope"])
    duplicated = save(store, pl.DataFrame({"id": [1, 1, 2], "v": [1, 2, 3]}))
    with pytest.raises(KeelsonError, match=r"key \(id\) is not unique.*1 rows repeat"):
        diff(store, old, duplicated, keys=["id"])
    with pytest.raises(NotFoundError, match="keelson data log"):
        diff(store, old, "ffffffff", keys=["id"])


def add_model(store: Store, dataset: str | None, name: str, version: int) -> None:
    artifact = store.put_artifact(b"model", kind="model", fmt="skops", run_id=None)
    with store.session() as session:
        session.add(
            ModelVersion(
                name=name, version=version, family="logistic", threshold=0.5, signature={},
                metrics={}, lineage={}, artifact_id=artifact.id, dataset_version_id=dataset,
                run_id=None, keelson_version="0.1.0",
            )
        )  # fmt: skip


def test_lineage_names_sources_run_and_models(store: Store) -> None:
    with store.session() as session:
        session.add(
            Run(id="run1", project="demo", status="succeeded", spec_hash="x", keelson_version="0")
        )
    version, _ = save_version(store, "demo", OLD, {**LINEAGE, "run_id": "run1"}, "run1")
    other = save(store, NEW)
    add_model(store, version.id, "churn", 1)
    add_model(store, version.id, "churn", 2)
    add_model(store, other, "churn", 3)
    add_model(store, version.id, "alt", 1)
    with store.session() as session:
        session.add(Alias(name="churn", alias="production", version=2))
        session.add(Alias(name="churn", alias="candidate", version=2))
    record: dict[str, Any] = lineage(store, version.id[:8])
    assert record["version"] == version.id and record["run_id"] == "run1"
    assert record["sources"] == LINEAGE["sources"] and record["spec_sha256"] == "cd" * 32
    assert record["keelson_version"] == "0.1.0"
    models = [(m["name"], m["version"], m["aliases"]) for m in record["models"]]
    assert models == [("alt", 1, []), ("churn", 1, []), ("churn", 2, ["candidate", "production"])]
    assert json.loads(json.dumps(record)) == record
    assert lineage(store, other)["models"][0]["version"] == 3
