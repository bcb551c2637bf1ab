"""A binary :class:`Problem` over a generated frame, as several train tests need one."""

from __future__ import annotations

import numpy as np
import polars as pl

from keelson.spec import Split
from keelson.train.crossval import Problem
from keelson.train.split import folds


def binary_problem(
    frame: pl.DataFrame, labels: np.ndarray, k: int = 2, metric: str = "roc_auc"
) -> Problem:
    return Problem(
        features=frame,
        labels=labels,
        folds=folds(frame, labels, Split(), "stratified", k),
        task="binary",
        n_classes=2,
        metric=metric,
        seed=0,
    )
