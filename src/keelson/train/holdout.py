"""The test rows a registered model was scored on, rebuilt from its lineage.

A model's lineage records its dataset version, split and target; splitting that
dataset version again gives the same test rows, so two models can be compared on
exactly the rows neither was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from pydantic import ValidationError

from keelson.errors import KeelsonError
from keelson.spec import TASK_METRICS, Split, Target
from keelson.store.store import Store
from keelson.store.tables import ModelVersion
from keelson.train.split import split
from keelson.train.task import Task


@dataclass(frozen=True)
class Holdout:
    task: Task
    features: pl.DataFrame
    labels: np.ndarray
    dataset_version: str


def holdout_of(store: Store, version: ModelVersion) -> Holdout:
    """The test rows of ``version``; a clear error when its lineage cannot rebuild them."""
    from keelson.data.versions import load_version

    lineage = version.lineage
    where = f"model {version.name} v{version.version}"
    try:
        target = Target(**lineage["target"])
        split_spec = Split(**lineage["split"])
        kind = lineage["task"]
    except (KeyError, ValidationError):
        raise KeelsonError(
            "its lineage does not record the task, target and split of this keelson.",
            where=where,
            hint="It was registered by an older keelson; retrain it to compare it.",
        ) from None
    if split_spec.test == 0:
        raise KeelsonError(
            "it was trained without a held-out test set (split.test: 0).",
            where=where,
            hint="Compare models trained with a test split.",
        )
    table = load_version(store, lineage["dataset_version"])
    task = Task(kind, target.column, list(lineage.get("classes", [])), TASK_METRICS[kind][0])
    test = split(table, task, split_spec).test
    features, labels = task.split_frame(test)
    return Holdout(task, features, labels, lineage["dataset_version"])


def same_holdout(a: ModelVersion, b: ModelVersion) -> bool:
    keys = ("dataset_version", "split", "target", "task")
    return all(a.lineage.get(key) == b.lineage.get(key) for key in keys)
