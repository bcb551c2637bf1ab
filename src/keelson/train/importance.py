"""Permutation importance of each input column, measured on held-out rows."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from keelson.train.metrics import metric

if TYPE_CHECKING:
    from keelson.train.crossval import Problem

MAX_ROWS = 5000  # importance is measured on at most this many held-out rows


def permutation_importance(
    pipeline: Any,
    features: pl.DataFrame,
    labels: np.ndarray,
    problem: Problem,
    repeats: int,
    until: float = float("inf"),
) -> list[dict[str, Any]]:
    """Mean worsening of the metric when one column is shuffled; most important first.

    Columns not reached before ``until`` (a ``time.monotonic`` instant) are left out.
    """
    from keelson.train.crossval import predict_scores

    if features.height > MAX_ROWS:
        keep = np.random.default_rng(problem.seed).choice(features.height, MAX_ROWS, replace=False)
        features, labels = features[np.sort(keep)], labels[np.sort(keep)]
    scorer = metric(problem.task, problem.metric)

    def score(frame: pl.DataFrame) -> float:
        return scorer.fn(labels, predict_scores(pipeline, frame, problem.task, problem.n_classes))

    baseline = score(features)
    result = []
    for column in features.columns:
        if time.monotonic() > until:  # out of time: listed, not measured
            result.append({"feature": column, "importance": float("nan"), "std": float("nan")})
            continue
        drops = [
            scorer.sign()
            * (baseline - score(features.with_columns(pl.col(column).shuffle(problem.seed + r))))
            for r in range(repeats)
        ]
        result.append(
            {"feature": column, "importance": float(np.mean(drops)), "std": float(np.std(drops))}
        )
    return sorted(result, key=lambda row: -np.nan_to_num(row["importance"], nan=-np.inf))
