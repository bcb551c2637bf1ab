"""Evidence that a model generalises: the train/CV gap and the learning curve.

A score function is the caller's: ``score(fit_rows, score_rows)`` fits on ``fit_rows``
and returns ``(train_score, held_out_score)``; this module only decides which rows,
averages over folds and says in plain words what the numbers mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keelson.train.metrics import label

ScoreRows = Callable[[np.ndarray, np.ndarray], tuple[float, float]]
ABSOLUTE_GAP = 0.05  # for higher-is-better metrics, all of which lie at or below 1
RELATIVE_GAP = 0.25  # for losses and errors, as a share of the cross-validated value
FLAT = 0.005  # relative change of the CV score below which a learning curve is flat


@dataclass(frozen=True)
class Gap:
    """Training score against cross-validated score; ``gap`` > 0 means over-fitting."""

    metric: str
    train_score: float
    cv_score: float
    gap: float
    relative: float
    warning: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "train_score": self.train_score,
            "cv_score": self.cv_score,
            "gap": self.gap,
            "relative": self.relative,
            "warning": self.warning,
        }


def assess_gap(train_score: float, cv_score: float, metric: str, higher_is_better: bool) -> Gap:
    """Compare the score on the training rows with the cross-validated score.

    ``gap`` is train − cv for higher-is-better metrics and cv − train for losses, so a
    positive gap always means the model does better on rows it has seen; ``relative``
    is the gap as a share of |cv|. The rule for a warning: a higher-is-better metric
    (ROC-AUC, F1, accuracy, R², ... all at most 1) warns when the gap exceeds 0.05; a
    loss or error (log loss, RMSE, MAE) warns when the gap exceeds 25 % of the CV value.
    """
    gap = train_score - cv_score if higher_is_better else cv_score - train_score
    relative = gap / abs(cv_score) if cv_score else (float("inf") if gap > 0 else 0.0)
    over = gap > ABSOLUTE_GAP if higher_is_better else relative > RELATIVE_GAP
    warning = _gap_warning(train_score, cv_score, metric, higher_is_better) if over else None
    return Gap(metric, train_score, cv_score, gap, relative, warning)


def _gap_warning(train: float, cv: float, metric: str, higher_is_better: bool) -> str:
    name = label(metric)
    better = "above" if higher_is_better else "below"
    return (
        f"The training {name} ({train:.3g}) is well {better} the cross-validated {name} "
        f"({cv:.3g}): the model fits the rows it was trained on much better than new rows "
        "(over-fitting). Prefer stronger regularisation, a simpler model or fewer features, "
        "and trust the cross-validated figure."
    )


@dataclass(frozen=True)
class LearningPoint:
    """Mean scores over the folds when fitting on ``fraction`` of each fold's rows."""

    fraction: float
    rows: int
    train_score: float
    cv_score: float
    cv_std: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "rows": self.rows,
            "train_score": self.train_score,
            "cv_score": self.cv_score,
            "cv_std": self.cv_std,
            "fraction": self.fraction,
        }


def learning_curve(
    score: ScoreRows,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    fractions: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0),
    seed: int = 0,
    deadline: float | None = None,
    ordered: bool = False,
) -> list[LearningPoint]:
    """Scores when fitting on growing shares of each fold's fit rows, smallest share first.

    Subsets are nested: one seeded shuffle per fold, of which each fraction takes the
    head; with ``ordered`` (time folds, fit rows in time order) each fraction takes the
    most recent, i.e. last, rows instead. Once ``time.monotonic()`` passes ``deadline``
    no further fit starts and the fractions already finished for every fold are returned.
    """
    _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    pools = [np.asarray(fit) if ordered else rng.permutation(fit) for fit, _ in folds]
    points: list[LearningPoint] = []
    for fraction in sorted(set(fractions)):
        scores = []
        for pool, (_, held_out) in zip(pools, folds, strict=True):
            if deadline is not None and time.monotonic() > deadline:
                return points
            scores.append(score(_subset(pool, fraction, ordered), np.asarray(held_out)))
        points.append(_point(fraction, pools, scores))
    return points


def full_point(
    folds: Sequence[tuple[np.ndarray, np.ndarray]], scores: Sequence[tuple[float, float]]
) -> LearningPoint:
    """The curve's point at all of each fold's fit rows, from (training, held-out) scores
    already measured there (by cross-validation)."""
    return _point(1.0, [np.asarray(fit) for fit, _ in folds], list(scores))


def _check_fractions(fractions: Sequence[float]) -> None:
    bad = [f for f in fractions if not 0.0 < f <= 1.0]
    if bad or not fractions:
        raise ValueError(
            f"The 'fractions' parameter of learning_curve must be a non-empty list of numbers in "
            f"(0, 1]. Got {list(fractions)} instead."
        )


def _rows(pool: np.ndarray, fraction: float) -> int:
    return max(1, round(fraction * pool.size))


def _subset(pool: np.ndarray, fraction: float, ordered: bool) -> np.ndarray:
    n = _rows(pool, fraction)
    return pool[pool.size - n :] if ordered else np.sort(pool[:n])


def _point(
    fraction: float, pools: list[np.ndarray], scores: list[tuple[float, float]]
) -> LearningPoint:
    train, held_out = np.asarray(scores, dtype=np.float64).reshape(-1, 2).T
    return LearningPoint(
        fraction=fraction,
        rows=round(float(np.mean([_rows(pool, fraction) for pool in pools]))),
        train_score=float(train.mean()),
        cv_score=float(held_out.mean()),
        cv_std=float(held_out.std()),
    )


def more_data_verdict(points: Sequence[LearningPoint], higher_is_better: bool, metric: str) -> str:
    """Whether more rows of the same kind would likely help, in one plain sentence.

    Compares the CV score at the largest fraction with the one nearest half of it. A
    change of less than 0.5 % of the score (in either direction) counts as flat.
    """
    name = label(metric)
    ordered = sorted(points, key=lambda point: point.fraction)
    if len(ordered) < 2:
        return (
            f"The learning curve has {len(ordered)} point(s), too few to tell whether more "
            "data would help."
        )
    last = ordered[-1]
    middle = min(ordered[:-1], key=lambda point: abs(point.fraction - last.fraction / 2))
    change = last.cv_score - middle.cv_score
    improvement = change if higher_is_better else -change
    span = f"from {middle.fraction:.0%} to {last.fraction:.0%} of the rows".replace("%", " %")
    if abs(change) <= FLAT * max(abs(middle.cv_score), 1e-12):
        return (
            f"The CV {name} is flat ({change:+.3g}) {span}: more data of the same kind is "
            "unlikely to pay."
        )
    verb = "rises" if change > 0 else "falls"
    if improvement > 0:
        return (
            f"The CV {name} still {verb} by {abs(change):.3g} {span}: more data would likely help."
        )
    return (
        f"The CV {name} {verb} by {abs(change):.3g} {span}, getting worse with more rows: look "
        "for drift or label noise before adding data of the same kind."
    )
