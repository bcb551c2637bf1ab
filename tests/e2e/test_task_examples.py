"""The multi-class and regression examples run end to end with their task's metrics.

Each test copies a bundled example, shrinks its search (a few trials of two families),
runs it through :func:`keelson.runner.run`, and loads the registered model to predict.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from rich.console import Console

from keelson import runner
from keelson.data.versions import load_version
from keelson.registry import versions as registry
from keelson.registry.model import LoadedModel
from keelson.run_context import RunContext
from keelson.runner import RunResult
from keelson.spec import TASK_METRICS, load_spec
from keelson.store.store import Store, locate, open_store

EXAMPLES = Path(__file__).parents[2] / "examples"
SMALL_SEARCH: dict[str, Any] = {
    "budget": {"seconds": 60, "max_trials": 3},
    "cv_folds": 2,
    "candidates": ["linear", "lightgbm"],
    "bootstrap": 100,
}


@dataclass(frozen=True)
class ExampleRun:
    result: RunResult
    model: LoadedModel
    rows: pl.DataFrame  # a few rows of the run's dataset version, target included


RunExample = Callable[[str], ExampleRun]


@pytest.fixture
def run_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunExample]:
    """Run a copy of ``examples/<name>`` with a small search; stores are closed afterwards."""
    monkeypatch.delenv("KEELSON_STORE_URL", raising=False)
    monkeypatch.delenv("KEELSON_ARTIFACTS", raising=False)
    stores: list[Store] = []

    def run(name: str) -> ExampleRun:
        project = copy_with_small_search(name, tmp_path)
        spec = load_spec(project)
        store = open_store(locate(project, spec.store))
        stores.append(store)
        ctx = RunContext(spec=spec, project_dir=project, store=store, console=Console(), quiet=True)
        result = runner.run(ctx)
        model = registry.load(store, f"{spec.registry.name}@production")
        rows = load_version(store, result.dataset_version).sample(8, seed=3)
        return ExampleRun(result, model, rows)

    yield run
    for store in stores:
        store.close()


def copy_with_small_search(name: str, folder: Path) -> Path:
    project = folder / name
    shutil.copytree(EXAMPLES / name, project, ignore=shutil.ignore_patterns(".keelson"))
    path = project / "keelson.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["train"] = {**spec["train"], **SMALL_SEARCH}
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return project


def metric_values(result: RunResult) -> dict[str, float]:
    """The held-out test metrics, after checking each lies inside its interval."""
    assert set(result.test_metrics) >= set(TASK_METRICS[result.task])
    for name, interval in result.test_metrics.items():
        assert interval["low"] <= interval["value"] <= interval["high"], name
    return {name: interval["value"] for name, interval in result.test_metrics.items()}


def predicted_values(example: ExampleRun, target: str) -> np.ndarray:
    """The registered regressor's predictions for the sample rows (target left out)."""
    prediction = example.model.predict(example.rows.drop(target))
    assert example.model.task == "regression" and prediction.values is not None
    assert prediction.values.shape == (example.rows.height,)
    assert np.isfinite(prediction.values).all()
    return prediction.values


@pytest.mark.slow  # a minute: LightGBM grows one tree per class and round
def test_wine_quality_is_multiclass_with_grade_nine_merged(run_example: RunExample) -> None:
    example = run_example("wine-quality")
    assert example.result.task == "multiclass"
    metrics = metric_values(example.result)
    assert metrics["macro_f1"] > 0.2
    assert metrics["log_loss"] < np.log(6)  # better than guessing among six grades
    assert metrics["roc_auc_ovr"] > 0.6
    model = example.model
    assert model.signature.classes == ["3", "4", "5", "6", "7", "8"]
    assert "colour" in model.signature.names and "quality" not in model.signature.names
    prediction = model.predict(example.rows.drop("quality"))
    assert prediction.probabilities.shape == (example.rows.height, 6)
    assert np.allclose(prediction.probabilities.sum(axis=1), 1.0)
    assert set(prediction.labels) <= set(model.signature.classes)


def test_california_housing_regresses_the_house_value(run_example: RunExample) -> None:
    example = run_example("california-housing")
    assert example.result.task == "regression"
    metrics = metric_values(example.result)
    assert metrics["r2"] > 0.6
    assert metrics["mae"] < metrics["rmse"] < 80_000  # dollars; the target's sd is ~115,000
    assert "ocean_proximity" in example.model.signature.names
    values = predicted_values(example, "median_house_value")
    assert (values > -100_000).all() and (values < 1_000_000).all()


def test_bike_sharing_forecasts_later_hours_without_leaking_counts(run_example: RunExample) -> None:
    example = run_example("bike-sharing")
    assert example.result.task == "regression"
    metrics = metric_values(example.result)
    assert metrics["r2"] > 0.5
    assert metrics["mae"] < metrics["rmse"] < 150  # bikes per hour; the target's sd is ~181
    names = example.model.signature.names
    assert not {"casual", "registered", "instant", "cnt", "dteday"} & set(names)  # dteday orders
    assert {"hr", "temp", "workingday"} <= set(names)
    assert example.rows.schema["dteday"] == pl.Date
    predicted_values(example, "cnt")
