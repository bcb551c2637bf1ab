"""keelson: a throw-away project with ``train.parquet`` and a ``keelson.yaml``, fitted by
``keelson run``, then the newest registered version predicts the test features.

    .venv/bin/python bench/automl_runners/keelson_runner.py TASK.json

``keelson run`` is the project venv's own entry point, run as a command the way a user
runs it; keelson itself is imported here only after it finished, to load the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import Clock, Task, task_from_argv, write_result

MODEL = "bench"


def spec(task: Task) -> dict[str, Any]:
    """The project's spec: keelson keeps no test set (the bench's test set is the only one)."""
    if task.time_column:
        split = {"method": "time", "time_column": task.time_column, "test": 0}
    else:
        split = {"method": "stratified", "test": 0}
    return {
        "name": MODEL,
        "sources": {"train": {"kind": "parquet", "path": "train.parquet"}},
        "target": {"column": task.target, "task": "binary", "positive": task.positive},
        "split": split,
        "train": {"budget": {"seconds": task.budget}, "seed": task.seed},
        "registry": {"name": MODEL, "alias": None},
    }


def make_project(task: Task) -> Path:
    project = task.workdir / "project"
    project.mkdir(parents=True)
    (project / "train.parquet").symlink_to(task.train.resolve())
    # JSON is YAML: the spec file needs no YAML library here.
    (project / "keelson.yaml").write_text(json.dumps(spec(task), indent=2), encoding="utf-8")
    return project


def keelson_run(project: Path) -> None:
    """``keelson run --quiet``; on failure, exit with keelson's own error line."""
    keelson = Path(sys.executable).parent / "keelson"
    done = subprocess.run(
        [str(keelson), "run", str(project), "--quiet"], stderr=subprocess.PIPE, text=True
    )
    sys.stderr.write(done.stderr)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        sys.exit(f"keelson run exited {done.returncode}: {lines[-1] if lines else ''}")


def predict(project: Path, test: Path, positive: str | int) -> tuple[Any, dict[str, Any]]:
    """P(positive) from the newest registered version: its pipeline's ``predict_proba``,
    as for the peers (the labels at keelson's tuned threshold are not scored here)."""
    import polars as pl

    from keelson import __version__
    from keelson.registry import versions
    from keelson.spec import load_spec
    from keelson.store.store import locate, open_store

    store = open_store(locate(project, load_spec(project).store))
    try:
        model = versions.load(store, MODEL)
        family = versions.resolve(store, versions.ModelRef.parse(MODEL)).family
    finally:
        store.close()
    features = pl.read_parquet(test).select(model.signature.names)
    column = model.signature.classes.index(str(positive))
    proba = model.pipeline.predict_proba(features)[:, column]
    details = {"version": __version__, "model": family, "threshold": model.threshold}
    return proba, details


def main(task: Task) -> None:
    clock = Clock()
    project = make_project(task)
    keelson_run(project)
    fit_s = clock.lap()
    proba, details = predict(project, task.test, task.positive)
    write_result(task, proba, {"fit_s": fit_s, "predict_s": clock.lap(), **details})


if __name__ == "__main__":
    main(task_from_argv())
