"""Metrics of many bootstrap resamples at once: each row of ``counts`` says how many
times each scored row appears in one resample, so a thousand resamples are a few
matrix products instead of a thousand metric calls."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from keelson.spec import Costs

WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def binary(
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


def multiclass(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
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
        auc = [binary((y == c).astype(np.int8), p[:, c], 0.5, counts)["roc_auc"] for c in range(k)]
    return {
        "log_loss": counts @ loss / total,
        "accuracy": tp.sum(axis=1) / total,
        "macro_f1": np.nanmean(np.where(np.isnan(recall), np.nan, f1), axis=1),
        "balanced_accuracy": np.nanmean(recall, axis=1),
        "roc_auc_ovr": np.nanmean(np.column_stack(auc), axis=1),
    }


def regression(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
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


def _log_loss(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    if p.ndim == 1:
        return binary(y, p, 0.5, counts)["log_loss"]
    return multiclass(y, p, counts)["log_loss"]


def _one(task: Callable[..., dict[str, np.ndarray]], name: str) -> WeightedMetric:
    if task is binary:
        return lambda y, p, counts: binary(y, p, 0.5, counts)[name]
    return lambda y, p, counts: task(y, p, counts)[name]


# One metric by name (what a paired comparison resamples).
ONE: dict[str, WeightedMetric] = {
    "roc_auc": _one(binary, "roc_auc"),
    "roc_auc_ovr": _one(multiclass, "roc_auc_ovr"),
    "log_loss": _log_loss,
    "rmse": _one(regression, "rmse"),
    "mae": _one(regression, "mae"),
    "r2": _one(regression, "r2"),
}
