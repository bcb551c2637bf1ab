"""The SQL connector reads real SQLite, PostgreSQL and MariaDB databases."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from keelson.data.connectors.sql import read_sql
from keelson.data.sources import read_source
from keelson.errors import SourceError
from keelson.spec import SqlSource

# --- SQL -----------------------------------------------------------------------


def _sqlite(path: Path, rows: list[tuple[int, str | None]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER, name TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", rows)
    db.close()


def test_sqlite_relative_url_resolves_against_project(tmp_path: Path) -> None:
    _sqlite(tmp_path / "data" / "x.db", [(1, "a"), (2, None)])
    spec = SqlSource(kind="sql", url="sqlite:///data/x.db", query="SELECT * FROM t ORDER BY id")
    read = read_source("db", spec, tmp_path)
    assert read.frame.to_dict(as_series=False) == {"id": [1, 2], "name": ["a", None]}
    assert read.fingerprint["kind"] == "sql" and read.fingerprint["rows"] == 2
    again = read_source("db", spec, tmp_path)
    assert again.fingerprint["sha256"] == read.fingerprint["sha256"]
    with sqlite3.connect(tmp_path / "data" / "x.db") as db:
        db.execute("UPDATE t SET name = 'b' WHERE id = 2")
    db.close()
    changed = read_source("db", spec, tmp_path)
    assert changed.fingerprint["sha256"] != read.fingerprint["sha256"]


def test_sqlite_absolute_url(tmp_path: Path) -> None:
    _sqlite(tmp_path / "abs.db", [(1, "a")])
    spec = SqlSource(kind="sql", url=f"sqlite:///{tmp_path / 'abs.db'}", query="SELECT id FROM t")
    assert read_source("db", spec, Path("/nonexistent")).frame["id"].to_list() == [1]


def test_sql_bad_query_names_source_and_database_error(tmp_path: Path) -> None:
    _sqlite(tmp_path / "x.db", [])
    spec = SqlSource(kind="sql", url="sqlite:///x.db", query="SELECT * FROM missing_table")
    with pytest.raises(SourceError, match=r"'db'.*no such table: missing_table"):
        read_source("db", spec, tmp_path)


def test_sqlite_missing_database_file(tmp_path: Path) -> None:
    spec = SqlSource(kind="sql", url="sqlite:///nope.db", query="SELECT 1")
    with pytest.raises(SourceError, match="database file not found"):
        read_source("db", spec, tmp_path)
    assert not (tmp_path / "nope.db").exists()


def test_unreachable_database_masks_password(tmp_path: Path) -> None:
    spec = SqlSource(kind="sql", url="postgresql://bob:s3cret@127.0.0.1:1/test", query="SELECT 1")
    with pytest.raises(SourceError) as err:
        read_source("pg", spec, tmp_path)
    assert "s3cret" not in str(err.value)
    assert "bob:***@127.0.0.1" in str(err.value)


@pytest.mark.postgres
def test_postgresql_source(pg_table: tuple[str, str], tmp_path: Path) -> None:
    import sqlalchemy as sa

    url, table = pg_table
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE TABLE "{table}" (id int, amount double precision, tag text)'))
        conn.execute(sa.text(f"INSERT INTO \"{table}\" VALUES (1, 2.5, 'a'), (2, NULL, NULL)"))
    engine.dispose()
    spec = SqlSource(kind="sql", url=url, query=f'SELECT * FROM "{table}" ORDER BY id')
    read = read_source("pg", spec, tmp_path)
    assert read.frame.to_dict(as_series=False) == {
        "id": [1, 2],
        "amount": [2.5, None],
        "tag": ["a", None],
    }
    assert read.fingerprint["location"].startswith("postgresql+psycopg://postgres@")


def _execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://").replace(
            "mysql://", "mysql+pymysql://"
        )
    )
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def test_sqlite_query_text_is_passed_verbatim(tmp_path: Path) -> None:
    _sqlite(tmp_path / "x.db", [(1, "a:b"), (2, " :name")])
    query = "SELECT id, name, '10:30' AS t, 'x%' AS p FROM t WHERE name != ':nope';"
    read = read_source("db", SqlSource(kind="sql", url="sqlite:///x.db", query=query), tmp_path)
    assert read.frame.rows() == [(1, "a:b", "10:30", "x%"), (2, " :name", "10:30", "x%")]


def test_sqlite_since_filters_in_the_database_and_quotes_the_column(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "x.db") as db:
        db.execute('CREATE TABLE t (id INTEGER, "Updated At" INTEGER)')
        db.executemany("INSERT INTO t VALUES (?, ?)", [(1, 10), (2, 20), (3, None), (4, 30)])
    db.close()
    spec = SqlSource(kind="sql", url="sqlite:///x.db", query="SELECT * FROM t ORDER BY id")
    read = read_sql("db", spec, tmp_path, since=("Updated At", 15))
    assert read.frame["id"].to_list() == [2, 3, 4]
    assert read.fingerprint["sha256"] != read_source("db", spec, tmp_path).fingerprint["sha256"]


def test_environment_variables_in_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _sqlite(tmp_path / "data" / "x.db", [(1, "a")])
    monkeypatch.setenv("TEST_DB_DIR", "data")
    spec = SqlSource(kind="sql", url="sqlite:///${TEST_DB_DIR}/x.db", query="SELECT id FROM t")
    assert read_source("db", spec, tmp_path).frame["id"].to_list() == [1]
    monkeypatch.delenv("TEST_DB_DIR")
    with pytest.raises(SourceError) as err:
        read_source("db", spec, tmp_path)
    assert "'TEST_DB_DIR'" in str(err.value) and "sources.db.url" in str(err.value)


def test_password_from_the_environment_is_masked_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_DB_PASSWORD", "s3cret-from-env")
    spec = SqlSource(
        kind="sql", url="mysql://bob:${TEST_DB_PASSWORD}@127.0.0.1:1/test", query="SELECT 1"
    )
    with pytest.raises(SourceError) as err:
        read_source("my", spec, tmp_path)
    assert "s3cret-from-env" not in str(err.value)
    assert "mysql+pymysql://bob:***@127.0.0.1:1/test" in str(err.value)


def test_unknown_dialect_is_a_source_error(tmp_path: Path) -> None:
    spec = SqlSource(kind="sql", url="nosuchdb://u:pw@h/db", query="SELECT 1")
    with pytest.raises(SourceError) as err:
        read_source("odd", spec, tmp_path)
    assert "'odd'" in str(err.value) and "pw" not in str(err.value).replace("sources", "")


@pytest.mark.postgres
def test_postgresql_types_come_from_the_cursor(
    pg_table: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, table = pg_table
    _execute(
        url,
        f"CREATE TABLE {table} (i int, n numeric(10, 2), wide numeric(30, 5), free numeric, "
        "d date, ts timestamp, tz timestamptz, ok boolean, empty int, u uuid)",
        f"INSERT INTO {table} VALUES (1, 1.25, 12345678901234567890.12345, 2.5, '2024-01-02', "
        "'2024-01-02 03:04:05.5', '2024-01-02 03:04:05+02', true, NULL, "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')",
    )
    monkeypatch.setenv("TEST_PG_PASSWORD", "any-password-trust-auth")
    secret_url = url.replace("postgres@", "postgres:${TEST_PG_PASSWORD}@")
    read = read_source(
        "pg", SqlSource(kind="sql", url=secret_url, query=f"SELECT * FROM {table}"), tmp_path
    )
    assert read.frame.schema == {
        "i": pl.Int64,
        "n": pl.Float64,
        "wide": pl.Decimal(38, 5),
        "free": pl.Float64,
        "d": pl.Date,
        "ts": pl.Datetime("us"),
        "tz": pl.Datetime("us", "UTC"),
        "ok": pl.Boolean,
        "empty": pl.Int64,
        "u": pl.String,
    }
    assert read.frame.row(0) == (
        1,
        1.25,
        Decimal("12345678901234567890.12345"),
        2.5,
        date(2024, 1, 2),
        datetime(2024, 1, 2, 3, 4, 5, 500000),
        datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC),
        True,
        None,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    )
    assert "any-password" not in str(read.fingerprint)
    assert read.fingerprint["location"].startswith("postgresql+psycopg://postgres:***@")
    empty = read_source(
        "pg",
        SqlSource(kind="sql", url=url, query=f"SELECT i, d FROM {table} WHERE false"),
        tmp_path,
    )
    assert empty.frame.schema == {"i": pl.Int64, "d": pl.Date} and empty.frame.height == 0
    twice = SqlSource(kind="sql", url=url, query=f"SELECT i, i FROM {table}")
    with pytest.raises(SourceError, match=r"returns the column\(s\) \['i'\] more than once"):
        read_source("pg", twice, tmp_path)


@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
def test_mariadb_source(mariadb_table: tuple[str, str], tmp_path: Path, scheme: str) -> None:
    url, table = mariadb_table
    _execute(
        url,
        f"CREATE TABLE {table} (id int, price decimal(10, 2), d date, at datetime(6), "
        "ok boolean, name varchar(20)) CHARACTER SET utf8mb4",
        f"INSERT INTO {table} VALUES (1, 9.99, '2024-01-02', '2024-01-02 03:04:05.250000', true, "
        "'Zoë'), (2, NULL, NULL, NULL, NULL, NULL)",
    )
    spec = SqlSource(
        kind="sql",
        url=url.replace("mysql://", f"{scheme}://"),
        query=f"SELECT * FROM {table} ORDER BY id",
    )
    read = read_source("shop", spec, tmp_path)
    assert read.frame.schema == {
        "id": pl.Int64,
        "price": pl.Float64,
        "d": pl.Date,
        "at": pl.Datetime("us"),
        "ok": pl.Int64,
        "name": pl.String,
    }
    assert read.frame.rows() == [
        (1, 9.99, date(2024, 1, 2), datetime(2024, 1, 2, 3, 4, 5, 250000), 1, "Zoë"),
        (2, None, None, None, None, None),
    ]
    assert read.fingerprint["location"].startswith("mysql+pymysql://root@127.0.0.1")
    with pytest.raises(SourceError, match=r"'shop'.*doesn't exist"):
        read_source(
            "shop", SqlSource(kind="sql", url=url, query="SELECT * FROM absent_t"), tmp_path
        )
