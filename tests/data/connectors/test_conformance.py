"""Every connector backend passes the same checks (see kit.py for what they are).

To add a backend: write a ``backend_<name>`` fixture below returning a kit.Backend and
add ``<name>`` to BACKENDS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keelson.spec import FileSource, HttpSource, Pagination, Retry, SqlSource

from .api import JsonApi, by_page
from .conftest import S3
from .kit import (
    Backend,
    check_missing_source,
    check_reads_reference,
    reference_csv,
    reference_jsonl,
    reference_parquet,
    reference_records,
    write_sql_table,
)

BACKENDS = [
    "local_csv",
    "local_parquet",
    "local_jsonl",
    "s3_csv",
    "s3_parquet",
    "sqlite",
    "postgresql",
    "mariadb",
    "http_paginated",
]


def _local(tmp_path: Path, kind: str, data: bytes) -> Backend:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"reference.{kind}").write_bytes(data)
    return Backend(
        kind,
        FileSource(kind=kind, path=f"data/reference.{kind}"),
        tmp_path,
        FileSource(kind=kind, path=f"data/absent.{kind}"),
    )


@pytest.fixture
def backend_local_csv(tmp_path: Path) -> Backend:
    return _local(tmp_path, "csv", reference_csv())


@pytest.fixture
def backend_local_parquet(tmp_path: Path) -> Backend:
    return _local(tmp_path, "parquet", reference_parquet())


@pytest.fixture
def backend_local_jsonl(tmp_path: Path) -> Backend:
    return _local(tmp_path, "jsonl", reference_jsonl())


def _s3(s3: S3, tmp_path: Path, kind: str, data: bytes) -> Backend:
    url = s3.put(f"tables/reference.{kind}", data)
    options = s3.options()
    return Backend(
        kind,
        FileSource(kind=kind, path=url, storage_options=options),
        tmp_path,
        FileSource(kind=kind, path=s3.url("tables/absent"), storage_options=options),
    )


@pytest.fixture
def backend_s3_csv(s3: S3, tmp_path: Path) -> Backend:
    return _s3(s3, tmp_path, "csv", reference_csv())


@pytest.fixture
def backend_s3_parquet(s3: S3, tmp_path: Path) -> Backend:
    return _s3(s3, tmp_path, "parquet", reference_parquet())


def _sql(url: str, table: str, project_dir: Path, unreachable: str) -> Backend:
    query = f"SELECT * FROM {table} ORDER BY id"
    return Backend(
        "sql",
        SqlSource(kind="sql", url=url, query=query),
        project_dir,
        SqlSource(kind="sql", url=unreachable, query=query),
    )


@pytest.fixture
def backend_sqlite(tmp_path: Path) -> Backend:
    write_sql_table(f"sqlite:///{tmp_path / 'reference.db'}", "reference")
    return _sql("sqlite:///reference.db", "reference", tmp_path, "sqlite:///absent.db")


@pytest.fixture
def backend_postgresql(pg_table: tuple[str, str], tmp_path: Path) -> Backend:
    url, table = pg_table
    write_sql_table(url.replace("postgresql://", "postgresql+psycopg://"), table)
    return _sql(url, table, tmp_path, "postgresql://postgres@127.0.0.1:1/test")


@pytest.fixture
def backend_mariadb(mariadb_table: tuple[str, str], tmp_path: Path) -> Backend:
    url, table = mariadb_table
    write_sql_table(url.replace("mysql://", "mysql+pymysql://"), table)
    return _sql(url, table, tmp_path, "mysql://root@127.0.0.1:1/test")


@pytest.fixture
def backend_http_paginated(api: JsonApi, tmp_path: Path) -> Backend:
    api.routes["/reference"] = by_page(reference_records())
    paging = Pagination(style="page", size=2)
    once = Retry(attempts=1)
    return Backend(
        "http",
        HttpSource(
            kind="http", url=api.url("/reference"), records_path="data.items", pagination=paging
        ),
        tmp_path,
        HttpSource(kind="http", url=api.url("/absent"), pagination=paging, retry=once),
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    found: Backend = request.getfixturevalue(f"backend_{request.param}")
    return found


def test_reads_the_reference_table(backend: Backend) -> None:
    check_reads_reference(backend)


def test_a_missing_source_is_a_source_error_naming_it(backend: Backend) -> None:
    check_missing_source(backend)
