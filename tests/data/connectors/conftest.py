"""Real services for connector tests: an S3-compatible server (moto), MariaDB, a JSON API.

A service that is not reachable skips its tests, except under CI=true where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .api import JsonApi

MARIADB_URL = os.environ.get("KEELSON_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")


def unavailable(service: str, where: str, exc: BaseException) -> None:
    """Skip (or, in CI, fail) a test whose service cannot be reached."""
    reason = (
        f"{service} not reachable at {where}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: {service} is required)")
    pytest.skip(reason)


@dataclass(frozen=True)
class S3:
    """One fresh bucket on the loopback S3 server, with the options to reach it."""

    endpoint: str
    bucket: str
    key: str = "testing"
    secret: str = "testing"

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def options(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret}

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options())

    def put(self, key: str, data: bytes) -> str:
        self.filesystem().pipe(f"{self.bucket}/{key}", data)
        return self.url(key)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> S3:
    store = S3(s3_endpoint, f"keelson-{uuid.uuid4().hex[:12]}")
    store.filesystem().mkdir(store.bucket)
    return store


@pytest.fixture
def mariadb_table() -> Iterator[tuple[str, str]]:
    """A fresh table name in MariaDB's ``test`` database: (url, table); dropped afterwards."""
    import sqlalchemy as sa

    engine = sa.create_engine(MARIADB_URL.replace("mysql://", "mysql+pymysql://"))
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        unavailable("MariaDB", MARIADB_URL, exc.orig or exc)
    table = f"keelson_data_{uuid.uuid4().hex[:10]}"
    try:
        yield MARIADB_URL, table
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS `{table}`"))
        engine.dispose()


@pytest.fixture
def api() -> Iterator[JsonApi]:
    with JsonApi().running() as server:
        yield server
