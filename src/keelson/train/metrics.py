"""Metrics per task: name → (function of labels and scores, higher is better).

Scores follow the task: binary P(positive) (n,), multiclass probabilities (n, k),
regression predicted values (n,). Threshold metrics (binary) are in ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keelson.spec import TaskKind

_EPS = 1e-15

LABELS = {  # how a metric is named to people, in the order reports list them
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "roc_auc_ovr": "ROC-AUC (one-vs-rest)",
    "macro_f1": "macro F1",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "log_loss": "log loss",
    "brier": "Brier score",
    "balanced_accuracy": "balanced accuracy",
    "accuracy": "accuracy",
    "cost": "cost per row",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


@dataclass(frozen=True)
class MetricDef:
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool

    def sign(self) -> float:
        """+1 when higher is better: ``sign * value`` is always "larger is better"."""
        return 1.0 if self.higher_is_better else -1.0


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def _pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each row's binary log-loss (probabilities clipped away from 0 and 1)."""
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(row_log_loss(y, p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=float) - y) ** 2))


def _multi_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    picked = np.clip(p[np.arange(y.size), y.astype(int)], _EPS, 1.0)
    return float(-np.mean(np.log(picked)))


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.argmax(p, axis=1) == y))


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    labels = list(range(p.shape[1]))
    return float(f1_score(y, np.argmax(p, axis=1), labels=labels, average="macro", zero_division=0))


def _balanced_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    predicted = np.argmax(p, axis=1)
    recalls = [np.mean(predicted[y == c] == c) for c in np.unique(y)]
    return float(np.mean(recalls))


def _roc_auc_ovr(y: np.ndarray, p: np.ndarray) -> float:
    present = [c for c in range(p.shape[1]) if 0 < np.sum(y == c) < y.size]
    return float(np.mean([_roc_auc((y == c).astype(int), p[:, c]) for c in present]))


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - p) ** 2)))


def _mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(y - p)))


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - p) ** 2) / total) if total else 0.0


METRICS: dict[TaskKind, dict[str, MetricDef]] = {
    "binary": {
        "roc_auc": MetricDef(_roc_auc, True),
        "pr_auc": MetricDef(_pr_auc, True),
        "log_loss": MetricDef(binary_log_loss, False),
        "brier": MetricDef(brier, False),
    },
    "multiclass": {
        "log_loss": MetricDef(_multi_log_loss, False),
        "accuracy": MetricDef(_accuracy, True),
        "macro_f1": MetricDef(_macro_f1, True),
        "balanced_accuracy": MetricDef(_balanced_accuracy, True),
        "roc_auc_ovr": MetricDef(_roc_auc_ovr, True),
    },
    "regression": {
        "rmse": MetricDef(_rmse, False),
        "mae": MetricDef(_mae, False),
        "r2": MetricDef(_r2, True),
    },
}


def metric(task: TaskKind, name: str) -> MetricDef:
    return METRICS[task][name]


def scores_of(task: TaskKind, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Every metric of ``task``; a metric undefined on these rows (one class only) is NaN."""
    values = {}
    for name, definition in METRICS[task].items():
        try:
            values[name] = definition.fn(y, scores)
        except ValueError:
            values[name] = float("nan")
    return values
