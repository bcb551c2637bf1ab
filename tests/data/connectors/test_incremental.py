"""Incremental reads against real databases, a growing file and a real store."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_series_equal
from sqlalchemy.dialects import mysql

from keelson.data.incremental import Watermark, read_incremental, reset_incremental
from keelson.data.sources import SourceRead
from keelson.errors import SourceError
from keelson.spec import FileSource, Incremental, SqlSource
from keelson.store.store import Store, locate, open_store
from keelson.store.tables import Artifact, SourceState

PROJECT = "shop"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(locate(tmp_path))
    yield opened
    opened.close()


def _snapshots(store: Store) -> list[Artifact]:
    with store.session() as session:
        return list(session.scalars(sa.select(Artifact).where(Artifact.kind == "source_snapshot")))


def _state(store: Store, name: str) -> SourceState | None:
    with store.session() as session:
        return session.get(SourceState, (PROJECT, name))


# --- SQL: SQLite, PostgreSQL, MariaDB -------------------------------------------------


@dataclass(frozen=True)
class Database:
    url: str  # as written in keelson.yaml
    engine: sa.Engine
    table: sa.Table

    def run(self, statement: Any, rows: list[dict[str, Any]] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement, rows) if rows else conn.execute(statement)


def _database(url: str, driver_url: str, table: str) -> Database:
    engine = sa.create_engine(driver_url)
    events = sa.Table(
        table,
        sa.MetaData(),
        sa.Column("id", sa.Integer),
        sa.Column("UpdatedAt", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")),
        sa.Column("amount", sa.Double),
    )
    with engine.begin() as conn:
        events.create(conn)
    return Database(url, engine, events)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = _database("sqlite:///events.db", f"sqlite:///{tmp_path / 'events.db'}", "events")
    elif request.param == "postgresql":
        url, table = request.getfixturevalue("pg_table")
        db = _database(url, url.replace("postgresql://", "postgresql+psycopg://"), table)
    else:
        url, table = request.getfixturevalue("mariadb_table")
        db = _database(url, url.replace("mysql://", "mysql+pymysql://"), table)
    yield db
    db.engine.dispose()


def _at(day: int) -> datetime:
    return datetime(2024, 1, day, 8, 30, 15, 250000)


def test_sql_incremental_over_three_runs(database: Database, store: Store, tmp_path: Path) -> None:
    events = database.table
    spec = SqlSource(
        kind="sql",
        url=database.url,
        query=f"SELECT id, {database.engine.dialect.identifier_preparer.quote('UpdatedAt')}, "
        f"amount FROM {database.table.name}",
        incremental=Incremental(column="UpdatedAt", keys=["id"]),
    )
    database.run(
        events.insert(),
        [
            {"id": 2, "UpdatedAt": _at(2), "amount": 2.0},
            {"id": 1, "UpdatedAt": _at(1), "amount": 1.0},
            {"id": 3, "UpdatedAt": None, "amount": 3.0},
        ],
    )

    def run() -> SourceRead:
        return read_incremental(store, PROJECT, "events", spec, tmp_path)

    first = run()
    assert first.frame["id"].to_list() == [1, 2]  # in watermark order
    assert first.rejected.select("_rule", "_raw").rows() == [
        ("null_watermark", '{"id":3,"UpdatedAt":null,"amount":3.0}')
    ]
    inc = first.fingerprint["incremental"]
    assert (inc["previous_watermark"], inc["new_rows"], inc["replaced_rows"]) == (None, 2, 0)
    assert inc["snapshot_rows"] == 2 and str(inc["watermark"]).startswith("2024-01-02 08:30:15.25")

    database.run(events.insert(), [{"id": 4, "UpdatedAt": _at(4), "amount": 4.0}])
    database.run(
        events.update().where(events.c.id == 1).values(UpdatedAt=_at(3), amount=10.0),
    )
    second = run()
    assert second.frame.select("id", "amount").rows() == [(2, 2.0), (1, 10.0), (4, 4.0)]
    inc = second.fingerprint["incremental"]
    assert inc["previous_watermark"] == first.fingerprint["incremental"]["watermark"]
    assert (inc["new_rows"], inc["replaced_rows"], inc["snapshot_rows"]) == (2, 1, 3)
    assert str(inc["watermark"]).startswith("2024-01-04 08:30:15.25")
    assert second.rejected.height == 1 and second.rows_in == 4
    assert second.fingerprint["rows"] == 3  # filtered in the database: 2 newer + 1 null

    third = run()
    assert third.frame.equals(second.frame)
    inc3 = third.fingerprint["incremental"]
    assert (inc3["new_rows"], inc3["replaced_rows"], inc3["snapshot_rows"]) == (0, 0, 3)
    assert inc3["watermark"] == inc["watermark"] == inc3["previous_watermark"]
    assert inc3["snapshot_sha256"] == inc["snapshot_sha256"]
    assert third.fingerprint["rows"] == 1  # only the row without a watermark came back
    assert len(_snapshots(store)) == 2  # nothing new: nothing written
    state = _state(store, "events")
    assert state is not None and state.rows == 3 and state.snapshot_sha256 == inc["snapshot_sha256"]
    stored = pl.read_parquet(io.BytesIO(store.artifacts.get(state.snapshot_sha256)))
    assert stored.equals(second.frame)


def test_sql_missing_watermark_column(store: Store, tmp_path: Path) -> None:
    db = _database("sqlite:///events.db", f"sqlite:///{tmp_path / 'events.db'}", "events")
    spec = SqlSource(
        kind="sql",
        url=db.url,
        query="SELECT id, amount FROM events",
        incremental=Incremental(column="UpdatedAt"),
    )
    with pytest.raises(SourceError) as err:
        read_incremental(store, PROJECT, "events", spec, tmp_path)
    assert "'UpdatedAt'" in str(err.value) and "sources.events.incremental.column" in str(err.value)
    db.engine.dispose()


@pytest.mark.postgres
def test_postgresql_timestamptz_watermark(
    pg_table: tuple[str, str], store: Store, tmp_path: Path
) -> None:
    url, table = pg_table
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    insert = f"INSERT INTO {table} VALUES "
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id int, seen timestamptz)"))
        conn.execute(sa.text(insert + "(1, '2024-01-01 10:00:00+02'), (2, '2024-01-01 09:30+00')"))
    spec = SqlSource(
        kind="sql", url=url, query=f"SELECT * FROM {table}", incremental=Incremental(column="seen")
    )
    first = read_incremental(store, PROJECT, "seen", spec, tmp_path)
    assert first.fingerprint["incremental"]["watermark"] == "2024-01-01 09:30:00.000000+00:00"
    with engine.begin() as conn:  # 09:00 UTC is older than the watermark: not read again
        conn.execute(sa.text(insert + "(3, '2024-01-01 11:00+02'), (4, '2024-01-01 12:00+02')"))
    engine.dispose()
    second = read_incremental(store, PROJECT, "seen", spec, tmp_path)
    assert second.frame["id"].to_list() == [1, 2, 4]
    assert second.frame.schema["seen"] == pl.Datetime("us", "UTC")


def test_a_concurrent_update_of_the_snapshot_is_refused(store: Store, tmp_path: Path) -> None:
    from keelson.data import incremental

    (tmp_path / "orders.csv").write_text("id\n1\n")
    read_incremental(store, PROJECT, "orders", _csv_spec(column="id"), tmp_path)
    frame = pl.DataFrame({"id": [1, 2]})
    mark = Watermark.of(frame["id"])
    with pytest.raises(SourceError, match="another run updated its incremental snapshot"):
        incremental._persist(store, PROJECT, "orders", frame, "id", mark, expected=None)
    assert _state(store, "orders").rows == 1  # type: ignore[union-attr]


# --- files --------------------------------------------------------------------------------


def _csv_spec(**incremental: Any) -> FileSource:
    return FileSource(kind="csv", path="orders.csv", incremental=Incremental(**incremental))


def test_a_growing_csv_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    spec = _csv_spec(column="seq")
    path.write_text("id,seq,item\n1,1,tea\n2,2,cake\n")
    first = read_incremental(store, PROJECT, "orders", spec, tmp_path)
    assert first.frame["item"].to_list() == ["tea", "cake"]
    assert first.fingerprint["incremental"]["watermark"] == 2

    with path.open("a") as handle:
        handle.write("3,3,jam\n4,,bun\n")
    second = read_incremental(store, PROJECT, "orders", spec, tmp_path)
    assert second.frame["item"].to_list() == ["tea", "cake", "jam"]
    assert second.rejected.select("_rule", "_raw").rows() == [
        ("null_watermark", '{"id":4,"seq":null,"item":"bun"}')
    ]

    with path.open("a") as handle:
        handle.write("5,4,pie\n6,5\n")
    third = read_incremental(store, PROJECT, "orders", spec, tmp_path)
    assert third.frame["item"].to_list() == ["tea", "cake", "jam", "pie"]
    assert sorted(third.rejected["_rule"].to_list()) == ["null_watermark", "ragged_row"]
    assert third.fingerprint["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert third.fingerprint["incremental"] == {
        "column": "seq",
        "previous_watermark": 3,
        "watermark": 4,
        "new_rows": 1,
        "replaced_rows": 0,
        "snapshot_rows": 4,
        "snapshot_sha256": _state(store, "orders").snapshot_sha256,  # type: ignore[union-attr]
    }


def test_file_keys_replace_rows_and_text_dates_are_a_watermark(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    spec = _csv_spec(column="at", keys=["id"])
    path.write_text("id,at,status\n1,2024-01-01,new\n2,2024-01-02,new\n")
    read_incremental(store, PROJECT, "orders", spec, tmp_path)
    with path.open("a") as handle:
        handle.write("1,2024-01-03,paid\n1,2024-01-04,shipped\n3,2024-01-03,new\n")
    read = read_incremental(store, PROJECT, "orders", spec, tmp_path)
    assert read.frame.rows() == [
        (2, "2024-01-02", "new"),
        (3, "2024-01-03", "new"),
        (1, "2024-01-04", "shipped"),
    ]
    inc = read.fingerprint["incremental"]
    assert (inc["new_rows"], inc["replaced_rows"], inc["watermark"]) == (3, 2, "2024-01-04")


def test_a_changed_watermark_type_or_column_is_an_error_until_reset(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("id,seq\n1,1\n")
    read_incremental(store, PROJECT, "orders", _csv_spec(column="seq"), tmp_path)
    path.write_text("id,seq\n1,1\n2,two\n")
    with pytest.raises(SourceError, match=r"'seq' was Int64 and is now String"):
        read_incremental(store, PROJECT, "orders", _csv_spec(column="seq"), tmp_path)
    with pytest.raises(SourceError, match=r"changed from 'seq' to 'id'"):
        read_incremental(store, PROJECT, "orders", _csv_spec(column="id"), tmp_path)
    assert reset_incremental(store, PROJECT, "orders")
    assert not reset_incremental(store, PROJECT, "orders")
    again = read_incremental(store, PROJECT, "orders", _csv_spec(column="id"), tmp_path)
    assert (
        again.frame.height == 2 and again.fingerprint["incremental"]["previous_watermark"] is None
    )


@pytest.mark.parametrize(
    ("incremental", "content", "expected"),
    [
        ({"column": "absent"}, "id\n1\n", r"watermark column 'absent' is not among"),
        ({"column": "flag"}, "flag\ntrue\n", r"'flag' is Boolean; it must be an integer"),
        ({"column": "id", "keys": ["key"]}, "id\n1\n", r"key column\(s\) \['key'\]"),
    ],
)
def test_incremental_spec_errors(
    store: Store, tmp_path: Path, incremental: dict[str, Any], content: str, expected: str
) -> None:
    (tmp_path / "orders.csv").write_text(content)
    with pytest.raises(SourceError, match=expected):
        read_incremental(store, PROJECT, "orders", _csv_spec(**incremental), tmp_path)
    assert _state(store, "orders") is None


def test_a_source_without_incremental_is_refused(store: Store, tmp_path: Path) -> None:
    spec = FileSource(kind="csv", path="orders.csv")
    with pytest.raises(SourceError, match="is not incremental"):
        read_incremental(store, PROJECT, "orders", spec, tmp_path)


# --- watermarks round-trip exactly ----------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pl.Series("w", [3, None, 9_007_199_254_740_993], pl.Int64),
        pl.Series("w", [0.1, float("nan"), -2.5], pl.Float64),
        pl.Series("w", ["2024-01-02", "2024-01-10"], pl.String),
        pl.Series("w", [date(2024, 2, 29), date(1969, 7, 20)], pl.Date),
        pl.Series("w", [datetime(2024, 1, 2, 3, 4, 5, 123456)], pl.Datetime("us")),
        pl.Series("w", [1_700_000_000_123_456_789], pl.Int64).cast(pl.Datetime("ns", "Asia/Tokyo")),
    ],
)
def test_watermark_round_trips_exactly(values: pl.Series) -> None:
    mark = Watermark.of(values)
    assert mark is not None
    back = Watermark.from_json(json.loads(json.dumps(mark.to_json())))
    assert back == mark
    expected = values.to_frame().select(pl.col("w").max()).to_series()
    assert_series_equal(back.series, expected)


def test_no_values_no_watermark() -> None:
    assert Watermark.of(pl.Series("w", [None, None], pl.Int64)) is None
    assert Watermark.from_json({"column": "w", "value": None}) is None
