"""The work one trial does: cross-validate a configuration, or fit it on chosen rows.

Pure functions of a :class:`Problem`; they run inside worker processes (see
:mod:`keelson.train.workers`), so a stuck trial can be killed at the deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from keelson.features.preprocess import ColumnKinds
from keelson.spec import TaskKind
from keelson.train.candidates import Config, make_pipeline
from keelson.train.metrics import metric
from keelson.train.split import Fold

TRAIN_SCORE_ROWS = 5000  # the training score (for the over-fitting gap) uses at most this many


@dataclass(frozen=True)
class Problem:
    """Everything a worker needs to run any trial; sent to each worker once."""

    features: pl.DataFrame
    labels: np.ndarray
    folds: list[Fold]
    task: TaskKind
    n_classes: int  # 0 for regression
    metric: str
    seed: int
    threads: int = 1

    def kinds(self) -> ColumnKinds:
        return ColumnKinds.of(self.features)


@dataclass
class Outcome:
    """A cross-validated trial: per-fold scores, out-of-fold predictions, timings."""

    state: str  # complete | pruned | failed
    score: float | None = None
    fold_scores: list[float] = field(default_factory=list)
    train_scores: list[float] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    oof: np.ndarray | None = None  # NaN on rows no fold scored
    error: str | None = None


def predict_scores(
    pipeline: Any, features: pl.DataFrame, task: TaskKind, n_classes: int
) -> np.ndarray:
    """Scores in the task's shape, whatever classes the fitted rows happened to contain."""
    if task == "regression":
        return np.asarray(pipeline.predict(features), dtype=np.float64)
    probabilities = np.asarray(pipeline.predict_proba(features), dtype=np.float64)
    full = np.zeros((features.height, n_classes))
    full[:, np.asarray(pipeline.classes_, dtype=int)] = probabilities
    return full[:, 1] if task == "binary" else full


def cross_validate(
    problem: Problem,
    config: Config,
    prune_bars: list[float] | None = None,
) -> Outcome:
    """Fit and score ``config`` on every fold; stop early (pruned) when a running mean is
    worse than ``prune_bars[i]`` after fold ``i`` (the median of earlier trials there)."""
    scorer = metric(problem.task, problem.metric)
    features, kinds = problem.features, problem.kinds()
    outcome = Outcome("complete")
    predicted = _OutOfFold(problem)
    for index, (fit_rows, score_rows) in enumerate(problem.folds):
        began = time.monotonic()
        pipeline = make_pipeline(config, kinds, problem.task, problem.threads, problem.seed)
        pipeline.fit(features[fit_rows], problem.labels[fit_rows])
        outcome.fit_seconds.append(time.monotonic() - began)
        scores = predict_scores(pipeline, features[score_rows], problem.task, problem.n_classes)
        predicted.add(score_rows, scores)
        outcome.fold_scores.append(scorer.fn(problem.labels[score_rows], scores))
        outcome.train_scores.append(_train_score(problem, pipeline, features, fit_rows))
        running = float(np.mean(outcome.fold_scores))
        last = index == len(problem.folds) - 1
        if prune_bars and not last and scorer.sign() * running < scorer.sign() * prune_bars[index]:
            outcome.state, outcome.score = "pruned", running
            return outcome
    outcome.score = float(np.mean(outcome.fold_scores))
    outcome.oof = predicted.mean()
    return outcome


def fit(problem: Problem, config: Config) -> Any:
    """``config`` fitted on every row of the problem (the final refit)."""
    pipeline = make_pipeline(config, problem.kinds(), problem.task, problem.threads, problem.seed)
    return pipeline.fit(problem.features, problem.labels)


def fold_importance(problem: Problem, config: Config, folds: int = 3) -> dict[str, float]:
    """Permutation importance of each column on held-out fold rows, averaged over folds
    (only the training part: the test set plays no part in choosing features)."""
    from keelson.train.importance import permutation_importance

    totals: dict[str, list[float]] = {}
    for fit_rows, score_rows in problem.folds[:folds]:
        pipeline = make_pipeline(
            config, problem.kinds(), problem.task, problem.threads, problem.seed
        )
        pipeline.fit(problem.features[fit_rows], problem.labels[fit_rows])
        held_out = problem.features[score_rows], problem.labels[score_rows]
        for row in permutation_importance(pipeline, *held_out, problem, repeats=2):
            totals.setdefault(row["feature"], []).append(row["importance"])
    return {column: float(np.mean(values)) for column, values in totals.items()}


def _train_score(
    problem: Problem, pipeline: Any, features: pl.DataFrame, rows: np.ndarray
) -> float:
    if rows.size > TRAIN_SCORE_ROWS:
        rows = np.random.default_rng(problem.seed).choice(rows, TRAIN_SCORE_ROWS, replace=False)
    scores = predict_scores(pipeline, features[rows], problem.task, problem.n_classes)
    try:
        return metric(problem.task, problem.metric).fn(problem.labels[rows], scores)
    except ValueError:
        return float("nan")


class _OutOfFold:
    """Each row's out-of-fold prediction: the mean over the repeats that scored it."""

    def __init__(self, problem: Problem) -> None:
        rows = problem.labels.size
        shape = (rows, problem.n_classes) if problem.task == "multiclass" else (rows,)
        self.total, self.count = np.zeros(shape), np.zeros(rows)

    def add(self, rows: np.ndarray, scores: np.ndarray) -> None:
        self.total[rows] += scores
        self.count[rows] += 1

    def mean(self) -> np.ndarray:
        """NaN on rows no fold scored."""
        count = self.count if self.total.ndim == 1 else self.count[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, self.total / count, np.nan)


def learning_points(
    problem: Problem,
    config: Config,
    deadline: float,
    ordered: bool,
    known: list[tuple[float, float]] | None = None,
) -> list[dict[str, float | int]]:
    """The learning curve of ``config`` on (at most three of) the folds, until ``deadline``.

    ``known``: the trial's own (training, held-out) score on each fold, which is the
    curve's full-size point: only the smaller shares are fitted."""
    from keelson.train.generalisation import full_point, learning_curve

    scorer = metric(problem.task, problem.metric)
    features, kinds = problem.features, problem.kinds()

    def score(fit_rows: np.ndarray, score_rows: np.ndarray) -> tuple[float, float]:
        pipeline = make_pipeline(config, kinds, problem.task, problem.threads, problem.seed)
        pipeline.fit(features[fit_rows], problem.labels[fit_rows])
        held_out = predict_scores(pipeline, features[score_rows], problem.task, problem.n_classes)
        return (
            _train_score(problem, pipeline, features, fit_rows),
            scorer.fn(problem.labels[score_rows], held_out),
        )

    chosen = slice(-3, None) if ordered else slice(None, 3)
    folds = problem.folds[chosen]
    fractions = (0.1, 0.25, 0.5) if known is not None else (0.1, 0.25, 0.5, 1.0)
    points = learning_curve(score, folds, fractions, problem.seed, deadline, ordered=ordered)
    if known is not None:
        points.append(full_point(folds, known[chosen]))
    return [point.to_dict() for point in points]
