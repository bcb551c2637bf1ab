"""Model versions and aliases: register, resolve ``NAME@ALIAS|VERSION``, load safely.

Models are saved with skops (no pickle). Loading verifies the artifact's SHA-256
recorded at registration, then trusts only types from an allowlist of modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from keelson import __version__
from keelson.errors import IntegrityError, KeelsonError, NotFoundError
from keelson.registry.model import LoadedModel
from keelson.registry.signature import Signature
from keelson.store.store import Store
from keelson.store.tables import Alias, AliasChange, Artifact, ModelVersion, utcnow

MODEL_FORMAT = "skops"
TRUSTED_MODULES = (
    "sklearn.",
    "imblearn.",
    "lightgbm.",
    "xgboost.",
    "numpy.",
    "scipy.",
    "collections.",
    "builtins.",
    "functools.partial",  # scikit-learn's own; what it wraps is checked on its own
    "keelson.features.dates.DateParts",
    "keelson.train.blend.BlendClassifier",
    "keelson.train.blend.BlendRegressor",
    "keelson.train.calibration.CalibratedClassifier",
)
_REF = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]{0,99})(?:@(?P<pointer>[A-Za-z0-9_-]+))?$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    pointer: str | None  # an alias, a version number, or None for the newest version

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        match = _REF.match(text.strip())
        if not match:
            raise KeelsonError(
                f"'{text}' is not a model reference.",
                hint="Write NAME@ALIAS or NAME@VERSION, e.g. bank-marketing@production.",
            )
        return cls(match["name"], match["pointer"])

    def __str__(self) -> str:
        return f"{self.name}@{self.pointer}" if self.pointer else self.name


@dataclass(frozen=True)
class NewVersion:
    """Everything training hands to the registry for one model version."""

    name: str
    pipeline: Any
    signature: Signature
    threshold: float | None  # binary only
    family: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    dataset_version_id: str | None
    run_id: str | None
    task: str = "binary"


def register(store: Store, new: NewVersion) -> ModelVersion:
    """Serialise the fitted pipeline, store it by content and record a new version."""
    import skops.io as sio

    artifact = store.put_artifact(
        sio.dumps(new.pipeline), kind="model", fmt=MODEL_FORMAT, run_id=new.run_id
    )
    with store.session() as session:
        latest = session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.name == new.name)
        )
        version = ModelVersion(
            name=new.name,
            version=(latest or 0) + 1,
            family=new.family,
            task=new.task,
            threshold=new.threshold,
            signature=new.signature.to_dict(),
            metrics=new.metrics,
            lineage=new.lineage,
            artifact_id=artifact.id,
            dataset_version_id=new.dataset_version_id,
            run_id=new.run_id,
            keelson_version=__version__,
        )
        session.add(version)
    return version


def set_alias(store: Store, name: str, alias: str, version: int, rollback: bool = False) -> None:
    """Point ``NAME@alias`` at ``version``, and record the move."""
    with store.session() as session:
        exists = session.scalar(
            select(ModelVersion.id).where(
                ModelVersion.name == name, ModelVersion.version == version
            )
        )
        if exists is None:
            raise NotFoundError(f"model {name} has no version {version}.")
        row = session.get(Alias, (name, alias))
        previous = None if row is None else row.version
        if row is None:
            session.add(Alias(name=name, alias=alias, version=version))
        else:
            row.version, row.updated_at = version, utcnow()
        session.add(
            AliasChange(
                name=name, alias=alias, version=version, previous=previous, rollback=rollback
            )
        )


def rollback(store: Store, name: str, alias: str = "production") -> tuple[int, int]:
    """Undo the last move of ``NAME@alias`` not undone yet; (from, to) versions."""
    with store.session() as session:
        changes = session.scalars(
            select(AliasChange)
            .where(AliasChange.name == name, AliasChange.alias == alias)
            .order_by(AliasChange.id.desc())
        ).all()
        undone = _last_move(list(changes))
    if undone is None or undone.previous is None:
        raise NotFoundError(
            f"'{name}@{alias}' has no earlier version to go back to.",
            hint=f"Its aliases: {aliases_of(store, name) or 'none'}; "
            "`keelson models list` shows the versions.",
        )
    set_alias(store, name, alias, undone.previous, rollback=True)
    return undone.version, undone.previous


def _last_move(changes: list[AliasChange]) -> AliasChange | None:
    """Newest first: each rollback undoes one earlier move; the first move left standing."""
    pending = 0
    for change in changes:
        if change.rollback:
            pending += 1
        elif pending:
            pending -= 1
        else:
            return change
    return None


def resolve(store: Store, ref: ModelRef) -> ModelVersion:
    with store.session() as session:
        query = select(ModelVersion).where(ModelVersion.name == ref.name)
        if ref.pointer is None:
            query = query.order_by(ModelVersion.version.desc()).limit(1)
        elif ref.pointer.isdigit():
            query = query.where(ModelVersion.version == int(ref.pointer))
        else:
            alias = session.get(Alias, (ref.name, ref.pointer))
            if alias is None:
                raise NotFoundError(
                    f"model '{ref.name}' has no alias '{ref.pointer}'.",
                    hint=f"Known aliases: {aliases_of(store, ref.name) or 'none'}.",
                )
            query = query.where(ModelVersion.version == alias.version)
        found = session.scalar(query)
    if found is None:
        raise NotFoundError(
            f"no model version matches '{ref}'.", hint="List them with `keelson models list`."
        )
    return found


def aliases_of(store: Store, name: str) -> dict[str, int]:
    with store.session() as session:
        rows = session.scalars(select(Alias).where(Alias.name == name).order_by(Alias.alias))
        return {row.alias: row.version for row in rows}


def list_versions(store: Store, name: str | None = None) -> list[ModelVersion]:
    with store.session() as session:
        query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
        if name:
            query = query.where(ModelVersion.name == name)
        return list(session.scalars(query))


def load(store: Store, ref: ModelRef | str) -> LoadedModel:
    """Resolve a reference and load its pipeline, refusing altered or unsafe artifacts."""
    version = resolve(store, ModelRef.parse(ref) if isinstance(ref, str) else ref)
    with store.session() as session:
        artifact = session.get(Artifact, version.artifact_id)
    assert artifact is not None
    pipeline = _safe_load(store.artifacts.get(artifact.sha256), artifact.format)
    return LoadedModel(
        name=version.name,
        version=version.version,
        pipeline=pipeline,
        signature=Signature.from_dict(version.signature),
        threshold=version.threshold,
    )


def _safe_load(data: bytes, fmt: str) -> Any:
    import skops.io as sio

    if fmt != MODEL_FORMAT:
        raise IntegrityError(f"unknown model format '{fmt}'; this keelson reads '{MODEL_FORMAT}'.")
    untrusted = sio.get_untrusted_types(data=data)
    refused = [name for name in untrusted if not name.startswith(TRUSTED_MODULES)]
    if refused:
        raise IntegrityError(
            f"the model artifact contains types outside the allowlist: {refused}.",
            hint="Refusing to load it: only scikit-learn, imbalanced-learn, LightGBM, XGBoost, "
            "NumPy, SciPy and keelson's own blend and calibration are trusted.",
        )
    return sio.loads(data, trusted=untrusted)
