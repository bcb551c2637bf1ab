"""Greedy ensemble selection with replacement (Caruana et al., 2004) on out-of-fold predictions.

Start from the best single model; each round adds the model (repeats allowed) whose
inclusion gives the best blended score; a model's weight is how often it was added.
The ensemble kept is the best one seen, so it never scores worse than the best single
model on the rows it was selected on. This is AutoGluon's ``WeightedEnsemble`` and
auto-sklearn's ensemble builder. Given each row's validation fold, a blend is scored as
the search scores a trial, by the mean of its per-fold scores: pooled over the folds of
a time split, the periods' different base rates would reward a model for how its scores
compare across periods, which no test set asks of it.

Predictions follow the task's shape: binary ``(n,)`` probabilities, multiclass ``(n, k)``
probabilities, regression ``(n,)`` values. Blending is a weighted mean, so blended
class probabilities still sum to one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]
PATIENCE = 5  # rounds without a better ensemble before selection stops


@dataclass(frozen=True, eq=False)
class Ensemble:
    """Weights per input model (summing to one) and the out-of-fold scores behind them."""

    weights: np.ndarray
    score: float
    best_single: int
    best_single_score: float
    higher_is_better: bool

    @property
    def members(self) -> tuple[int, ...]:
        """Indices of the models with a positive weight, in input order."""
        return tuple(int(i) for i in np.flatnonzero(self.weights > 0))

    def improves(self, tolerance: float = 0.0) -> bool:
        """Whether the ensemble beats the best single model by more than ``tolerance``."""
        gain = self.score - self.best_single_score
        return (gain if self.higher_is_better else -gain) > tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": [float(w) for w in self.weights],
            "members": list(self.members),
            "score": self.score,
            "best_single": self.best_single,
            "best_single_score": self.best_single_score,
        }


def select_ensemble(
    predictions: Sequence[np.ndarray],
    y: np.ndarray,
    metric: Metric,
    higher_is_better: bool,
    rounds: int = 25,
    mask: np.ndarray | None = None,
    folds: np.ndarray | None = None,
) -> Ensemble:
    """Caruana selection over ``predictions`` (one per model), scored on the ``mask`` rows.

    ``mask`` marks the rows that have an out-of-fold prediction (all rows when None);
    ``folds`` gives each row's validation fold (None: the rows are scored all at once).
    Ties between candidates go to the lowest index, so the result is deterministic.
    """
    stacked, y = _covered(predictions, y, mask)
    if folds is not None:
        folds = np.asarray(folds) if mask is None else np.asarray(folds)[np.asarray(mask, bool)]
    sign = 1.0 if higher_is_better else -1.0
    score = _per_fold(metric, y, folds)
    singles = np.array([sign * score(p) for p in stacked])
    first = int(np.argmax(singles))
    counts = np.zeros(len(stacked), dtype=np.int64)
    counts[first] = 1
    total, best_counts, best = stacked[first].copy(), counts.copy(), singles[first]
    stale = 0
    for size in range(2, rounds + 1):
        scores = np.array([sign * score((total + p) / size) for p in stacked])
        chosen = int(np.argmax(scores))  # the first of equal scores: lowest index
        counts[chosen] += 1
        total += stacked[chosen]
        if scores[chosen] > best:
            best, best_counts, stale = scores[chosen], counts.copy(), 0
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    weights = best_counts / best_counts.sum()
    weights.setflags(write=False)
    return Ensemble(
        weights, float(sign * best), first, float(sign * singles[first]), higher_is_better
    )


def _per_fold(
    metric: Metric, y: np.ndarray, folds: np.ndarray | None
) -> Callable[[np.ndarray], float]:
    """The metric of a prediction: the mean over ``folds`` of each fold's score."""
    if folds is None:
        return lambda p: metric(y, p)
    rows = [np.flatnonzero(folds == fold) for fold in np.unique(folds)]
    return lambda p: float(np.mean([metric(y[r], p[r]) for r in rows]))


def blend(predictions: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The weighted mean of ``predictions``; models with zero weight are not read."""
    weights = np.asarray(weights, dtype=float)
    if len(predictions) != weights.size:
        raise ValueError(
            f"blend needs one weight per prediction. Got {weights.size} weights "
            f"for {len(predictions)} predictions instead."
        )
    if (weights < 0).any() or not weights.any():
        raise ValueError(
            f"blend needs non-negative weights, one at least positive. Got {weights} instead."
        )
    members = np.flatnonzero(weights).tolist()
    total = sum(weights[i] * np.asarray(predictions[i], dtype=np.float64) for i in members)
    return np.asarray(total) / weights[members].sum()


def _covered(
    predictions: Sequence[np.ndarray], y: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions stacked as (models, rows, ...) and labels, restricted to the ``mask`` rows."""
    if len(predictions) == 0:
        raise ValueError("The 'predictions' parameter of select_ensemble must not be empty.")
    shapes = {np.shape(p) for p in predictions}
    if len(shapes) != 1:
        raise ValueError(
            "The 'predictions' parameter of select_ensemble must hold arrays of one shape. "
            f"Got shapes {sorted(shapes)} instead."
        )
    stacked = np.stack([np.asarray(p, dtype=float) for p in predictions])
    if stacked.shape[1] != len(y):
        raise ValueError(
            f"select_ensemble needs one label per prediction row. Got {len(y)} labels "
            f"for {stacked.shape[1]} rows instead."
        )
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(y),):
            raise ValueError(
                f"The 'mask' parameter of select_ensemble must have shape ({len(y)},). "
                f"Got {mask.shape} instead."
            )
        stacked, y = stacked[:, mask], np.asarray(y)[mask]
    if y.size == 0 or not np.isfinite(stacked).all():
        raise ValueError(
            "select_ensemble needs finite predictions on at least one row; "
            "pass 'mask' to leave out rows without an out-of-fold prediction."
        )
    return stacked, np.asarray(y)
