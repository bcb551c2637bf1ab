"""Content-addressed artifact storage on any fsspec filesystem.

A blob lives at ``objects/ab/abcdef…`` (its SHA-256); writing is idempotent
(write-if-absent, via a temporary name and a rename) and every read verifies the
hash, so a corrupted or swapped artifact is refused instead of loaded.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass

import fsspec
from fsspec.core import url_to_fs

from keelson.errors import IntegrityError, NotFoundError


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    uri: str
    bytes: int


class ArtifactStore:
    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self._fs: fsspec.AbstractFileSystem
        self._fs, self._base = url_to_fs(self.root)

    def _path(self, sha256: str) -> str:
        return f"{self._base}/objects/{sha256[:2]}/{sha256}"

    def uri(self, sha256: str) -> str:
        return f"{self.root}/objects/{sha256[:2]}/{sha256}"

    def put(self, data: bytes) -> StoredBlob:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256)
        if not self._fs.exists(path):
            self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            temporary = f"{path}.{uuid.uuid4().hex}.tmp"
            with self._fs.open(temporary, "wb") as handle:
                handle.write(data)
                _fsync(handle)
            self._fs.mv(temporary, path)
        return StoredBlob(sha256, self.uri(sha256), len(data))

    def get(self, sha256: str) -> bytes:
        path = self._path(sha256)
        if not self._fs.exists(path):
            raise NotFoundError(
                f"artifact {sha256[:12]}… is missing from the artifact store.",
                where=self.root,
                hint="Restore the store from a backup or re-run the step that wrote it.",
            )
        data: bytes = self._fs.cat_file(path)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"artifact {sha256[:12]}… has SHA-256 {actual[:12]}… on disk: it was altered.",
                where=self.uri(sha256),
                hint="Refusing to load it. Restore the file from a backup.",
            )
        return data


def _fsync(handle: object) -> None:
    """Flush a local file to disk before the rename makes it visible."""
    fileno = getattr(handle, "fileno", None)
    if fileno is None:
        return
    try:
        handle.flush()  # type: ignore[attr-defined]
        os.fsync(fileno())
    except (OSError, ValueError, AttributeError):
        return
