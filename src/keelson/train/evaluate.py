"""Test metrics with bootstrap confidence intervals, and the binary decision threshold.

Labels and scores follow :mod:`keelson.train.metrics`. Bootstrap resamples are vectors
of row counts, scored all at once with matrix arithmetic, in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keelson.spec import Costs, TaskKind
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
    weighted = {
        "binary": lambda c: _weighted_metrics(y, scores, threshold or 0.5, c, costs),
        "multiclass": lambda c: _weighted_multiclass(y, scores, c),
        "regression": lambda c: _weighted_regression(y, scores, c),
    }[task]
    chunks = [
        weighted(rng.multinomial(y.size, np.full(y.size, 1 / y.size), n))
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


def _weighted_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, counts: np.ndarray, costs: Costs | None = None
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
        brier = counts @ (p - y) ** 2 / counts.sum(axis=1)
    extra = {}
    if costs is not None:
        fn_t = total_pos - tp_t
        extra["cost"] = (fp_t * costs.false_positive + fn_t * costs.false_negative) / counts.sum(
            axis=1
        )
    return extra | {
        "brier": brier,
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "log_loss": log_loss,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "balanced_accuracy": (recall + specificity) / 2,
    }


def _weighted_multiclass(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    counts = counts.astype(np.float64)
    k, total = p.shape[1], counts.sum(axis=1)
    onehot = np.eye(k)[y.astype(int)]
    predicted = np.eye(k)[np.argmax(p, axis=1)]
    loss = -np.log(np.clip(p[np.arange(y.size), y.astype(int)], 1e-15, 1.0))
    tp, actual, flagged = counts @ (onehot * predicted), counts @ onehot, counts @ predicted
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(actual > 0, tp / actual, np.nan)
        precision = np.where(flagged > 0, tp / flagged, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        auc = [
            _weighted_metrics((y == c).astype(np.int8), p[:, c], 0.5, counts)["roc_auc"]
            for c in range(k)
        ]
    return {
        "log_loss": counts @ loss / total,
        "accuracy": tp.sum(axis=1) / total,
        "macro_f1": np.nanmean(np.where(np.isnan(recall), np.nan, f1), axis=1),
        "balanced_accuracy": np.nanmean(recall, axis=1),
        "roc_auc_ovr": np.nanmean(np.column_stack(auc), axis=1),
    }


def _weighted_regression(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    counts = counts.astype(np.float64)
    total = counts.sum(axis=1)
    squared = counts @ (y - p) ** 2
    mean = counts @ y / total
    spread = counts @ y**2 - total * mean**2
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(spread > 0, 1.0 - squared / spread, 0.0)
    return {
        "rmse": np.sqrt(squared / total),
        "mae": counts @ np.abs(y - p) / total,
        "r2": r2,
    }
