"""Test metrics with bootstrap confidence intervals, and the binary decision threshold.

Labels and scores follow :mod:`keelson.train.metrics`. Bootstrap resamples are vectors
of row counts, scored all at once with matrix arithmetic, in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keelson.spec import Costs, TaskKind
from keelson.train import weighted
from keelson.train.metrics import scores_of


def confusion(y: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int, int]:
    """(true negatives, false positives, false negatives, true positives)."""
    tp = int(np.sum((predicted == 1) & (y == 1)))
    fp = int(np.sum((predicted == 1) & (y == 0)))
    fn = int(np.sum((predicted == 0) & (y == 1)))
    return int(y.size - tp - fp - fn), fp, fn, tp


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def at_threshold(
    y: np.ndarray, p: np.ndarray, threshold: float, costs: Costs | None = None
) -> dict[str, float]:
    """Decision metrics at ``threshold``; ``cost`` is the mean cost per row (lower is better)."""
    tn, fp, fn, tp = confusion(y, (p >= threshold).astype(int))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    values = {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "balanced_accuracy": (recall + _ratio(tn, tn + fp)) / 2,
    }
    if costs is not None:
        values["cost"] = (fp * costs.false_positive + fn * costs.false_negative) / max(y.size, 1)
    return values


def all_metrics(
    task: TaskKind,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    costs: Costs | None = None,
) -> dict[str, float]:
    values = scores_of(task, y, scores)
    if task == "binary" and threshold is not None:
        values |= at_threshold(y, scores, threshold, costs)
    return values


def tune_threshold(
    y: np.ndarray, p: np.ndarray, metric: str, costs: Costs | None = None
) -> tuple[float, float]:
    """The threshold among the score quantiles that optimises ``metric``; (threshold, value).

    ``cost`` is minimised (with ``costs``); every other decision metric is maximised.
    """
    candidates = np.unique(np.quantile(p, np.linspace(0.0, 1.0, 401)))
    values = np.array([at_threshold(y, p, float(t), costs)[metric] for t in candidates])
    best = int(np.argmin(values) if metric == "cost" else np.argmax(values))
    return float(candidates[best]), float(values[best])


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def bootstrap(
    task: TaskKind,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    resamples: int,
    seed: int,
    costs: Costs | None = None,
) -> dict[str, Interval]:
    """Percentile bootstrap 95 % intervals of every metric on a held-out set."""
    rng = np.random.default_rng(seed)
    point = all_metrics(task, y, scores, threshold, costs)
    resampled = {
        "binary": lambda c: weighted.binary(y, scores, threshold or 0.5, c, costs),
        "multiclass": lambda c: weighted.multiclass(y, scores, c),
        "regression": lambda c: weighted.regression(y, scores, c),
    }[task]
    chunks = [
        resampled(rng.multinomial(y.size, np.full(y.size, 1 / y.size), n))
        for n in _chunk_sizes(resamples, 100)
    ]
    draws = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
    return {
        name: Interval(value, *_percentiles(draws[name], value))
        for name, value in point.items()
        if name in draws
    }


def _chunk_sizes(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def _percentiles(values: np.ndarray, fallback: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return fallback, fallback
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
