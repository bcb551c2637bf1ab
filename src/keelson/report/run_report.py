"""The HTML report every training run writes: one self-contained page that works offline."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from keelson.report import plots
from keelson.report.html import finite, template, write_text_atomic

FORMAT_VERSION = 1
TOP_FEATURES = 20
_HEADLINE = ("roc_auc", "pr_auc")
_METRIC_NAMES = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "log_loss": "log loss",
    "brier": "Brier score",
    "balanced_accuracy": "balanced accuracy",
    "accuracy": "accuracy",
}
_LOWER_IS_BETTER = frozenset({"log_loss", "brier", "brier_score", "mse", "rmse", "mae"})


@dataclass(frozen=True)
class MetricInterval:
    """A test-set metric with its bootstrap 95 % confidence interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class RunReport:
    """Everything a training run records for its report; plain data, no behaviour."""

    project: str
    run_id: str
    created_at: str
    keelson_version: str
    model_name: str
    model_version: int | None
    dataset: dict[str, Any]
    sources: list[dict[str, Any]]
    quarantine_path: str | None
    profile: list[dict[str, Any]]
    search: list[dict[str, Any]]
    search_metric: str
    best: dict[str, Any]
    threshold: float
    threshold_metric: str
    y_true: list[int]
    y_score: list[float]
    test_metrics: dict[str, MetricInterval]
    feature_importance: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    budget_seconds: float
    search_seconds: float

    def __post_init__(self) -> None:
        if len(self.y_true) != len(self.y_score):
            raise ValueError(
                "The 'y_true' and 'y_score' fields of RunReport must have the same length. "
                f"Got {len(self.y_true)} and {len(self.y_score)} instead."
            )


def render(report: RunReport) -> str:
    """Return the report as one HTML document with inline SVG plots and no external links."""
    return template("run.html.j2").render(r=report, **_context(report))


def write(report: RunReport, path: Path) -> Path:
    """Render ``report`` to ``path`` atomically (temporary file, fsync, rename); return ``path``."""
    return write_text_atomic(Path(path), render(report))


def _context(report: RunReport) -> dict[str, Any]:
    scores = np.asarray(report.y_score, dtype=float)
    finite = np.isfinite(scores)
    y_true = np.asarray(report.y_true, dtype=int)[finite]
    y_score = scores[finite]
    confusion = _Confusion.at(y_true, y_score, report.threshold)
    return {
        "format_version": FORMAT_VERSION,
        "created": _display_time(report.created_at),
        "metric_names": _METRIC_NAMES,
        "headline": {key: report.test_metrics.get(key) for key in _HEADLINE},
        "metrics": _ordered_metrics(report.test_metrics),
        "test": {"rows": int(y_true.size), "dropped": int((~finite).sum())},
        "curves": _curves(y_true, y_score, confusion, report.threshold),
        "confusion": confusion,
        "confusion_svg": _confusion_svg(confusion, report.dataset),
        "importance": _importance(report.feature_importance),
        "search": _search(report),
        "steps_total": _steps_total(report.steps),
    }


@dataclass(frozen=True)
class _Confusion:
    """Counts at the decision threshold (``score >= threshold`` predicts positive)."""

    tn: int
    fp: int
    fn: int
    tp: int

    @classmethod
    def at(cls, y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> _Confusion:
        actual, predicted = y_true == 1, y_score >= threshold
        return cls(
            tn=int(np.sum(~actual & ~predicted)),
            fp=int(np.sum(~actual & predicted)),
            fn=int(np.sum(actual & ~predicted)),
            tp=int(np.sum(actual & predicted)),
        )

    @property
    def total(self) -> int:
        return self.tn + self.fp + self.fn + self.tp

    @property
    def roc_point(self) -> plots.Point:
        """(false positive rate, true positive rate), if both classes are present."""
        negatives, positives = self.tn + self.fp, self.tp + self.fn
        if not negatives or not positives:
            return None
        return self.fp / negatives, self.tp / positives

    @property
    def pr_point(self) -> plots.Point:
        """(recall, precision), if anything is positive and anything is predicted positive."""
        positives, predicted = self.tp + self.fn, self.tp + self.fp
        if not positives or not predicted:
            return None
        return self.tp / positives, self.tp / predicted

    def matrix(self) -> np.ndarray:
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])


def _curves(
    y_true: np.ndarray, y_score: np.ndarray, confusion: _Confusion, threshold: float
) -> dict[str, str] | None:
    if np.unique(y_true).size < 2:
        return None
    return {
        "roc": plots.roc_svg(y_true, y_score, confusion.roc_point, threshold),
        "pr": plots.pr_svg(y_true, y_score, confusion.pr_point, threshold),
    }


def _confusion_svg(confusion: _Confusion, dataset: dict[str, Any]) -> str | None:
    if not confusion.total:
        return None
    positive = dataset.get("positive")
    negative = dataset.get("negative", "other")
    labels = [str(negative), str(positive)] if positive is not None else ["negative", "positive"]
    return plots.confusion_svg(confusion.matrix(), labels)


def _ordered_metrics(metrics: dict[str, MetricInterval]) -> list[tuple[str, MetricInterval]]:
    known = [name for name in _METRIC_NAMES if name in metrics]
    return [(name, metrics[name]) for name in known + sorted(set(metrics) - set(known))]


def _importance(rows: list[dict[str, Any]]) -> dict[str, Any]:
    usable = [row for row in rows if finite(row.get("importance"))]
    usable.sort(key=lambda row: -float(row["importance"]))
    top = usable[:TOP_FEATURES]
    svg = None
    if top:
        svg = plots.importance_svg(
            [str(row.get("feature")) for row in top],
            [float(row["importance"]) for row in top],
            [float(row["std"]) if finite(row.get("std")) else 0.0 for row in top],
        )
    return {"svg": svg, "shown": len(top), "rows": usable, "total": len(rows)}


def _search(report: RunReport) -> dict[str, Any]:
    trials = sorted(report.search, key=lambda trial: trial.get("trial", 0))
    scored = [trial for trial in trials if finite(trial.get("score"))]
    lower = report.search_metric in _LOWER_IS_BETTER
    best = None
    svg = None
    if scored:
        best = (min if lower else max)(scored, key=lambda trial: float(trial["score"]))
        svg = plots.search_svg(
            [int(trial.get("trial", 0)) for trial in scored],
            [float(trial["score"]) for trial in scored],
            [str(trial.get("family")) for trial in scored],
            report.search_metric,
            lower,
        )
    states = Counter(str(trial.get("state")) for trial in trials)
    budget = report.search_seconds / report.budget_seconds if report.budget_seconds > 0 else None
    return {
        "trials": trials,
        "svg": svg,
        "best_trial": best.get("trial") if best else None,
        "unscored": len(trials) - len(scored),
        "states": sorted(states.items()),
        "budget_used": budget,
        "direction": "lower" if lower else "higher",
    }


def _steps_total(steps: list[dict[str, Any]]) -> dict[str, float | None]:
    def values(key: str) -> list[float]:
        return [float(step[key]) for step in steps if finite(step.get(key))]

    peaks = values("peak_mb")
    return {
        "wall_s": sum(values("wall_s")),
        "cpu_s": sum(values("cpu_s")),
        "peak_mb": max(peaks) if peaks else None,
    }


def _display_time(stamp: str) -> str:
    try:
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return str(stamp)
    zone = f" {moment.tzname()}" if moment.tzinfo else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone
