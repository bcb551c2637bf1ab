"""Fixtures for the data stages: real files in a temporary project, real databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keelson.data.sources import SourceRead, read_source
from keelson.spec import FileSource

PG_TEST_URL = "postgresql://postgres@127.0.0.1:5432/test"

ReadFile = Callable[..., SourceRead]


@pytest.fixture
def read_file(tmp_path: Path) -> ReadFile:
    """Write ``content`` to ``tmp_path/<name>`` and read it back as source ``name``'s kind."""

    def read(
        content: bytes | str, kind: str = "csv", name: str = "src", **options: Any
    ) -> SourceRead:
        path = tmp_path / f"{name}.{kind}"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return read_source(name, FileSource(kind=kind, path=path.name, **options), tmp_path)

    return read


@pytest.fixture
def pg_table() -> Iterator[tuple[str, str]]:
    """A fresh table in the ``test`` database: (url, table name); dropped afterwards.

    Skips when the server is unreachable, except under CI=true where it fails.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(PG_TEST_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL not reachable at {PG_TEST_URL}: {str(exc.orig).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: PostgreSQL is required)")
        pytest.skip(reason)
    table = f"keelson_data_{uuid.uuid4().hex[:10]}"
    try:
        yield PG_TEST_URL, table
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()
