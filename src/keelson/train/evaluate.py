"""Scores, the decision threshold, and bootstrap confidence intervals on held-out data.

Labels are 0/1 with 1 the positive class; scores are positive-class probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Scorer = Callable[[np.ndarray, np.ndarray], float]
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False}


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def _pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


RANKING: dict[str, Scorer] = {"roc_auc": _roc_auc, "pr_auc": _pr_auc, "log_loss": _log_loss}


def confusion(y: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int, int]:
    """(true negatives, false positives, false negatives, true positives)."""
    tp = int(np.sum((predicted == 1) & (y == 1)))
    fp = int(np.sum((predicted == 1) & (y == 0)))
    fn = int(np.sum((predicted == 0) & (y == 1)))
    return int(y.size - tp - fp - fn), fp, fn, tp


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    tn, fp, fn, tp = confusion(y, (p >= threshold).astype(int))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "balanced_accuracy": (recall + _ratio(tn, tn + fp)) / 2,
    }


def all_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    return {name: scorer(y, p) for name, scorer in RANKING.items()} | at_threshold(y, p, threshold)


def tune_threshold(y: np.ndarray, p: np.ndarray, metric: str) -> tuple[float, float]:
    """The threshold among the observed scores that maximises ``metric``; (threshold, value)."""
    candidates = np.unique(np.quantile(p, np.linspace(0.0, 1.0, 401)))
    values = [at_threshold(y, p, float(t))[metric] for t in candidates]
    best = int(np.argmax(values))
    return float(candidates[best]), float(values[best])


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def bootstrap(
    y: np.ndarray, p: np.ndarray, threshold: float, resamples: int, seed: int
) -> dict[str, Interval]:
    """Percentile bootstrap 95 % intervals of every metric on a held-out set.

    Each resample is a vector of row counts; all resamples are scored at once with
    matrix arithmetic over the rows sorted by score (ties grouped), in chunks.
    """
    rng = np.random.default_rng(seed)
    point = all_metrics(y, p, threshold)
    chunks = [
        _weighted_metrics(y, p, threshold, rng.multinomial(y.size, np.full(y.size, 1 / y.size), n))
        for n in _chunk_sizes(resamples, 100)
    ]
    draws = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in point}
    return {
        name: Interval(value, *_percentiles(draws[name], value)) for name, value in point.items()
    }


def _chunk_sizes(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def _percentiles(values: np.ndarray, fallback: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return fallback, fallback
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _weighted_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, counts: np.ndarray
) -> dict[str, np.ndarray]:
    """Every metric for each row of ``counts`` (resamples x rows of multiplicities)."""
    order = np.argsort(-p, kind="stable")
    y, p, counts = y[order], p[order], counts[:, order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])  # tie groups, best score first
    pos = np.add.reduceat(counts * y, starts, axis=1)
    neg = np.add.reduceat(counts * (1 - y), starts, axis=1)
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        neg_below = total_neg[:, None] - np.cumsum(neg, axis=1)
        roc_auc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        pr_auc = (pos / total_pos[:, None] * tp / (tp + fp)).sum(axis=1)
        clipped = np.clip(p, 1e-15, 1 - 1e-15)
        loss = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
        log_loss = counts @ loss / counts.sum(axis=1)
        flagged = (p >= threshold).astype(np.float64)
        tp_t, fp_t = counts @ (flagged * y), counts @ (flagged * (1 - y))
        precision = np.where(tp_t + fp_t > 0, tp_t / (tp_t + fp_t), 0.0)
        recall = tp_t / total_pos
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        specificity = (total_neg - fp_t) / total_neg
    return {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "log_loss": log_loss,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "balanced_accuracy": (recall + specificity) / 2,
    }
