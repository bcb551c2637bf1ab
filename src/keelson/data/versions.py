"""Dataset versions: the full table hashed by content, stored as Parquet, with lineage.

The version id is the first 16 hex digits of the SHA-256 of the table's Arrow IPC
stream (every row and column, schema included), so the same content always gets
the same version and a re-run with unchanged inputs reuses it.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import polars as pl
from sqlalchemy import select

from keelson.errors import NotFoundError
from keelson.store.store import Store
from keelson.store.tables import Artifact, DatasetVersion

DATASET_FORMAT = "parquet"


def content_hash(frame: pl.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.write_ipc_stream(buffer, compression="uncompressed")
    return hashlib.sha256(buffer.getbuffer()).hexdigest()


def save_version(
    store: Store, project: str, frame: pl.DataFrame, lineage: dict[str, Any], run_id: str | None
) -> tuple[DatasetVersion, bool]:
    """Store the table unless this content already has a version; (version, created)."""
    digest = content_hash(frame)
    with store.session() as session:
        existing = session.scalar(
            select(DatasetVersion).where(DatasetVersion.content_hash == digest)
        )
        if existing is not None:
            return existing, False
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd")
    artifact = store.put_artifact(
        buffer.getvalue(), kind="dataset", fmt=DATASET_FORMAT, run_id=run_id
    )
    with store.session() as session:
        version = DatasetVersion(
            id=digest[:16],
            project=project,
            content_hash=digest,
            rows=frame.height,
            columns=frame.width,
            schema={name: str(dtype) for name, dtype in frame.schema.items()},
            lineage=lineage,
            artifact_id=artifact.id,
            run_id=run_id,
        )
        session.add(version)
    return version, True


def load_version(store: Store, version_id: str) -> pl.DataFrame:
    with store.session() as session:
        version = session.get(DatasetVersion, version_id)
        artifact = session.get(Artifact, version.artifact_id) if version else None
    if artifact is None:
        raise NotFoundError(f"no dataset version '{version_id}'.")
    return pl.read_parquet(io.BytesIO(store.artifacts.get(artifact.sha256)))
