"""The HTML report every training run writes: one self-contained page that works offline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from keelson.report import plots
from keelson.report.html import finite, number, percent, template, write_text_atomic
from keelson.train.metrics import LABELS

FORMAT_VERSION = 2
TOP_FEATURES = 20
MAX_SCATTER = 2000
TASKS = ("binary", "multiclass", "regression")
_HEADLINE = {
    "binary": ("roc_auc", "pr_auc"),
    "multiclass": ("log_loss", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
}
_METRIC_NAMES = LABELS
_LOWER_IS_BETTER = frozenset({"log_loss", "brier", "brier_score", "mse", "rmse", "mae"})
_TEST_SECTIONS = {
    "binary": {"roc": "ROC curve", "pr": "Precision–recall curve", "confusion": "Confusion matrix"},
    "multiclass": {"confusion": "Confusion matrix", "per-class": "Per-class metrics"},
    "regression": {"prediction": "Predicted against actual", "residuals": "Residuals"},
}
_CALIBRATION_METRICS = (
    ("log_loss", "log loss"),
    ("brier", "Brier score"),
    ("ece", "expected calibration error"),
)
_SEVERITY_RANK = {"critical": 0, "warning": 1}
NO_TEST = "No held-out test: the figures below are cross-validation estimates."


@dataclass(frozen=True)
class MetricInterval:
    """A test-set metric with its bootstrap 95 % confidence interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class RunReport:
    """Everything a training run records for its report; plain data, no behaviour.

    ``y_true`` holds 0/1 (binary), class indices (multiclass) or values (regression);
    ``y_score`` holds P(positive), one list of class probabilities per row, or predicted
    values. Both are empty when the run kept no held-out test set.
    """

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
    threshold: float | None
    threshold_metric: str | None
    y_true: list[float]
    y_score: list[Any]
    test_metrics: dict[str, MetricInterval]
    feature_importance: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    budget_seconds: float
    search_seconds: float
    task: str = "binary"
    classes: list[str] = field(default_factory=list)
    costs: dict[str, float] | None = None
    ensemble: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    imbalance: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    feature_selection: dict[str, Any] | None = None
    wall_seconds: float | None = None
    environment: dict[str, str] = field(default_factory=dict)
    cv_metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(
                f"The 'task' field of RunReport must be one of {', '.join(map(repr, TASKS))}. "
                f"Got {self.task!r} instead."
            )
        if len(self.y_true) != len(self.y_score):
            raise ValueError(
                "The 'y_true' and 'y_score' fields of RunReport must have the same length. "
                f"Got {len(self.y_true)} and {len(self.y_score)} instead."
            )
        if self.task == "multiclass":
            _probabilities(self.y_score, len(self.classes))


def render(report: RunReport) -> str:
    """Return the report as one HTML document with inline SVG plots and no external links."""
    return template("run.html.j2").render(r=report, **_context(report))


def write(report: RunReport, path: Path) -> Path:
    """Render ``report`` to ``path`` atomically (temporary file, fsync, rename); return ``path``."""
    return write_text_atomic(Path(path), render(report))


def _context(report: RunReport) -> dict[str, Any]:
    has_test = bool(report.y_true)
    timing = _timing(report)
    return {
        "format_version": FORMAT_VERSION,
        "created": _display_time(report.created_at),
        "metric_names": _METRIC_NAMES,
        "has_test": has_test,
        "no_test": NO_TEST,
        "sections": _sections(report, has_test),
        "warnings": _warnings(report, timing),
        "headline": _headline(report, has_test),
        "metrics": _metric_rows(report, has_test),
        "test": _TEST_VIEWS[report.task](report),
        "calibration": _calibration(report.calibration),
        "evidence": _evidence(report),
        "ensemble": _ensemble(report.ensemble),
        "selection": _selection(report.feature_selection),
        "importance": _importance(report.feature_importance),
        "search": _search(report),
        "timing": timing,
        "steps_total": _steps_total(report.steps),
    }


def _sections(report: RunReport, has_test: bool) -> dict[str, str]:
    """Anchor → heading of every section the page shows, in page order (drives the nav)."""
    sections = {
        "summary": "Summary",
        "metrics": "Test metrics" if has_test else "Cross-validation metrics",
    }
    if has_test:
        sections |= _TEST_SECTIONS[report.task]
    if report.calibration:
        sections["calibration"] = "Calibration"
    sections["generalisation"] = "Generalisation"
    if report.ensemble:
        sections["ensemble"] = "Ensemble"
    sections["importance"] = "Feature importance"
    if report.feature_selection:
        sections["selection"] = "Feature selection"
    sections |= {
        "search": "Search history",
        "data": "Data",
        "sources": "Sources and quarantine",
        "steps": "Steps",
    }
    if report.environment:
        sections["environment"] = "Environment"
    return sections


# ---------------------------------------------------------------- warnings shown at the top


def _warnings(report: RunReport, timing: dict[str, Any]) -> list[dict[str, str]]:
    """Leakage, over-fitting, a missing test set and budget overrun, most severe first."""
    alerts = [
        *_leakage_alerts(report.evidence),
        *_gap_alerts(report),
        *_no_test_alerts(report),
        *_budget_alerts(timing),
    ]
    return sorted(alerts, key=lambda alert: _SEVERITY_RANK.get(alert["severity"], 2))


def _findings(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    findings = list(evidence.get("leakage") or [])
    return sorted(findings, key=lambda finding: _SEVERITY_RANK.get(finding.get("severity"), 2))


def _leakage_alerts(evidence: dict[str, Any]) -> list[dict[str, str]]:
    alerts = []
    for finding in _findings(evidence):
        severity = str(finding.get("severity"))
        if severity not in _SEVERITY_RANK:
            continue
        column = finding.get("column")
        title = "Possible leakage" + (f" in column “{column}”" if column is not None else "")
        message = finding.get("message") or f"The {finding.get('check')} check flagged it."
        alerts.append({"severity": severity, "title": title, "message": str(message)})
    return alerts


def _gap_alerts(report: RunReport) -> list[dict[str, str]]:
    gap = report.evidence.get("gap") or {}
    warning = gap.get("warning")
    if not warning:
        return []
    metric = _METRIC_NAMES.get(report.search_metric, report.search_metric)
    detail = (
        f"Training {metric} {number(gap.get('train_score'))} against cross-validated "
        f"{number(gap.get('cv_score'))}: a gap of {number(gap.get('gap'))}."
    )
    message = f"{warning} {detail}" if isinstance(warning, str) else detail
    return [{"severity": "warning", "title": "Possible over-fitting", "message": message}]


def _no_test_alerts(report: RunReport) -> list[dict[str, str]]:
    if report.y_true:
        return []
    return [{"severity": "warning", "title": "No held-out test set", "message": NO_TEST}]


def _budget_alerts(timing: dict[str, Any]) -> list[dict[str, str]]:
    if not timing["over"]:
        return []
    message = (
        f"The run took {number(timing['wall'], 1)} s against a budget of "
        f"{number(timing['budget'], 1)} s ({percent(timing['used'] - 1)} over). "
        "Raise train.budget.seconds or narrow the search."
    )
    return [{"severity": "warning", "title": "Over budget", "message": message}]


def _timing(report: RunReport) -> dict[str, Any]:
    wall, budget = report.wall_seconds, report.budget_seconds
    used = wall / budget if wall is not None and budget > 0 else None
    return {"wall": wall, "budget": budget, "used": used, "over": used is not None and used > 1}


# ---------------------------------------------------------------- metrics


def _headline(report: RunReport, has_test: bool) -> list[dict[str, Any]]:
    """One summary card per headline metric of the task: test value and CI, else the CV value."""
    cards = []
    for key in _HEADLINE[report.task]:
        interval = report.test_metrics.get(key) if has_test else None
        cv = report.cv_metrics.get(key)
        cards.append(
            {
                "key": key,
                "source": "Test" if has_test else "CV",
                "value": interval.value if interval else (None if has_test else cv),
                "interval": interval,
                "cv": cv if has_test else None,
            }
        )
    return cards


def _metric_rows(report: RunReport, has_test: bool) -> list[dict[str, Any]]:
    names = set(report.cv_metrics) | (set(report.test_metrics) if has_test else set())
    known = [name for name in _METRIC_NAMES if name in names]
    return [
        {
            "name": name,
            "test": report.test_metrics.get(name) if has_test else None,
            "cv": report.cv_metrics.get(name),
            "lower": name in _LOWER_IS_BETTER,
        }
        for name in known + sorted(names - set(known))
    ]


# ---------------------------------------------------------------- the test set, per task


def _binary(report: RunReport) -> dict[str, Any]:
    scores = np.asarray(report.y_score, dtype=float)
    labels = np.asarray(report.y_true, dtype=float)
    keep = np.isfinite(scores) & np.isfinite(labels)
    y_true, y_score = labels[keep].astype(int), scores[keep]
    threshold = 0.5 if report.threshold is None else float(report.threshold)
    confusion = _Confusion.at(y_true, y_score, threshold)
    return {
        "rows": int(y_true.size),
        "dropped": int((~keep).sum()),
        "threshold": threshold,
        "confusion": confusion,
        "curves": _curves(y_true, y_score, confusion, threshold),
        "confusion_svg": _binary_confusion_svg(confusion, _binary_labels(report)),
    }


def _multiclass(report: RunReport) -> dict[str, Any]:
    scores = _probabilities(report.y_score, len(report.classes))
    labels = np.asarray(report.y_true, dtype=float)
    keep = np.isfinite(scores).all(axis=1) & np.isfinite(labels)
    names = report.classes or [str(index) for index in range(scores.shape[1])]
    view: dict[str, Any] = {"rows": int(keep.sum()), "dropped": int((~keep).sum())}
    view |= {"classes": names, "confusion_svg": None, "per_class": [], "average": None}
    if not view["rows"] or not names:
        return view
    y_true, predicted = labels[keep].astype(int), scores[keep].argmax(axis=1)
    counts, per_class = _per_class(y_true, predicted, names)
    average = {key: float(np.mean([row[key] for row in per_class])) for key in _PER_CLASS}
    return view | {
        "confusion_svg": plots.confusion_svg(counts, names),
        "per_class": per_class,
        "average": average | {"support": int(counts.sum())},
    }


_PER_CLASS = ("precision", "recall", "f1")


def _per_class(
    y_true: np.ndarray, predicted: np.ndarray, names: list[str]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The k × k confusion counts (argmax prediction) and precision/recall/F1/support per class."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.arange(len(names))
    counts = confusion_matrix(y_true, predicted, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0
    )
    rows = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f)}
        | {"support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
    ]
    return counts, rows


def _regression(report: RunReport) -> dict[str, Any]:
    predicted = np.asarray(report.y_score, dtype=float)
    actual = np.asarray(report.y_true, dtype=float)
    keep = np.isfinite(predicted) & np.isfinite(actual)
    actual, predicted = actual[keep], predicted[keep]
    view: dict[str, Any] = {"rows": int(actual.size), "dropped": int((~keep).sum())}
    view |= {"scatter": None, "shown": 0, "residuals_svg": None, "residual": None}
    if not actual.size:
        return view
    shown = _subsample(actual.size, MAX_SCATTER)
    residuals = actual - predicted
    low, median, high = np.percentile(residuals, [5, 50, 95])
    return view | {
        "scatter": plots.prediction_svg(actual[shown], predicted[shown]),
        "shown": int(shown.size),
        "residuals_svg": plots.residual_svg(residuals),
        "residual": {
            "mean": float(residuals.mean()),
            "std": float(residuals.std()),
            "p05": float(low),
            "p50": float(median),
            "p95": float(high),
        },
    }


_TEST_VIEWS: dict[str, Callable[[RunReport], dict[str, Any]]] = {
    "binary": _binary,
    "multiclass": _multiclass,
    "regression": _regression,
}


def _probabilities(rows: list[Any], classes: int) -> np.ndarray:
    """Multiclass scores as an (n, k) array; refuse ragged rows or a width that is not k."""
    if not rows:
        return np.empty((0, classes))
    try:
        matrix = np.asarray(rows, dtype=float)
    except (TypeError, ValueError):
        matrix = np.empty(0)
    if matrix.ndim != 2 or (classes and matrix.shape[1] != classes):
        expected = f"{classes} class probabilities" if classes else "one probability per class"
        raise ValueError(
            f"Each row of the 'y_score' field of a multiclass RunReport must hold {expected}. "
            f"Got rows of shape {matrix.shape[1:] if matrix.ndim == 2 else 'ragged or scalar'} "
            "instead."
        )
    return matrix


def _subsample(rows: int, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` of ``rows``, drawn with a fixed seed, in order."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(0).choice(rows, size=limit, replace=False))


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


def _binary_labels(report: RunReport) -> list[str]:
    if len(report.classes) == 2:
        return [str(name) for name in report.classes]
    positive = report.dataset.get("positive")
    if positive is None:
        return ["negative", "positive"]
    return [str(report.dataset.get("negative", "other")), str(positive)]


def _binary_confusion_svg(confusion: _Confusion, labels: list[str]) -> str | None:
    return plots.confusion_svg(confusion.matrix(), labels) if confusion.total else None


# ---------------------------------------------------------------- training evidence


def _calibration(calibration: dict[str, Any] | None) -> dict[str, Any] | None:
    if not calibration:
        return None
    rows = []
    for key, name in _CALIBRATION_METRICS:
        before: Any = calibration.get(f"{key}_before")
        after: Any = calibration.get(f"{key}_after")
        change = after - before if finite(before) and finite(after) else None
        rows.append({"name": name, "before": before, "after": after, "change": change})
    before_curve, after_curve = calibration.get("before") or [], calibration.get("after") or None
    svg = plots.calibration_svg(before_curve, after_curve) if before_curve else None
    return {
        "method": calibration.get("method"),
        "reason": calibration.get("reason"),
        "rows": rows,
        "svg": svg,
    }


def _evidence(report: RunReport) -> dict[str, Any]:
    evidence = report.evidence
    points = [p for p in evidence.get("learning_curve") or [] if finite(p.get("cv_score"))]
    svg = plots.learning_curve_svg(points, report.search_metric) if points else None
    return {
        "gap": evidence.get("gap"),
        "curve": points,
        "curve_svg": svg,
        "verdict": evidence.get("learning_verdict"),
        "leakage": _findings(evidence),
        "leakage_checked": "leakage" in evidence,
    }


def _ensemble(ensemble: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ensemble:
        return None
    members = sorted(
        ensemble.get("members") or [],
        key=lambda member: (-float(member.get("weight") or 0.0), member.get("trial") or 0),
    )
    return {
        "used": bool(ensemble.get("used")),
        "score": ensemble.get("score"),
        "best_single_score": ensemble.get("best_single_score"),
        "members": members,
    }


def _selection(selection: dict[str, Any] | None) -> dict[str, Any] | None:
    if not selection:
        return None
    return {
        "dropped": [str(column) for column in selection.get("dropped") or []],
        "applied": bool(selection.get("applied")),
        "score_before": selection.get("score_before"),
        "score_after": selection.get("score_after"),
        "metric": selection.get("metric"),
        "note": selection.get("note"),
    }


# ---------------------------------------------------------------- model and search


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
    unmeasured = len(rows) - len(usable)
    return {
        "svg": svg,
        "shown": len(top),
        "rows": usable,
        "total": len(rows),
        "unmeasured": unmeasured,
    }


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
