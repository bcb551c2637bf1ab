"""The connector registry and the helpers every connector shares.

Each connector family is tested in tests/data/connectors/ (and by its conformance kit).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from keelson.data.sources import (
    CONNECTORS,
    SourceRead,
    connector,
    expand_env,
    mask_url,
    read_source,
    redact,
    rejects,
)
from keelson.errors import SourceError
from keelson.spec import FileSource


def test_importing_sources_loads_no_connector_library() -> None:
    code = (
        "import sys, keelson.data.sources as s; "
        "heavy = {'httpx', 's3fs', 'fsspec', 'pymysql', 'psycopg', 'sqlalchemy', 'pyarrow'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}), "
        "[k for k in s.CONNECTORS if s.CONNECTORS.is_loaded(k)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_registry_has_builtin_kinds_and_protects_them() -> None:
    assert set(CONNECTORS) >= {"csv", "parquet", "json", "jsonl", "sql", "http"}
    with pytest.raises(ValueError, match="already registered"):
        connector("csv")(CONNECTORS["csv"])
    with pytest.raises(ValueError, match="cannot be removed"):
        CONNECTORS.unregister("sql")
    assert CONNECTORS.is_loaded("csv")


def test_adding_a_connector_is_one_function(tmp_path: Path) -> None:
    @connector("test-constant")
    def constant(name: str, spec: object, project_dir: Path) -> SourceRead:
        return SourceRead(name, pl.DataFrame({"x": [1]}), rejects([]), {"kind": "test-constant"})

    try:
        spec = FileSource.model_construct(kind="test-constant", path="-")  # type: ignore[arg-type]
        assert read_source("c", spec, tmp_path).frame["x"].to_list() == [1]
    finally:
        CONNECTORS.unregister("test-constant")
    assert "test-constant" not in CONNECTORS


def test_a_connector_can_be_registered_by_module_path() -> None:
    CONNECTORS.register("test-lazy", "keelson.data.connectors.files:read_csv")
    try:
        assert not CONNECTORS.is_loaded("test-lazy")
        from keelson.data.connectors.files import read_csv

        assert CONNECTORS["test-lazy"] is read_csv and CONNECTORS.is_loaded("test-lazy")
    finally:
        CONNECTORS.unregister("test-lazy")


def test_unknown_kind_names_the_key_path(tmp_path: Path) -> None:
    spec = FileSource.model_construct(kind="xml", path="a.xml")  # type: ignore[arg-type]
    with pytest.raises(SourceError, match=r"sources.feed.kind: no connector for kind 'xml'"):
        read_source("feed", spec, tmp_path)


def test_expand_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HOST", "db.internal")
    monkeypatch.delenv("TEST_NOPE", raising=False)
    assert (
        expand_env("pg://${TEST_HOST}/x?h=${TEST_HOST}", "w") == "pg://db.internal/x?h=db.internal"
    )
    assert expand_env("no $VAR or ${ lone", "w") == "no $VAR or ${ lone"
    with pytest.raises(SourceError) as err:
        expand_env("Bearer ${TEST_NOPE}", "sources.api.headers.Authorization")
    assert str(err.value).startswith("sources.api.headers.Authorization: the environment variable")
    assert "'TEST_NOPE'" in str(err.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        (
            "postgresql://bob:pw@h:5432/db?sslmode=require",
            "postgresql://bob:***@h:5432/db?sslmode=require",
        ),
        ("https://h/x?api_key=k&page=2&flag", "https://h/x?api_key=***&page=2&flag"),
        (
            "https://h/x?access_token=t&Signature=s&q=1",
            "https://h/x?access_token=***&Signature=***&q=1",
        ),
        ("s3://bucket/key.csv", "s3://bucket/key.csv"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_redact_longest_secret_first() -> None:
    assert redact("token abc and abcdef", ["abc", "abcdef"]) == "token *** and ***"
    assert redact("nothing", []) == "nothing"
