"""Sources: read one source of ``keelson.yaml`` into a Polars frame, losing nothing.

Connectors live in :data:`CONNECTORS`, a registry keyed by the source ``kind``. The
built-in ones are named ``"module:function"`` and imported on first use, so importing
this module stays cheap (no httpx, s3fs or database drivers). Adding a connector is one
module in :mod:`keelson.data.connectors` plus one line in ``_BUILTIN`` (or, outside
keelson, one function decorated with :func:`connector`). A connector is
``fn(name, spec, project_dir) -> SourceRead``.

Rows that cannot be parsed at all (a ragged CSV line, a bad JSONL line, an API record
that is not an object) are kept in ``SourceRead.rejected`` with their row number and
raw text, never dropped. The helpers below (``${VAR}`` expansion, secret masking) are
shared by every connector so that secrets never reach a message or a fingerprint.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from keelson.errors import SourceError
from keelson.spec import Source

REJECTED_SCHEMA: dict[str, pl.DataType] = {
    "_row": pl.Int64(),
    "_rule": pl.String(),
    "_reason": pl.String(),
    "_raw": pl.String(),
}


@dataclass(frozen=True)
class SourceRead:
    """The rows of one source, the rows that could not be parsed, and its lineage."""

    name: str
    frame: pl.DataFrame
    rejected: pl.DataFrame
    fingerprint: dict[str, Any]

    @property
    def rows_in(self) -> int:
        return self.frame.height + self.rejected.height


Connector = Callable[[str, Any, Path], SourceRead]

_BUILTIN: dict[str, str] = {
    "csv": "keelson.data.connectors.files:read_csv",
    "parquet": "keelson.data.connectors.files:read_parquet",
    "json": "keelson.data.connectors.files:read_json",
    "jsonl": "keelson.data.connectors.files:read_jsonl",
    "sql": "keelson.data.connectors.sql:read_sql",
    "http": "keelson.data.connectors.http:read_http",
}


class ConnectorRegistry(Mapping[str, Connector]):
    """Connectors by kind; an entry given as ``"module:function"`` is imported on first use.

    Names are protected: registering a kind twice is an error, and built-in kinds cannot
    be removed.
    """

    def __init__(self, builtin: Mapping[str, str]) -> None:
        self._builtin = frozenset(builtin)
        self._entries: dict[str, Connector | str] = dict(builtin)

    def register(self, kind: str, reader: Connector | str) -> None:
        if kind in self._entries:
            raise ValueError(f"a connector for kind {kind!r} is already registered")
        self._entries[kind] = reader

    def unregister(self, kind: str) -> None:
        if kind in self._builtin:
            raise ValueError(f"the built-in connector {kind!r} cannot be removed")
        del self._entries[kind]

    def is_loaded(self, kind: str) -> bool:
        return not isinstance(self._entries[kind], str)

    def __getitem__(self, kind: str) -> Connector:
        entry = self._entries[kind]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[kind] = entry
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


CONNECTORS = ConnectorRegistry(_BUILTIN)


def connector(kind: str) -> Callable[[Connector], Connector]:
    """Register ``fn(name, spec, project_dir) -> SourceRead`` as the reader of ``kind``."""

    def register(fn: Connector) -> Connector:
        CONNECTORS.register(kind, fn)
        return fn

    return register


def read_source(name: str, spec: Source, project_dir: Path) -> SourceRead:
    """Read source ``name`` with the connector registered for its kind.

    This reads the whole source; for a source with ``incremental`` set, the runner calls
    :func:`keelson.data.incremental.read_incremental` instead.
    """
    if spec.kind not in CONNECTORS:
        raise SourceError(
            f"no connector for kind {spec.kind!r}; known: {sorted(CONNECTORS)}.",
            where=f"sources.{name}.kind",
        )
    return CONNECTORS[spec.kind](name, spec, project_dir)


def rejects(rows: Sequence[tuple[int | None, str, str, str]]) -> pl.DataFrame:
    """A ``rejected`` frame from ``(row, rule, reason, raw)`` tuples."""
    return pl.DataFrame(rows, schema=REJECTED_SCHEMA, orient="row")


# --- shared helpers ----------------------------------------------------------

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_NAME = re.compile(r"pass|secret|token|key|sig|auth|credential|session", re.IGNORECASE)
MASK = "***"


def expand_env(value: str, where: str) -> str:
    """Replace each ``${VAR}`` in ``value`` with that environment variable.

    A variable that is not set raises :class:`SourceError` naming it and ``where``
    (the key path in keelson.yaml).
    """

    def value_of(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise SourceError(
                f"the environment variable {var!r} is not set.",
                where=where,
                hint=f"Export {var} before running keelson (secrets stay out of keelson.yaml).",
            )
        return os.environ[var]

    return _ENV_VAR.sub(value_of, value)


def env_secrets(values: Iterable[str]) -> list[str]:
    """The values of the environment variables that ``values`` refer to as ``${VAR}``."""
    names = {var for value in values for var in _ENV_VAR.findall(value)}
    return [os.environ[var] for var in sorted(names) if os.environ.get(var)]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***`` (longest first)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or option name looks like it holds a credential."""
    return bool(_SECRET_NAME.search(name))


def mask_url(url: str) -> str:
    """``url`` with its password and the values of secret-looking query parameters masked."""
    parts = urlsplit(url)
    if parts.password:
        head, _, tail = url.partition(f":{parts.password}@")
        url = f"{head}:{MASK}@{tail}"
    if parts.query:
        query = "&".join(_mask_pair(pair) for pair in parts.query.split("&"))
        url = url.replace(f"?{parts.query}", f"?{query}", 1)
    return url


def _mask_pair(pair: str) -> str:
    key, equals, _ = pair.partition("=")
    return f"{key}={MASK}" if equals and is_secret_name(key) else pair


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
