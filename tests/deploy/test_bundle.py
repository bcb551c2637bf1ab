"""`keelson package`: the bundle's files, hashes, lock, Dockerfile and Kubernetes manifests."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import typer
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from keelson.cli.common import open_project_store
from keelson.cli.package import package
from keelson.deploy.bundle import build_bundle, read_manifest, verify_bundle
from keelson.errors import KeelsonError, NotFoundError
from keelson.registry import versions as registry
from keelson.registry.signature import Signature
from keelson.security import keys
from keelson.spec import Serve, load_spec
from keelson.store.store import Store
from keelson.store.tables import Artifact

MODEL = "churn_model"  # an underscore: not allowed in Kubernetes names
SPEC = """\
name: churn-demo
sources:
  customers: {kind: csv, path: data/customers.csv}
target: {column: churn}
registry: {name: churn_model, alias: production}
"""
ROWS: dict[str, list[Any]] = {
    "age": [30, 61, 45, 19],
    "income": [42.5, None, 70.25, 12.0],
    "plan": ["basic", "pro", "plus", "gold"],
}


@dataclass(frozen=True)
class Packaged:
    project: Path
    out: Path
    document: dict[str, Any]


def toy_model() -> tuple[Pipeline, pl.DataFrame]:
    """A fitted pipeline on three typed columns (nulls and an unseen category tolerated)."""
    rng = np.random.default_rng(0)
    rows = 300
    age = rng.integers(18, 80, rows)
    income = rng.normal(50.0, 15.0, rows)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    frame = pl.DataFrame(
        {
            "age": age,
            "income": [None if i % 10 == 0 else float(v) for i, v in enumerate(income)],
            "plan": plan,
        },
        schema={"age": pl.Int64, "income": pl.Float64, "plan": pl.String},
    )
    score = (age - 45) / 15 + (income - 50) / 15 + (plan == "pro") + rng.normal(0, 0.5, rows)
    categories = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    preprocess = ColumnTransformer(
        [("numbers", SimpleImputer(), ["age", "income"]), ("plan", categories, ["plan"])]
    )
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    pipeline = Pipeline([("preprocess", preprocess), ("model", model)])
    return pipeline.fit(frame, np.where(score > 0, "yes", "no")), frame


def registered_project(folder: Path) -> Path:
    """A project whose store holds two versions of the toy model, 'production' on version 2."""
    folder.mkdir(parents=True)
    (folder / "keelson.yaml").write_text(SPEC, encoding="utf-8")
    store = open_project_store(folder)
    try:
        pipeline, frame = toy_model()
        for _ in range(2):
            registry.register(
                store,
                registry.NewVersion(
                    name=MODEL,
                    pipeline=pipeline,
                    signature=Signature.from_frame(frame, ["no", "yes"]),
                    threshold=None,
                    family="hist_gradient_boosting",
                    metrics={"roc_auc": {"value": 0.9}},
                    lineage={"run_id": "r1", "dataset_version": "d1", "target": {"column": "y"}},
                    dataset_version_id=None,
                    run_id=None,
                    task="binary",
                ),
            )
        registry.set_alias(store, MODEL, "production", 2)
    finally:
        store.close()
    return folder


@pytest.fixture(scope="module", autouse=True)
def local_store() -> Iterator[None]:
    """Stores live in the project folders, whatever this shell's KEELSON_* variables say."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KEELSON_STORE_URL", raising=False)
        patch.delenv("KEELSON_ARTIFACTS", raising=False)
        yield


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Packaged]:
    root = tmp_path_factory.mktemp("bundle")
    project = registered_project(root / "project")
    store = open_project_store(project)
    try:
        out = root / "out"
        yield Packaged(project, out, build_bundle(store, f"{MODEL}@production", out))
    finally:
        store.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bundle_lists_every_file_with_its_hash(packaged: Packaged) -> None:
    document, out = packaged.document, packaged.out
    blob = f".keelson/artifacts/objects/{document['artifact']['sha256'][:2]}/"
    expected = {
        ".dockerignore",
        ".keelson/keelson.db",
        "Dockerfile",
        "README.md",
        "k8s/deployment.yaml",
        "k8s/hpa.yaml",
        "k8s/pdb.yaml",
        "k8s/service.yaml",
        "keelson.yaml",
        "requirements.lock",
        f"{blob}{document['artifact']['sha256']}",
    }
    files = document["files"]
    wheels = [path for path in files if path.startswith("wheels/")]
    assert set(files) - set(wheels) == expected
    assert len(wheels) == 1 and re.fullmatch(r"wheels/keelson-.+-py3-none-any\.whl", wheels[0])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(files) | {"MANIFEST.json"}
    for path, entry in files.items():
        assert entry == {"sha256": sha256(out / path), "bytes": (out / path).stat().st_size}
    assert read_manifest(out) == document
    assert not list(out.parent.glob(".out.*")), "the staging folder was left behind"


def test_manifest_names_the_model_its_signature_and_artifact(packaged: Packaged) -> None:
    source = open_project_store(packaged.project)
    try:
        version = registry.resolve(source, registry.ModelRef.parse(f"{MODEL}@production"))
        with source.session() as session:
            artifact = session.get(Artifact, version.artifact_id)
    finally:
        source.close()
    assert artifact is not None
    document = packaged.document
    assert document["model"] | {"registered_at": None} == {
        "name": MODEL,
        "version": 2,
        "alias": "production",
        "task": "binary",
        "family": "hist_gradient_boosting",
        "threshold": None,
        "signature": version.signature,
        "registered_at": None,
        "trained_with": {},
    }
    assert document["artifact"]["sha256"] == artifact.sha256
    assert document["artifact"]["bytes"] == artifact.bytes
    assert document["serve"] == {
        "reference": f"{MODEL}@production",
        "image": "churn-model:2",
        "api_keys": 0,
    }
    assert document["keelson_version"] == metadata.version("keelson")


def test_bundle_store_holds_only_that_version_and_serves_the_same_answers(
    packaged: Packaged,
) -> None:
    bundle: Store = open_project_store(packaged.out)
    source: Store = open_project_store(packaged.project)
    try:
        copied = registry.list_versions(bundle)
        assert [(v.name, v.version) for v in copied] == [(MODEL, 2)]
        assert registry.aliases_of(bundle, MODEL) == {"production": 2}
        assert copied[0].run_id is None and copied[0].dataset_version_id is None
        assert copied[0].lineage["run_id"] == "r1" and copied[0].lineage["dataset_version"] == "d1"
        with pytest.raises(NotFoundError):
            registry.resolve(bundle, registry.ModelRef.parse(f"{MODEL}@1"))
        served, original = (registry.load(s, f"{MODEL}@production") for s in (bundle, source))
    finally:
        bundle.close()
        source.close()
    frame = original.signature.frame(ROWS)
    expected, actual = original.predict(frame), served.predict(frame)
    assert actual.labels == expected.labels
    np.testing.assert_array_equal(actual.probabilities, expected.probabilities)


def test_verify_passes_an_intact_copy_and_names_each_tampered_file(
    packaged: Packaged, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(packaged.out, copy)
    assert verify_bundle(copy) == []
    blob = copy / packaged.document["artifact"]["path"]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    (copy / "README.md").unlink()
    (copy / "wheels" / "extra-1.0-py3-none-any.whl").write_bytes(b"not ours")
    problems = verify_bundle(copy)
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{packaged.document['artifact']['path']}: altered")
    assert problems[1] == "README.md: missing."
    assert problems[2].startswith("wheels/extra-1.0-py3-none-any.whl: not in MANIFEST.json")


def test_verify_ignores_files_a_running_server_adds(packaged: Packaged, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(packaged.out, copy)
    (copy / ".keelson" / "keelson.db-wal").write_bytes(b"")
    (copy / ".keelson" / "keelson.db-shm").write_bytes(b"\0" * 64)
    assert verify_bundle(copy) == []


def test_verify_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(KeelsonError, match=r"no MANIFEST\.json: this is not a keelson bundle"):
        verify_bundle(tmp_path)
    (tmp_path / "MANIFEST.json").write_text('{"bundle_format": 99}')
    with pytest.raises(KeelsonError, match="is not a format-1 keelson bundle manifest"):
        verify_bundle(tmp_path)


def test_lock_pins_the_installed_runtime_closure_then_the_wheel(packaged: Packaged) -> None:
    lines = [
        line
        for line in (packaged.out / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    *pins, keelson_line = lines
    assert keelson_line == f"./{next(p for p in packaged.document['files'] if 'wheels/' in p)}"
    pinned = dict(line.split("==") for line in pins)
    assert all(metadata.version(name) == version for name, version in pinned.items())
    names = {name.lower() for name in pinned}
    # direct runtime dependencies, an extra's dependency, and a dependency of a dependency
    assert {"scikit-learn", "skops", "fastapi", "uvicorn", "psycopg-binary", "starlette"} <= names
    assert not names & {"pytest", "ruff", "mypy", "hypothesis", "keelson"}


def test_dockerfile_runs_a_slim_image_as_non_root_with_a_health_check(
    packaged: Packaged,
) -> None:
    text = (packaged.out / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim$", text, re.MULTILINE)
    user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user == ["10001:10001"]
    health = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$", text, re.MULTILINE)
    assert health and "/v2/health/ready" in json.loads(health.group(1))[2]
    command = json.loads(re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)[-1])
    assert command[:3] == ["keelson", "serve", f"{MODEL}@production"]
    assert "--host" in command and "0.0.0.0" in command
    assert "pip install --no-cache-dir --no-deps -r requirements.lock && pip check" in text
    assert "OMP_NUM_THREADS=1" in text and "EXPOSE 8080" in text
    assert "COPY wheels/ ./wheels/" in text


def kubernetes_documents(out: Path) -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted((out / "k8s").glob("*.yaml"))}


def test_kubernetes_manifests_describe_a_safe_autoscaled_deployment(packaged: Packaged) -> None:
    documents = kubernetes_documents(packaged.out)
    kinds = {name: (d["apiVersion"], d["kind"]) for name, d in documents.items()}
    assert kinds == {
        "deployment.yaml": ("apps/v1", "Deployment"),
        "service.yaml": ("v1", "Service"),
        "hpa.yaml": ("autoscaling/v2", "HorizontalPodAutoscaler"),
        "pdb.yaml": ("policy/v1", "PodDisruptionBudget"),
    }
    assert {d["metadata"]["name"] for d in documents.values()} == {"churn-model"}
    spec = documents["deployment.yaml"]["spec"]
    pod = spec["template"]["spec"]
    (server,) = pod["containers"]
    assert spec["replicas"] == 2 and pod["securityContext"]["runAsNonRoot"] is True
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert set(server["resources"]) == {"requests", "limits"}
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in server["env"]
    assert {"mountPath": "/app/.keelson", "name": "store"} in server["volumeMounts"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert documents["pdb.yaml"]["spec"]["selector"] == spec["selector"]
    assert documents["hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == "churn-model"
    assert documents["pdb.yaml"]["spec"]["minAvailable"] == 1


def test_kubernetes_manifests_match_the_official_schemas(packaged: Packaged) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (a dev dependency) is not installed"
    )
    version = kubernetes_validate.latest_version()
    for name, document in kubernetes_documents(packaged.out).items():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"k8s/{name} breaks the Kubernetes {version} schema: {exc.message}")
    bad = kubernetes_documents(packaged.out)["pdb.yaml"]
    bad["spec"]["minAvailabel"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


def test_bundle_refuses_a_non_empty_folder_and_an_unknown_alias(
    packaged: Packaged, tmp_path: Path
) -> None:
    store = open_project_store(packaged.project)
    try:
        with pytest.raises(KeelsonError, match="exists and is not an empty folder"):
            build_bundle(store, f"{MODEL}@production", packaged.out)
        with pytest.raises(NotFoundError, match="has no alias 'staging'"):
            build_bundle(store, f"{MODEL}@staging", tmp_path / "staging")
    finally:
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def project_keys(project: Path) -> str:
    """A live 'predict' key and a revoked one in the project's store; the live key's token."""
    store = open_project_store(project)
    try:
        _, token = keys.create_key(store, "scorer", "predict", rate=5.0, burst=10)
        keys.create_key(store, "retired", "admin")
        keys.revoke_key(store, "retired")
    finally:
        store.close()
    return token


def test_bundle_carries_the_serving_settings_and_the_live_keys(tmp_path: Path) -> None:
    project = registered_project(tmp_path / "project")
    token = project_keys(project)
    serve = Serve.model_validate(
        {
            "auth": "keys",
            "host": "0.0.0.0",
            "port": 9000,
            "batching": {"max_wait_ms": 5.0},
            "traffic": {"policy": "canary", "challenger": f"{MODEL}@1"},
            "prediction_log": {"path": "s3://bucket/predictions"},
        }
    )
    store = open_project_store(project)
    try:
        document = build_bundle(
            store, f"{MODEL}@production", tmp_path / "out", serve=serve, with_keys=True
        )
    finally:
        store.close()
    assert document["serve"]["api_keys"] == 1
    settings = load_spec(tmp_path / "out").serve
    assert (settings.model, settings.auth) == (f"{MODEL}@production", "keys")
    assert (settings.host, settings.port, settings.traffic.policy) == ("127.0.0.1", 8080, "none")
    assert settings.batching.max_wait_ms == 5.0
    assert settings.prediction_log.path == "s3://bucket/predictions"
    bundle = open_project_store(tmp_path / "out")
    try:
        (copied,) = keys.list_keys(bundle, include_revoked=True)
        ring = keys.KeyRing.load(bundle)
    finally:
        bundle.close()
    assert (copied.name, copied.scope, copied.rate, copied.burst) == ("scorer", "predict", 5.0, 10)
    assert ring.verify(token) is not None
    assert ring.verify(token[:-4] + "AAAA") is None


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(package)
    return app


def test_cli_packages_a_version_and_verifies_it(packaged: Packaged, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    args = [f"{MODEL}@1", str(out), "--project", str(packaged.project), "--quiet"]
    result = CliRunner().invoke(cli(), [*args, "--image", "registry.example/churn:1"])
    assert result.exit_code == 0, result.output
    assert "MANIFEST.json SHA-256 " + sha256(out / "MANIFEST.json") in result.output
    document = read_manifest(out)
    assert document["serve"]["reference"] == f"{MODEL}@1"
    assert document["serve"]["image"] == "registry.example/churn:1"
    assert document["model"]["alias"] is None
    assert "no API keys in the bundle" in result.output
    result = CliRunner().invoke(cli(), ["--verify", str(out)])
    assert result.exit_code == 0 and "all 12 files match" in result.output
    (out / "keelson.yaml").write_text("name: tampered\n")
    result = CliRunner().invoke(cli(), ["--verify", str(out)])
    assert result.exit_code == 1 and "keelson.yaml: altered" in result.output
