"""File connectors read real files, locally and from a real S3-compatible server, losing nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from keelson.data.connectors.files import storage_options
from keelson.data.sources import SourceRead, read_source
from keelson.errors import SourceError
from keelson.spec import FileSource

from .api import JsonApi, Reply
from .conftest import S3

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


def test_csv_quote_option(read_file: ReadFile) -> None:
    read = read_file("id;note\n1;'a; b'\n2;'it''s'\n3;\"plain\"\n", separator=";", quote="'")
    assert read.frame["note"].to_list() == ["a; b", "it's", '"plain"']
    with pytest.raises(SourceError, match=r"unterminated quote \('\) in column 'note' near line 3"):
        read_file("id,note\n1,'ok'\n2,'open\n3,x\n", quote="'")


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


# --- fsspec URLs: a real S3-compatible server on loopback ---------------------------


def test_s3_csv_with_credentials_from_the_environment(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = "id,city\n1,Zürich\n2,Köln\n".encode()
    url = s3.put("in/cities.csv", content)
    monkeypatch.setenv("TEST_S3_KEY", s3.key)
    monkeypatch.setenv("TEST_S3_SECRET", s3.secret)
    options = {"endpoint_url": s3.endpoint, "key": "${TEST_S3_KEY}", "secret": "${TEST_S3_SECRET}"}
    spec = FileSource(kind="csv", path=url, storage_options=options)
    read = read_source("cities", spec, tmp_path)
    assert read.frame.to_dict(as_series=False) == {"id": [1, 2], "city": ["Zürich", "Köln"]}
    assert read.fingerprint == {
        "kind": "csv",
        "location": url,
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "rows": 2,
    }


def test_s3_jsonl_keeps_rejects(s3: S3, tmp_path: Path) -> None:
    url = s3.put("events.jsonl", b'{"a": 1}\nnot json\n{"a": 3}\n')
    spec = FileSource(kind="jsonl", path=url, storage_options=s3.options())
    read = read_source("events", spec, tmp_path)
    assert read.frame["a"].to_list() == [1, 3]
    assert read.rejected.select("_row", "_rule").rows() == [(2, "bad_json")]


def test_s3_missing_object_names_the_url(s3: S3, tmp_path: Path) -> None:
    url = s3.url("nowhere/absent.parquet")
    spec = FileSource(kind="parquet", path=url, storage_options=s3.options())
    with pytest.raises(SourceError) as err:
        read_source("facts", spec, tmp_path)
    message = str(err.value)
    assert "'facts'" in message and "not found" in message and url in message
    assert "sources.facts.storage_options" in message


def test_s3_missing_bucket_names_the_url(s3: S3, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket}-absent/x.csv"
    spec = FileSource(kind="csv", path=url, storage_options=s3.options())
    with pytest.raises(SourceError) as err:
        read_source("facts", spec, tmp_path)
    assert "'facts'" in str(err.value) and url in str(err.value)


def test_missing_environment_variable_names_it_and_the_key_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_ABSENT_SECRET", raising=False)
    spec = FileSource(
        kind="csv", path="s3://bucket/x.csv", storage_options={"secret": "${TEST_ABSENT_SECRET}"}
    )
    with pytest.raises(SourceError) as err:
        read_source("facts", spec, tmp_path)
    assert "'TEST_ABSENT_SECRET'" in str(err.value)
    assert "sources.facts.storage_options.secret" in str(err.value)


def test_storage_options_expand_variables_and_booleans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REGION", "eu-west-3")
    options = {
        "anon": "False",
        "use_ssl": "true",
        "region": "${TEST_REGION}",
        "x": "a${TEST_REGION}",
    }
    spec = FileSource(kind="csv", path="s3://b/k.csv", storage_options=options)
    assert storage_options("s", spec) == {
        "anon": False,
        "use_ssl": True,
        "region": "eu-west-3",
        "x": "aeu-west-3",
    }


def test_file_url_and_unknown_protocol(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("a\n1\n")
    read = read_source(
        "local", FileSource(kind="csv", path=(tmp_path / "a.csv").as_uri()), tmp_path
    )
    assert read.frame["a"].to_list() == [1]
    with pytest.raises(SourceError, match=r"'odd': cannot read: .*nosuchproto"):
        read_source("odd", FileSource(kind="csv", path="nosuchproto://x/a.csv"), tmp_path)


def test_http_url_through_fsspec_and_secrets_kept_out_of_errors(
    api: JsonApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_FILE_TOKEN", "tok-s3cr3t")
    api.routes["/files/tok-s3cr3t/a.csv"] = lambda call: Reply(raw=b"a,b\n1,x\n")
    api.routes["/files/tok-s3cr3t/broken.csv"] = lambda call: Reply(raw=b"oops", status=500)
    good = FileSource(kind="csv", path=api.url("/files/${TEST_FILE_TOKEN}/a.csv"))
    read = read_source("remote", good, tmp_path)
    assert read.frame.to_dict(as_series=False) == {"a": [1], "b": ["x"]}
    assert "tok-s3cr3t" not in str(read.fingerprint)
    broken = FileSource(kind="csv", path=api.url("/files/${TEST_FILE_TOKEN}/broken.csv"))
    with pytest.raises(SourceError) as err:
        read_source("remote", broken, tmp_path)
    message = str(err.value)
    assert "cannot read" in message and "500" in message
    assert "tok-s3cr3t" not in message and "${TEST_FILE_TOKEN}" in message
