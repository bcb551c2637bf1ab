"""Connectors read real files and databases and lose nothing."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from keelson.data.sources import CONNECTORS, SourceRead, connector, read_source, rejects
from keelson.errors import SourceError
from keelson.spec import FileSource, SqlSource

ReadFile = Callable[..., SourceRead]

# --- CSV ---------------------------------------------------------------------


def test_csv_infers_types_only_when_every_value_converts(read_file: ReadFile) -> None:
    read = read_file("i,f,b,zip,mixed,empty\n1,2.5,true,007,3,\n-2,3,FALSE,01,x,\n,1e3,,10,4,\n")
    assert read.frame.schema == {
        "i": pl.Int64,
        "f": pl.Float64,
        "b": pl.Boolean,
        "zip": pl.String,
        "mixed": pl.String,
        "empty": pl.String,
    }
    assert read.frame["i"].to_list() == [1, -2, None]
    assert read.frame["zip"].to_list() == ["007", "01", "10"]
    assert read.frame["b"].to_list() == [True, False, None]
    assert read.rejected.height == 0


def test_csv_ragged_rows_are_rejected_with_line_and_raw_text(read_file: ReadFile) -> None:
    content = 'a,b,c\r\n1,2,3\r\n4,5\r\n"multi\r\nline",6,7\r\n\r\n8,9,10,11\r\n12,13,14\r\n'
    read = read_file(content)
    assert read.frame["a"].to_list() == ["1", "multi\r\nline", "12"]
    assert read.frame["c"].to_list() == [3, 7, 14]
    assert read.rejected.schema == {
        "_row": pl.Int64,
        "_rule": pl.String,
        "_reason": pl.String,
        "_raw": pl.String,
    }
    assert read.rejected.to_dicts() == [
        {"_row": 3, "_rule": "ragged_row", "_reason": "expected 3 fields, got 2", "_raw": "4,5"},
        {
            "_row": 7,
            "_rule": "ragged_row",
            "_reason": "expected 3 fields, got 4",
            "_raw": "8,9,10,11",
        },
    ]
    assert read.rows_in == 5


def test_csv_repeated_ragged_line_gets_each_line_number(read_file: ReadFile) -> None:
    read = read_file("a,b\n1\n2,3\n1\n")
    assert read.rejected["_row"].to_list() == [2, 4]


def test_csv_invalid_utf8_names_line_column_and_byte(read_file: ReadFile) -> None:
    with pytest.raises(SourceError) as err:
        read_file(b"name,city\nann,Paris\nbob,Z\xfcrich\n", name="people")
    message = str(err.value)
    assert "people" in message and "people.csv" in message
    assert "line 3" in message and "column 6" in message and "0xFC" in message
    assert "sources.people.encoding" in message


def test_csv_latin1_encoding_option(read_file: ReadFile) -> None:
    read = read_file(b"name;city\nbob;Z\xfcrich\n", separator=";", encoding="latin-1")
    assert read.frame.row(0) == ("bob", "Zürich")


def test_csv_unknown_encoding(read_file: ReadFile) -> None:
    with pytest.raises(SourceError, match="unknown encoding 'klingon'"):
        read_file("a\n1\n", encoding="klingon")


def test_csv_bom_quotes_and_null_values(read_file: ReadFile) -> None:
    read = read_file('\ufeffid,text\n1,"a, ""quoted"" value"\n2,NA\n3,\n', null_values=["NA", ""])
    assert read.frame.columns == ["id", "text"]
    assert read.frame["text"].to_list() == ['a, "quoted" value', None, None]


def test_csv_without_header(read_file: ReadFile) -> None:
    named = read_file("1|x\n2|y\n", has_header=False, columns=["n", "s"], separator="|")
    assert named.frame.to_dict(as_series=False) == {"n": [1, 2], "s": ["x", "y"]}
    anonymous = read_file("1,x\n", has_header=False)
    assert anonymous.frame.columns == ["column_1", "column_2"]


def test_csv_header_only_is_zero_rows(read_file: ReadFile) -> None:
    read = read_file("a,b\n")
    assert read.frame.shape == (0, 2)
    assert read.rows_in == 0


def test_csv_empty_file(read_file: ReadFile) -> None:
    with pytest.raises(SourceError, match="is empty"):
        read_file(b"")


def test_csv_duplicate_header(read_file: ReadFile) -> None:
    with pytest.raises(SourceError, match="column 'a' appears twice"):
        read_file("a,b,a\n1,2,3\n")


def test_csv_unterminated_quote_is_an_error_not_a_swallowed_tail(read_file: ReadFile) -> None:
    with pytest.raises(SourceError, match=r"unterminated quote .* near line 3"):
        read_file('a,b\n1,2\n3,"oops\n4,5\n6,7\n')


def test_missing_file_names_source_path_and_key(tmp_path: Path) -> None:
    spec = FileSource(kind="csv", path="data/nope.csv")
    with pytest.raises(SourceError) as err:
        read_source("orders", spec, tmp_path)
    message = str(err.value)
    assert "orders" in message and str(tmp_path / "data" / "nope.csv") in message
    assert "sources.orders.path" in message


def test_file_fingerprint(read_file: ReadFile, tmp_path: Path) -> None:
    content = b"a\n1\n2\n"
    read = read_file(content)
    assert read.fingerprint == {
        "kind": "csv",
        "location": (tmp_path / "src.csv").resolve().as_posix(),
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "rows": 2,
    }


# --- JSON and Parquet ------------------------------------------------------------


def test_jsonl_bad_lines_are_rejected(read_file: ReadFile) -> None:
    content = '{"a": 1, "b": "x"}\n{"a": 2,\n\n[1, 2]\n{"a": 3}\n'
    read = read_file(content, kind="jsonl")
    assert read.frame.to_dict(as_series=False) == {"a": [1, 3], "b": ["x", None]}
    assert read.rejected.select("_row", "_rule", "_raw").rows() == [
        (2, "bad_json", '{"a": 2,'),
        (4, "bad_json", "[1, 2]"),
    ]
    assert "not an object" in read.rejected["_reason"][1]
    assert read.rows_in == 4


def test_jsonl_clean_file_has_no_rejects(read_file: ReadFile) -> None:
    read = read_file('{"a": 1}\r\n{"a": 2}\r\n', kind="jsonl")
    assert read.frame["a"].to_list() == [1, 2]
    assert read.rejected.height == 0


def test_json_array_of_objects(read_file: ReadFile) -> None:
    read = read_file('[{"a": 1, "b": "x"}, {"a": 2.5}]', kind="json")
    assert read.frame.to_dict(as_series=False) == {"a": [1.0, 2.5], "b": ["x", None]}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"a": 1}', "expected a JSON array"),
        ('[{"a": 1},\n {"a": }]', "invalid JSON at line 2, column 8"),
        ("[1, 2]", "must be an object"),
    ],
)
def test_json_errors(read_file: ReadFile, content: str, expected: str) -> None:
    with pytest.raises(SourceError, match=expected):
        read_file(content, kind="json")


def test_parquet_roundtrip_and_garbage(read_file: ReadFile, tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": [1, 2], "b": ["x", None]})
    frame.write_parquet(tmp_path / "p.parquet")
    read = read_source("p", FileSource(kind="parquet", path="p.parquet"), tmp_path)
    assert read.frame.equals(frame)
    with pytest.raises(SourceError, match="not a valid Parquet file"):
        read_file(b"not parquet at all", kind="parquet")


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


# --- registry ------------------------------------------------------------------


def test_registry_has_builtin_kinds_and_protects_them() -> None:
    assert {"csv", "parquet", "json", "jsonl", "sql"} <= set(CONNECTORS)
    with pytest.raises(ValueError, match="already registered"):
        connector("csv")(CONNECTORS["csv"])


def test_adding_a_connector_is_one_function(tmp_path: Path) -> None:
    @connector("test-constant")
    def constant(name: str, spec: object, project_dir: Path) -> SourceRead:
        return SourceRead(name, pl.DataFrame({"x": [1]}), rejects([]), {"kind": "test-constant"})

    try:
        assert CONNECTORS["test-constant"]("c", None, tmp_path).frame["x"].to_list() == [1]
    finally:
        del CONNECTORS["test-constant"]
