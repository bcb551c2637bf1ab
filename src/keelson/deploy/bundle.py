"""A deployment bundle: one folder that serves one model version, verified by its hashes.

``build_bundle`` writes, into a new folder (built aside, then renamed into place)::

    .keelson/           a keelson store (made by its own migrations) holding only the model
                        version, its alias and its artifact; run and dataset links are
                        dropped, the lineage JSON keeps their ids
    keelson.yaml        the minimal project file ``keelson serve --project OUT`` needs
    requirements.lock   exact pins of keelson's runtime closure as installed here, then keelson
    wheels/             keelson built as a wheel, when it is installed from source
    Dockerfile, .dockerignore, k8s/*.yaml, README.md
    MANIFEST.json       the model's identity and the SHA-256 of every other file

``verify_bundle`` re-hashes every file against ``MANIFEST.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml
from sqlalchemy import select

from keelson import __version__
from keelson.deploy import manifests
from keelson.deploy.manifests import STORE_DIR, DeployTarget
from keelson.errors import KeelsonError
from keelson.registry import versions as registry
from keelson.spec import SPEC_FILE, Serve, parse_spec
from keelson.store.store import Store, StoreLocation, open_store
from keelson.store.tables import Alias, ApiKey, Artifact, ModelVersion

BUNDLE_FORMAT = 1
MANIFEST_FILE = "MANIFEST.json"
LOCK_FILE = "requirements.lock"
# Files a running server (SQLite, the prediction and feedback logs) or a local install may
# add; never hashed, never reported.
_TRANSIENT = re.compile(
    r"^\.keelson/predictions/|(^|/)(\.venv|__pycache__)/|\.db-(wal|shm|journal)$|\.db\.lock$"
)
_NOT_COPIED = frozenset({"id", "artifact_id", "dataset_version_id", "run_id"})
_SPEC_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")

Step = Callable[[str], None]


def build_bundle(
    store: Store,
    ref: str,
    out: Path,
    *,
    image: str | None = None,
    serve: Serve | None = None,
    with_keys: bool = False,
    on_step: Step | None = None,
) -> dict[str, Any]:
    """Write the bundle of ``ref`` (``NAME@ALIAS`` or ``NAME@VERSION``) into ``out``.

    ``out`` must not exist or be an empty folder. ``image`` names the container image
    the Kubernetes manifests run (default ``NAME:VERSION``). ``serve`` is the project's
    serving section, carried into the bundle's keelson.yaml (less what the bundle cannot
    hold: a challenger, TLS files). ``with_keys`` copies the live API keys (their hashes
    only) so that the server, bound beyond loopback, accepts them. Returns the manifest.
    """
    step = on_step or (lambda _message: None)
    out = _empty_target(out)
    parsed = registry.ModelRef.parse(ref)
    version = registry.resolve(store, parsed)
    alias = parsed.pointer if parsed.pointer and not parsed.pointer.isdigit() else None
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
    options = _Options(image, serve, with_keys)
    try:
        document = _write_bundle(store, version, alias, staging, options, step)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return document


def verify_bundle(folder: Path) -> list[str]:
    """Problems found re-hashing ``folder`` against its manifest; empty when it is intact."""
    expected: dict[str, dict[str, Any]] = read_manifest(folder)["files"]
    present = set(_bundle_files(folder))
    problems = []
    for path, entry in expected.items():
        if path not in present:
            problems.append(f"{path}: missing.")
            continue
        digest = _sha256(folder / path)
        if digest != entry["sha256"]:
            problems.append(
                f"{path}: altered (SHA-256 {digest[:12]}…, {MANIFEST_FILE} says "
                f"{entry['sha256'][:12]}…)."
            )
    added = sorted(present - expected.keys())
    problems += [f"{path}: not in {MANIFEST_FILE} (added after packaging)." for path in added]
    return problems


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeelsonError(
            f"no {MANIFEST_FILE}: this is not a keelson bundle.",
            where=str(folder),
            hint="Pass the folder `keelson package NAME@ALIAS OUT` wrote.",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeelsonError(f"is not valid JSON ({exc}).", where=str(path)) from None
    if not isinstance(document, dict) or document.get("bundle_format") != BUNDLE_FORMAT:
        raise KeelsonError(
            f"is not a format-{BUNDLE_FORMAT} keelson bundle manifest.",
            where=str(path),
            hint="Re-package the model with this keelson.",
        )
    return document


# --- writing the bundle ----------------------------------------------------------------------


def _empty_target(out: Path) -> Path:
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KeelsonError(
            "exists and is not an empty folder; a bundle is written into a new one.",
            where=str(out),
            hint="Choose another OUT folder, or remove this one first.",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


@dataclass(frozen=True)
class _Options:
    image: str | None
    serve: Serve | None
    with_keys: bool


def _write_bundle(
    store: Store,
    version: ModelVersion,
    alias: str | None,
    folder: Path,
    options: _Options,
    step: Step,
) -> dict[str, Any]:
    step(f"copying {version.name} version {version.version} into the bundle's store")
    reference = f"{version.name}@{alias or version.version}"
    artifact, keys = _copy_model(store, version, alias, folder, options.with_keys)
    _write_text(folder / SPEC_FILE, _spec_text(version, alias, _serve_section(options, reference)))
    step("pinning the runtime dependencies")
    wheel = _write_lock(folder, version, step)
    target = DeployTarget(
        model=version.name,
        version=version.version,
        reference=reference,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        image=options.image or manifests.default_image(version.name, version.version),
        wheel=wheel,
        api_keys=keys,
        memory_request_mib=_memory_request_mib(artifact.bytes),
    )
    _write_deployment_files(folder, target, artifact)
    step(f"checking that {target.reference} loads from the bundle")
    _check_loads(folder, target.reference)
    step("hashing the bundle's files")
    document = _manifest(folder, version, alias, target, artifact)
    _write_text(folder / MANIFEST_FILE, json.dumps(document, indent=2) + "\n")
    return document


def _bundle_store(folder: Path) -> Store:
    """The bundle's own store, whatever KEELSON_STORE_URL says (it may name a team server)."""
    home = folder / STORE_DIR
    return open_store(StoreLocation(f"sqlite:///{home}/keelson.db", str(home / "artifacts")))


def _copy_model(
    source: Store, version: ModelVersion, alias: str | None, folder: Path, with_keys: bool
) -> tuple[Artifact, int]:
    """Copy the version row, its alias, its artifact (re-verified by hash) and, if asked,
    the live API keys into the bundle; returns the artifact row and the keys copied."""
    with source.session() as session:
        original = session.get(Artifact, version.artifact_id)
    assert original is not None  # a foreign key
    data = source.artifacts.get(original.sha256)
    keys = _live_keys(source) if with_keys else []
    target = _bundle_store(folder)
    try:
        blob = target.artifacts.put(data)
        artifact = Artifact(
            run_id=None,
            kind=original.kind,
            uri=f"{STORE_DIR}/artifacts/objects/{blob.sha256[:2]}/{blob.sha256}",
            sha256=blob.sha256,
            bytes=blob.bytes,
            format=original.format,
            created_at=original.created_at,
        )
        with target.session() as session:
            session.add(artifact)
            session.flush()
            fields = _copy_row(version, _NOT_COPIED)
            session.add(ModelVersion(**fields, artifact_id=artifact.id))
            if alias:
                session.add(Alias(name=version.name, alias=alias, version=version.version))
            session.add_all(keys)
    finally:
        target.close()
    (folder / STORE_DIR / "keelson.db.lock").unlink(missing_ok=True)  # the migration lock
    return artifact, len(keys)


def _copy_row(row: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A row's column values, for a copy in another store (new columns come along)."""
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in skip}


def _live_keys(source: Store) -> list[ApiKey]:
    """Copies of the unrevoked API keys: ids, names, scopes, limits and secret hashes."""
    with source.session() as session:
        rows = session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None))).all()
        return [ApiKey(**_copy_row(row)) for row in rows]


def _serve_section(options: _Options, reference: str) -> dict[str, Any]:
    """The project's serving settings for the bundle. Dropped: the challenger (not in the
    bundle), TLS files (not in the bundle), host and port (set where the bundle runs)."""
    section = options.serve.model_dump(mode="json", exclude_defaults=True) if options.serve else {}
    for key in ("model", "host", "port", "traffic", "tls_certfile", "tls_keyfile"):
        section.pop(key, None)
    return {"model": reference, **section}


def _spec_text(version: ModelVersion, alias: str | None, serve: dict[str, Any]) -> str:
    """A valid keelson.yaml: the store is the default one, ``serve`` how to serve."""
    target = (version.lineage or {}).get("target") or {}
    document = {
        "name": version.name,
        "sources": {"training": {"kind": "parquet", "path": "data/not-in-bundle.parquet"}},
        "target": {"column": str(target.get("column", "target"))},
        "registry": {
            "name": version.name,
            "alias": alias if alias and _SPEC_ALIAS.match(alias) else None,
        },
        "serve": serve,
    }
    parse_spec(document, where=SPEC_FILE)
    header = (
        "# A keelson serving bundle: `keelson serve` finds the store in .keelson/ next to\n"
        "# this file. The training data is not included; this folder serves, it does not train.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)


def _write_lock(folder: Path, version: ModelVersion, step: Step) -> str | None:
    """Write requirements.lock (and keelson's wheel); returns the wheel's relative path."""
    keelson_line, requires = _keelson_requirement(folder / "wheels", step)
    pins = [f"{dist.metadata['Name']}=={dist.version}" for dist in _runtime_closure(requires)]
    header = (
        f"# Exact versions for serving {version.name} version {version.version} with keelson "
        f"{__version__},\n# pinned from the environment that made this bundle (CPython "
        f"{platform.python_version()}, {sys.platform} {platform.machine()}).\n"
        f"# Install from this folder: pip install --no-deps -r {LOCK_FILE} && pip check\n"
    )
    _write_text(folder / LOCK_FILE, header + "\n".join([*pins, keelson_line]) + "\n")
    return keelson_line.removeprefix("./") if keelson_line.startswith("./") else None


def _write_deployment_files(folder: Path, target: DeployTarget, artifact: Artifact) -> None:
    _write_text(folder / "Dockerfile", manifests.dockerfile(target))
    _write_text(folder / ".dockerignore", manifests.DOCKERIGNORE)
    (folder / "k8s").mkdir()
    for name, document in manifests.kubernetes_manifests(target).items():
        _write_text(folder / "k8s" / name, manifests.dump_yaml(document))
    text = manifests.readme(target, artifact_sha256=artifact.sha256, keelson_version=__version__)
    _write_text(folder / "README.md", text)


def _check_loads(folder: Path, reference: str) -> None:
    """Load the model from the bundle's store as `keelson serve` will (hash and type checks)."""
    store = _bundle_store(folder)
    try:
        registry.load(store, reference)
    finally:
        store.close()
    (folder / STORE_DIR / "keelson.db.lock").unlink(missing_ok=True)


def _memory_request_mib(artifact_bytes: int) -> int:
    """~300 MiB for the process and its libraries plus 4× the serialised model, ≥ 512 MiB."""
    estimate = 300 + 4 * artifact_bytes / 2**20
    return max(512, 64 * math.ceil(estimate / 64))


def _manifest(
    folder: Path,
    version: ModelVersion,
    alias: str | None,
    target: DeployTarget,
    artifact: Artifact,
) -> dict[str, Any]:
    lineage = version.lineage or {}
    return {
        "bundle_format": BUNDLE_FORMAT,
        "keelson_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "serve": {
            "reference": target.reference,
            "image": target.image,
            "api_keys": target.api_keys,
        },
        "model": {
            "name": version.name,
            "version": version.version,
            "alias": alias,
            "task": version.task,
            "family": version.family,
            "threshold": version.threshold,
            "signature": version.signature,
            "registered_at": _utc(version.created_at).isoformat(timespec="seconds"),
            "trained_with": lineage.get("environment", {}),
        },
        "artifact": {
            "sha256": artifact.sha256,
            "bytes": artifact.bytes,
            "format": artifact.format,
            "path": artifact.uri,
        },
        "files": {
            path: {"sha256": _sha256(folder / path), "bytes": (folder / path).stat().st_size}
            for path in _bundle_files(folder)
        },
    }


def _utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; the store writes them in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- pinning the runtime dependencies --------------------------------------------------------


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _runtime_closure(requires: list[str]) -> list[metadata.Distribution]:
    """The installed distributions keelson's ``requires`` need, following extras and markers."""
    found: dict[str, tuple[metadata.Distribution, frozenset[str]]] = {}
    pending = [(r, "keelson") for r in _applicable(requires, frozenset())]
    while pending:
        requirement, wanted_by = pending.pop()
        key, extras = _canonical(requirement.name), frozenset(requirement.extras)
        if key == "keelson" or (key in found and extras <= found[key][1]):
            continue
        dist = _installed(requirement, wanted_by)
        extras |= found[key][1] if key in found else frozenset()
        found[key] = (dist, extras)
        pending += [(r, key) for r in _applicable(dist.requires or [], extras)]
    return [found[key][0] for key in sorted(found)]


def _applicable(lines: list[str], extras: frozenset[str]) -> list[Any]:
    """The requirements among ``lines`` that apply here, with these extras requested."""
    from packaging.requirements import Requirement

    applicable = []
    for line in lines:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""}):
            applicable.append(requirement)
    return applicable


def _installed(requirement: Any, wanted_by: str) -> metadata.Distribution:
    """The installed distribution meeting ``requirement``, installed from a package index."""
    name = requirement.name
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise KeelsonError(
            f"'{name}', which {wanted_by} needs, is not installed here, so it cannot be pinned.",
            hint="Repair this environment (`pip check` lists what is missing) and package again.",
        ) from None
    if not requirement.specifier.contains(dist.version, prereleases=True):
        raise KeelsonError(
            f"{wanted_by} needs '{requirement}' but {name} {dist.version} is installed here.",
            hint="Install a matching version (`pip check` lists the conflicts) and package again.",
        )
    origin = _direct_url(dist)
    if origin is not None:
        raise KeelsonError(
            f"'{name}' is installed from {origin.get('url')}, not from a package index, "
            "so requirements.lock cannot pin it.",
            hint=f"Install a released version of {name} and package again.",
        )
    return dist


def _direct_url(dist: metadata.Distribution) -> dict[str, Any] | None:
    """PEP 610: where a distribution came from when it was not a package index."""
    text = dist.read_text("direct_url.json")
    return json.loads(text) if text else None


def _keelson_requirement(wheels: Path, step: Step) -> tuple[str, list[str]]:
    """keelson's lock line and requirements: ``keelson==X`` when it came from an index,
    else its wheel, built from its source folder or copied, into ``wheels/``."""
    dist = metadata.distribution("keelson")
    origin = _direct_url(dist)
    if origin is None:
        return f"keelson=={dist.version}", list(dist.requires or [])
    url = str(origin.get("url", ""))
    source = Path(url2pathname(urlparse(url).path)) if url.startswith("file:") else None
    wheels.mkdir()
    if source is not None and "dir_info" in origin and source.is_dir():
        step(f"building a wheel of keelson from {source}")
        wheel = _build_wheel(source, wheels)
    elif source is not None and source.suffix == ".whl" and source.is_file():
        wheel = Path(shutil.copy2(source, wheels / source.name))
    else:
        raise KeelsonError(
            f"keelson is installed from {url}, which this bundle cannot carry.",
            hint="Install keelson from a package index, a wheel file or a source folder.",
        )
    return f"./wheels/{wheel.name}", _wheel_requires(wheel)


def _wheel_requires(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel: what the shipped keelson asks for, not the
    (possibly stale) metadata of an editable install."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
    return list(message.get_all("Requires-Dist") or [])


def _build_wheel(source: Path, wheels: Path) -> Path:
    with tempfile.TemporaryDirectory() as scratch:  # build tools leave files beside the wheel
        uv = shutil.which("uv")
        if uv:
            command = [uv, "build", "--wheel", "--quiet", "--out-dir", scratch, str(source)]
        else:
            command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
            command += ["--wheel-dir", scratch, str(source)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        built = sorted(Path(scratch).glob("keelson-*.whl"))
        if done.returncode != 0 or len(built) != 1:
            reason = (done.stderr.strip().splitlines() or ["no wheel was written"])[-1]
            raise KeelsonError(
                f"could not build a wheel of keelson from {source}: {reason}",
                hint="Install uv (or pip) in this environment, or install keelson from a wheel.",
            )
        return Path(shutil.move(built[0], wheels / built[0].name))


# --- files and hashes ------------------------------------------------------------------------


def _bundle_files(folder: Path) -> list[str]:
    """Every file of the bundle but the manifest and transient ones, as sorted POSIX paths."""
    paths = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(p for p in paths if p != MANIFEST_FILE and not _TRANSIENT.search(p))


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def manifest_digest(folder: Path) -> str:
    """The SHA-256 of the bundle's MANIFEST.json: record it to detect a rewritten manifest."""
    return _sha256(folder / MANIFEST_FILE)
