from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from keelson.errors import IntegrityError, StoreError
from keelson.store.database import (
    _alembic_config,
    create_store_engine,
    current_revision,
    head_revision,
    upgrade,
)
from keelson.store.store import StoreLocation, locate, open_store


def test_new_store_is_created_at_the_head_revision(tmp_path: Path) -> None:
    store = open_store(locate(tmp_path))
    assert current_revision(store.engine) == head_revision()
    assert {"runs", "model_versions", "aliases"} <= set(inspect(store.engine).get_table_names())
    assert (tmp_path / ".keelson" / "keelson.db").exists()


def test_outdated_store_is_refused_until_upgraded(tmp_path: Path) -> None:
    location = locate(tmp_path)
    engine = create_store_engine(location.url)
    (tmp_path / ".keelson").mkdir()
    with engine.connect() as connection:
        command.upgrade(_alembic_config(connection), "0001")
        connection.commit()
    with pytest.raises(StoreError, match="keelson db upgrade"):
        open_store(location)
    assert upgrade(engine) == ("0001", head_revision())
    assert "source_states" in inspect(open_store(location).engine).get_table_names()


def test_environment_overrides_the_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEELSON_STORE_URL", "sqlite:////elsewhere/x.db")
    monkeypatch.setenv("KEELSON_ARTIFACTS", "blobs")
    location = locate(tmp_path)
    assert location.url == "sqlite:////elsewhere/x.db"
    assert location.artifacts == str(tmp_path.resolve() / "blobs")


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot open the metadata store"):
        open_store(StoreLocation("postgresql://nobody@127.0.0.1:1/none", "/tmp/a"))


def test_artifacts_are_content_addressed_and_verified(tmp_path: Path) -> None:
    store = open_store(locate(tmp_path))
    blob = store.artifacts.put(b"model bytes")
    assert store.artifacts.put(b"model bytes") == blob
    assert store.artifacts.get(blob.sha256) == b"model bytes"
    Path(blob.uri).write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="altered"):
        store.artifacts.get(blob.sha256)


@pytest.mark.postgres
def test_postgresql_store_migrates_under_the_lock(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(StoreLocation(postgres_url, str(tmp_path)))
    assert store.engine.dialect.name == "postgresql"
    assert current_revision(store.engine) == head_revision()
    assert upgrade(store.engine) == (head_revision(), head_revision())
    store.close()
