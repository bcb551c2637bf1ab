"""Opening a project's store: metadata database plus artifact storage.

Where it lives, first match wins: ``KEELSON_STORE_URL`` / ``KEELSON_ARTIFACTS``
environment variables, the spec's ``store`` section, then ``.keelson/`` inside
the project folder (SQLite in WAL mode and a local artifact folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from keelson import spec as specs
from keelson.errors import StoreError
from keelson.store.artifacts import ArtifactStore
from keelson.store.database import create_store_engine, ensure_schema
from keelson.store.tables import Artifact

STORE_DIR = ".keelson"


@dataclass(frozen=True)
class StoreLocation:
    url: str
    artifacts: str


def locate(project_dir: Path, configured: specs.Store | None = None) -> StoreLocation:
    configured = configured or specs.Store()
    home = project_dir.resolve() / STORE_DIR
    url = os.environ.get("KEELSON_STORE_URL") or configured.url or f"sqlite:///{home}/keelson.db"
    artifacts = (
        os.environ.get("KEELSON_ARTIFACTS") or configured.artifacts or str(home / "artifacts")
    )
    if "://" not in artifacts and not Path(artifacts).is_absolute():
        artifacts = str(project_dir.resolve() / artifacts)
    return StoreLocation(url, artifacts)


class Store:
    """Metadata (SQLAlchemy sessions) and artifacts (content-addressed blobs)."""

    def __init__(self, engine: Engine, artifacts: ArtifactStore):
        self.engine = engine
        self.artifacts = artifacts
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def put_artifact(self, data: bytes, *, kind: str, fmt: str, run_id: str | None) -> Artifact:
        """Store a blob by content and record it; the returned row has its id."""
        blob = self.artifacts.put(data)
        artifact = Artifact(
            run_id=run_id, kind=kind, uri=blob.uri, sha256=blob.sha256, bytes=blob.bytes, format=fmt
        )
        with self.session() as session:
            session.add(artifact)
        return artifact

    def close(self) -> None:
        self.engine.dispose()


def open_store(location: StoreLocation, *, check_schema: bool = True) -> Store:
    if location.url.startswith("sqlite:///"):
        Path(location.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_store_engine(location.url)
    try:
        if check_schema:
            ensure_schema(engine)
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(
            f"cannot open the metadata store: {reason}",
            where=engine.url.render_as_string(hide_password=True),
            hint="Check KEELSON_STORE_URL or the spec's store.url, and that the server is up.",
        ) from None
    return Store(engine, ArtifactStore(location.artifacts))
