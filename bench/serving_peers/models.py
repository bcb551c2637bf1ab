"""The two models of the serving bench, registered in keelson stores and exported once.

- ``bank``: the bank-marketing example's own pipeline: ``keelson run`` on a copy of
  ``examples/bank-marketing`` (its spec, its budget), the version its alias points to;
- ``lgbm``: a LightGBM classifier (500 trees by default) on 40 numeric features from
  ``make_classification`` (seed 0), registered through ``keelson.registry.versions``.

Each is then exported for the peers: the registered pipeline, loaded by keelson's own
loader and set to one thread as ``keelson serve`` sets it, dumped with joblib (the very
object every server serves), 100 rows sampled (seed 0) from the dataset version it was
trained on, and their probabilities from the in-process pipeline. Runs in keelson's venv.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from serving_peers.base import ROOT, Rows, ServedModel

BANK_EXAMPLE = ROOT / "examples" / "bank-marketing"
KEELSON = Path(sys.executable).parent / "keelson"
ALIAS = "production"
N_ROWS = 100
DTYPES = {"int64": pl.Int64, "float64": pl.Float64, "string": pl.String, "bool": pl.Boolean}


def bank_model(cache: Path, budget: float | None = None) -> ServedModel:
    """The bank example's registered pipeline; ``keelson run`` only if none is registered."""
    project = cache / "projects" / "bank-marketing"
    spec_name = "bank-marketing"
    if not _registered(project, spec_name):
        shutil.rmtree(project, ignore_errors=True)
        shutil.copytree(BANK_EXAMPLE, project, ignore=shutil.ignore_patterns(".keelson"))
        command = [str(KEELSON), "run", str(project), "--quiet"]
        command += ["--budget", str(budget)] if budget else []
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return export("bank", project, spec_name, cache / "models" / "bank")


def lgbm_model(cache: Path, trees: int = 500, features: int = 40) -> ServedModel:
    """A LightGBM classifier on synthetic numeric features, registered once per shape."""
    name = f"lgbm-{trees}x{features}"
    project = cache / "projects" / name
    if not _registered(project, name):
        shutil.rmtree(project, ignore_errors=True)
        _register_lgbm(project, name, trees, features)
    return export(name, project, name, cache / "models" / name)


def _registered(project: Path, name: str) -> bool:
    """Whether the project's store has ``name@production`` (its schema upgraded first)."""
    if not (project / ".keelson" / "keelson.db").exists():
        return False
    upgrade = [str(KEELSON), "db", "upgrade", "--project", str(project)]
    subprocess.run(upgrade, check=True, stdout=subprocess.DEVNULL)
    from keelson.errors import NotFoundError
    from keelson.registry import versions

    store = _open(project)
    try:
        versions.resolve(store, versions.ModelRef(name, ALIAS))
    except NotFoundError:
        return False
    finally:
        store.close()
    return True


def _open(project: Path) -> Any:
    from keelson.spec import load_spec
    from keelson.store.store import locate, open_store

    return open_store(locate(project, load_spec(project).store))


def synthetic(rows: int, features: int, seed: int = 0) -> pl.DataFrame:
    """``make_classification`` as a frame: columns f00.., then the 0/1 target ``y``."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows, n_features=features, n_informative=features // 2, random_state=seed
    )
    names = [f"f{i:02d}" for i in range(features)]
    return pl.DataFrame(x, schema=names).with_columns(y=pl.Series(y, dtype=pl.Int64))


def _register_lgbm(project: Path, name: str, trees: int, features: int) -> None:
    from lightgbm import LGBMClassifier

    from keelson.data.versions import save_version
    from keelson.registry import versions
    from keelson.registry.signature import Signature

    frame = synthetic(20_000, features)
    (project / "data").mkdir(parents=True)
    frame.write_parquet(project / "data" / "train.parquet")
    spec = {
        "name": name,
        "sources": {"train": {"kind": "parquet", "path": "data/train.parquet"}},
        "target": {"column": "y", "positive": 1},
        "registry": {"name": name, "alias": ALIAS},
    }
    (project / "keelson.yaml").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    x = frame.drop("y")
    model = LGBMClassifier(n_estimators=trees, n_jobs=1, random_state=0, verbose=-1)
    model.fit(x.to_pandas(), frame["y"].to_numpy())
    store = _open(project)
    try:
        dataset, _ = save_version(store, name, frame, lineage={"synthetic": "bench"}, run_id=None)
        new = versions.NewVersion(
            name=name,
            pipeline=model,
            signature=Signature.from_frame(x, ["0", "1"]),
            threshold=None,
            family="lightgbm",
            metrics={},
            lineage={"bench": "serving"},
            dataset_version_id=dataset.id,
            run_id=None,
        )
        version = versions.register(store, new)
        versions.set_alias(store, name, ALIAS, version.version)
    finally:
        store.close()


def export(key: str, project: Path, name: str, folder: Path) -> ServedModel:
    """Write ``model.joblib``, ``rows.json`` and ``expected.npy`` for ``name@production``."""
    import joblib

    from keelson.data.versions import load_version
    from keelson.registry import versions
    from keelson.serve.threads import single_threaded

    store = _open(project)
    try:
        model = versions.load(store, f"{name}@{ALIAS}")
        version = versions.resolve(store, versions.ModelRef(name, ALIAS))
        data = load_version(store, str(version.dataset_version_id))
    finally:
        store.close()
    single_threaded(model.pipeline)
    sample = data.select(model.signature.names).sample(N_ROWS, seed=0)
    rows = Rows(sample.columns, [c.type for c in model.signature.inputs], sample.rows())
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / "model.joblib", lambda path: joblib.dump(model.pipeline, path))
    _atomic(folder / "rows.json", lambda path: path.write_text(rows.to_json(), encoding="utf-8"))
    expected = model.pipeline.predict_proba(frame(rows))
    _atomic(folder / "expected.npy", lambda path: np.save(path, expected))
    return ServedModel(key, name, ALIAS, project, folder, list(model.signature.classes))


def frame(rows: Rows) -> pl.DataFrame:
    """The rows as the frame keelson builds from a request (the signature's dtypes)."""
    schema = {name: DTYPES[kind] for name, kind in zip(rows.columns, rows.types, strict=True)}
    return pl.DataFrame(rows.data, schema=schema, orient="row")


def _atomic(path: Path, write: Any) -> None:
    staging = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(staging)
    staging.replace(path)
