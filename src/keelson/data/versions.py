"""Dataset versions: the full table hashed by content, stored as Parquet, with lineage.

The version id is the first 16 hex digits of the SHA-256 of the table's Arrow IPC
stream (every row and column, schema included), so the same content always gets
the same version and a re-run with unchanged inputs reuses it.

Versions are found by id, unique prefix or ``latest`` (:func:`get_version`), listed
newest first (:func:`list_versions`), compared (:func:`diff`) and traced to their
sources and to the models trained on them (:func:`lineage`).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import select

from keelson.data.profile import json_scalar
from keelson.errors import KeelsonError, NotFoundError
from keelson.store.store import Store
from keelson.store.tables import Alias, Artifact, DatasetVersion, ModelVersion

DATASET_FORMAT = "parquet"
DIFF_FORMAT = "keelson.diff/1"
MIN_PREFIX = 4
EXAMPLES = 10
_LOG_HINT = "Run `keelson data log` to list the versions."


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
        raise NotFoundError(f"no dataset version '{version_id}'.", hint=_LOG_HINT)
    return pl.read_parquet(io.BytesIO(store.artifacts.get(artifact.sha256)))


# --- finding versions ----------------------------------------------------------


def list_versions(
    store: Store, project: str | None = None, limit: int = 50
) -> list[DatasetVersion]:
    """Dataset versions newest first, of one project or of the whole store."""
    query = select(DatasetVersion)
    if project is not None:
        query = query.where(DatasetVersion.project == project)
    query = query.order_by(DatasetVersion.created_at.desc(), DatasetVersion.id).limit(limit)
    with store.session() as session:
        return list(session.scalars(query))


def get_version(store: Store, ref: str, *, project: str | None = None) -> DatasetVersion:
    """The version named by ``ref``: an id, a full content hash, a unique prefix or ``latest``."""
    text = ref.strip().lower()
    if text == "latest":
        newest = list_versions(store, project, limit=1)
        if not newest:
            raise NotFoundError("there is no dataset version yet.", hint="Run `keelson run`.")
        return newest[0]
    if len(text) < MIN_PREFIX:
        raise NotFoundError(
            f"dataset version reference '{ref}' is too short.",
            hint=f"Give at least {MIN_PREFIX} characters of the id. {_LOG_HINT}",
        )
    return _by_prefix(store, ref, text, project)


def _by_prefix(store: Store, ref: str, text: str, project: str | None) -> DatasetVersion:
    column = DatasetVersion.content_hash if len(text) > 16 else DatasetVersion.id
    query = select(DatasetVersion).where(column.startswith(text, autoescape=True))
    if project is not None:
        query = query.where(DatasetVersion.project == project)
    with store.session() as session:
        matches = list(session.scalars(query.order_by(DatasetVersion.id).limit(3)))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(f"no dataset version '{ref}'.", hint=_LOG_HINT)
    shown = ", ".join(match.id for match in matches[:2])
    raise NotFoundError(
        f"dataset version prefix '{ref}' is ambiguous: it matches {shown}"
        + (" and more" if len(matches) > 2 else "")
        + ".",
        hint=f"Give more characters of the id. {_LOG_HINT}",
    )


# --- lineage -------------------------------------------------------------------


def lineage(store: Store, ref: str) -> dict[str, Any]:
    """Where a version came from (sources, spec, keelson, run) and the models trained on it."""
    version = get_version(store, ref)
    recorded = version.lineage or {}
    return {
        "version": version.id,
        "project": version.project,
        "content_hash": version.content_hash,
        "created_at": version.created_at.isoformat(),
        "sources": recorded.get("sources", {}),
        "spec_sha256": recorded.get("spec_sha256"),
        "keelson_version": recorded.get("keelson_version"),
        "run_id": version.run_id or recorded.get("run_id"),
        "models": _models_trained_on(store, version.id),
    }


def _models_trained_on(store: Store, version_id: str) -> list[dict[str, Any]]:
    query = (
        select(ModelVersion)
        .where(ModelVersion.dataset_version_id == version_id)
        .order_by(ModelVersion.name, ModelVersion.version)
    )
    with store.session() as session:
        models = list(session.scalars(query))
        names = {model.name for model in models}
        aliases = list(session.scalars(select(Alias).where(Alias.name.in_(names))))
        pointers: dict[tuple[str, int], list[str]] = {}
        for alias in aliases:
            pointers.setdefault((alias.name, alias.version), []).append(alias.alias)
    return [
        {
            "name": model.name,
            "version": model.version,
            "family": model.family,
            "run_id": model.run_id,
            "created_at": model.created_at.isoformat(),
            "aliases": sorted(pointers.get((model.name, model.version), [])),
        }
        for model in models
    ]


# --- diff ----------------------------------------------------------------------


@dataclass(frozen=True)
class VersionDiff:
    """How two dataset versions differ: schema, then rows (by key, or as multisets).

    Rows are compared on the columns both versions share; a retyped column is compared
    after casting both sides to a common type, or listed in ``uncompared`` when there is
    none. ``rows_changed`` and ``changed_by_column`` are ``None`` without keys.
    ``identical`` means no schema or row difference: row order is not compared.
    """

    old: str
    new: str
    keys: list[str] | None
    rows_old: int
    rows_new: int
    columns_added: dict[str, str]
    columns_removed: dict[str, str]
    columns_retyped: dict[str, list[str]]
    compared: list[str]
    uncompared: list[str]
    rows_added: int
    rows_removed: int
    rows_unchanged: int
    rows_changed: int | None = None
    changed_by_column: dict[str, int] | None = None
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        schema = self.columns_added or self.columns_removed or self.columns_retyped
        return not (schema or self.rows_added or self.rows_removed or self.rows_changed)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary, stable enough to store or print."""
        return {"format": DIFF_FORMAT, **asdict(self), "identical": self.identical}


def diff(store: Store, old: str, new: str, keys: list[str] | None = None) -> VersionDiff:
    """Compare two versions' schemas and rows; with ``keys``, rows are matched by key."""
    keys = list(dict.fromkeys(keys)) if keys else None
    versions = get_version(store, old), get_version(store, new)
    before, after = (load_version(store, version.id) for version in versions)
    schema = _schema_diff(before, after)
    left, right, compared, uncompared = _aligned(before, after, schema["retyped"])
    if keys:
        _check_keys(keys, before, after, uncompared, versions[0].id, versions[1].id)
    base: dict[str, Any] = {
        "old": versions[0].id,
        "new": versions[1].id,
        "keys": keys,
        "rows_old": before.height,
        "rows_new": after.height,
        "columns_added": schema["added"],
        "columns_removed": schema["removed"],
        "columns_retyped": schema["retyped"],
        "compared": compared,
        "uncompared": uncompared,
    }
    if keys:
        return VersionDiff(**base, **_keyed_diff(left, right, keys))
    if not compared:  # no column in common: no row of one can be a row of the other
        rows: dict[str, Any] = {
            "rows_added": after.height,
            "rows_removed": before.height,
            "rows_unchanged": 0,
        }
        return VersionDiff(**base, **rows)
    return VersionDiff(**base, **_multiset_diff(left, right))


def _schema_diff(before: pl.DataFrame, after: pl.DataFrame) -> dict[str, Any]:
    old, new = before.schema, after.schema
    return {
        "added": {c: str(t) for c, t in new.items() if c not in old},
        "removed": {c: str(t) for c, t in old.items() if c not in new},
        "retyped": {c: [str(old[c]), str(t)] for c, t in new.items() if c in old and old[c] != t},
    }


def _aligned(
    before: pl.DataFrame, after: pl.DataFrame, retyped: dict[str, list[str]]
) -> tuple[pl.DataFrame, pl.DataFrame, list[str], list[str]]:
    """Both frames on their shared columns, each shared column cast to one comparable type."""
    shared = [c for c in before.columns if c in after.schema]
    uncompared: list[str] = []
    for column in retyped:
        try:
            pl.concat(
                [before.select(column).head(0), after.select(column).head(0)],
                how="vertical_relaxed",
            )
        except (pl.exceptions.SchemaError, pl.exceptions.ComputeError):
            uncompared.append(column)
    compared = [c for c in shared if c not in uncompared]
    left, right = before.select(compared), after.select(compared)
    common = pl.concat([left.head(0), right.head(0)], how="vertical_relaxed").schema
    return _comparable(left, common), _comparable(right, common), compared, uncompared


def _comparable(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Cast to the common schema; categoricals become text so that equal labels compare equal."""
    return frame.select(
        pl.col(c).cast(pl.String)
        if isinstance(t, pl.Categorical | pl.Enum)
        else pl.col(c).cast(t, strict=False)
        for c, t in schema.items()
    )


def _row_hash(columns: list[str]) -> list[pl.Expr]:
    """Two independent 64-bit hashes of the whole row (nulls hash as a value): 128 bits in all."""
    row = pl.struct(columns)
    return [row.hash(seed).alias(f"__h{seed}") for seed in (17, 91)]


def _multiset_diff(left: pl.DataFrame, right: pl.DataFrame) -> dict[str, Any]:
    """Rows added and removed, counting repeats (twice before, once after: removed once)."""
    hashes = ["__h17", "__h91"]

    def counted(frame: pl.DataFrame) -> pl.DataFrame:
        rows = frame.select(_row_hash(frame.columns))
        return rows.group_by(hashes).len("n")

    both = counted(left).join(counted(right), on=hashes, how="full", coalesce=True)
    delta = pl.col("n_right").fill_null(0).cast(pl.Int64) - pl.col("n").fill_null(0).cast(pl.Int64)
    totals = both.select(
        delta.clip(lower_bound=0).sum().alias("added"),
        (-delta).clip(lower_bound=0).sum().alias("removed"),
    ).row(0, named=True)
    added, removed = int(totals["added"] or 0), int(totals["removed"] or 0)
    return {"rows_added": added, "rows_removed": removed, "rows_unchanged": left.height - removed}


def _check_keys(
    keys: list[str], before: pl.DataFrame, after: pl.DataFrame, uncompared: list[str], *ids: str
) -> None:
    for key in keys:
        if key in uncompared:
            raise KeelsonError(
                f"key column '{key}' changed from {before.schema[key]} to {after.schema[key]}, "
                "types that cannot be compared.",
                where=f"--key {key}",
                hint="Diff by other key columns, or without keys.",
            )
    for frame, version in zip((before, after), ids, strict=True):
        missing = [key for key in keys if key not in frame.schema]
        if missing:
            raise KeelsonError(
                f"key column '{missing[0]}' is not in dataset version {version}.",
                where=f"--key {missing[0]}",
                hint=f"Its columns are: {', '.join(frame.columns)}.",
            )
        duplicated = frame.height - frame.select(pl.struct(keys).n_unique()).item()
        if duplicated:
            raise KeelsonError(
                f"key ({', '.join(keys)}) is not unique in dataset version {version}: "
                f"{duplicated} rows repeat an earlier key.",
                where=f"--key {','.join(keys)}",
                hint="Give key columns that identify one row, or diff without keys.",
            )


def _keyed_diff(left: pl.DataFrame, right: pl.DataFrame, keys: list[str]) -> dict[str, Any]:
    """Rows added, removed and changed, matched by ``keys`` (null keys match null keys)."""
    values = [c for c in left.columns if c not in keys]
    added = right.join(left, on=keys, how="anti", nulls_equal=True)
    removed = left.join(right, on=keys, how="anti", nulls_equal=True)
    matched = left.join(right, on=keys, how="inner", nulls_equal=True, suffix="\x00new")
    flags = matched.select(
        *keys,
        *(pl.col(c).eq_missing(pl.col(f"{c}\x00new")).not_().alias(c) for c in values),
    )
    any_change = pl.any_horizontal(values) if values else pl.lit(False)
    sums = [pl.col(c).sum() for c in values]
    counts = flags.select(*sums, any_change.sum().alias("\x00any")).row(0, named=True)
    changed = int(counts.pop("\x00any") or 0)
    return {
        "rows_added": added.height,
        "rows_removed": removed.height,
        "rows_changed": changed,
        "rows_unchanged": matched.height - changed,
        "changed_by_column": {c: int(n or 0) for c, n in counts.items()},
        "examples": {
            "added": _examples(added, keys),
            "removed": _examples(removed, keys),
            "changed": _examples(flags.filter(any_change), keys),
        },
    }


def _examples(frame: pl.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    """Up to :data:`EXAMPLES` keys, smallest first, as JSON-safe ``{column: value}``."""
    rows = frame.select(keys).sort(keys, nulls_last=True).head(EXAMPLES).iter_rows(named=True)
    return [{k: json_scalar(v) for k, v in row.items()} for row in rows]
