"""The run report renders every task and section, works offline, escapes text, warns on top."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from keelson.report import MetricInterval, RunReport, render, write

HEADINGS = [
    "Summary",
    "Test metrics",
    "ROC curve",
    "Precision–recall curve",
    "Confusion matrix",
    "Calibration",
    "Generalisation",
    "Ensemble",
    "Feature importance",
    "Feature selection",
    "Search history",
    "Data",
    "Sources and quarantine",
    "Steps",
    "Environment",
]
TEST_HEADINGS = {
    "binary": ["ROC curve", "Precision–recall curve", "Confusion matrix"],
    "multiclass": ["Confusion matrix", "Per-class metrics"],
    "regression": ["Predicted against actual", "Residuals"],
}
FAMILIES = ["logistic", "lightgbm", "random_forest"]
CLASSES = ["bronze", "silver", "gold <vip>"]
NO_TEST = "no held-out test: the figures below are cross-validation estimates"
_VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr"})


def _interval(value: float, rng: np.random.Generator) -> MetricInterval:
    spread = float(rng.uniform(0.01, 0.04))
    return MetricInterval(value, value - spread, value + spread)


def _trials(rng: np.random.Generator) -> list[dict[str, Any]]:
    trials = []
    for number in range(30):
        state = "failed" if number in (4, 17) else "pruned" if number == 9 else "complete"
        score = None if state == "failed" else float(rng.uniform(0.7, 0.9))
        trials.append(
            {
                "trial": number,
                "family": FAMILIES[number % 3],
                "params": {"C": round(float(rng.uniform(0.01, 10)), 3), "class_weight": None},
                "score": math.nan if state == "pruned" else score,
                "seconds": float(rng.uniform(0.2, 4)),
                "state": state,
            }
        )
    return trials


def _profile(rng: np.random.Generator) -> list[dict[str, Any]]:
    income = rng.lognormal(10, 0.5, 1000)
    numeric = {
        "name": "income",
        "dtype": "Float64",
        "missing": 12,
        "missing_share": 0.012,
        "distinct": 988,
        **{"min": income.min(), "max": income.max(), "mean": income.mean(), "std": income.std()},
        **{f"p{q:02d}": float(np.percentile(income, q)) for q in (5, 50, 95)},
        "top": None,
    }
    text = {"name": "region", "dtype": "String", "missing": 0, "missing_share": 0.0}
    text |= {"distinct": 4, "top": [["north", 410], ["south", 300], ["<east>", 200]]}
    return [numeric, text]


def _reliability(y_true: np.ndarray, y_score: np.ndarray) -> list[dict[str, Any]]:
    """Ten quantile bins, as the calibration module reports them."""
    bins = np.array_split(np.argsort(y_score, kind="stable"), 10)
    return [
        {
            "mean_predicted": float(y_score[rows].mean()),
            "observed_rate": float(y_true[rows].mean()),
            "count": int(rows.size),
        }
        for rows in bins
    ]


def _evidence() -> dict[str, Any]:
    fractions = (0.1, 0.25, 0.5, 0.75, 1.0)
    curve = [
        {"rows": int(1600 * f), "train_score": 0.95 - 0.08 * f, "cv_score": 0.7 + 0.12 * f}
        | {"cv_std": 0.03 - 0.02 * f, "fraction": f}
        for f in fractions
    ]
    return {
        "gap": {"train_score": 0.87, "cv_score": 0.84, "gap": 0.03, "relative_gap": 0.036}
        | {"warning": None},
        "learning_curve": curve,
        "learning_verdict": "The CV ROC-AUC still rises by 0.030 from 75 % to 100 % of the rows.",
        "leakage": [],
    }


def make_report(**changes: Any) -> RunReport:
    """A realistic binary report from synthetic data; ``changes`` replace fields."""
    rng = np.random.default_rng(7)
    y_true = (rng.random(400) < 0.2).astype(int)
    y_score = np.clip(rng.normal(0.3 + 0.3 * y_true, 0.15), 0, 1)
    features = [f"feature_{index}" for index in range(23)] + ["<b>bold</b>", "price $ in $usd$"]
    importance = sorted(rng.exponential(0.02, len(features)), reverse=True)
    trials = _trials(rng)
    top = max((t for t in trials if t["state"] == "complete"), key=lambda t: t["score"])
    report = RunReport(
        project="credit-risk",
        run_id="run-20250131-abc123",
        created_at="2025-01-31T14:02:05+00:00",
        keelson_version="0.1.0",
        model_name="default-risk",
        model_version=3,
        dataset={
            "version": "ds-7f3a",
            "content_hash": "sha256:" + "ab" * 32,
            "rows": 2000,
            "columns": 14,
            "target": "default",
            "positive": "yes",
            "negative": "no",
            "positive_share": float(y_true.mean()),
        },
        sources=[
            {
                "source": "loans",
                "kind": "csv",
                "location": "data/loans.csv",
                "rows_in": 2100,
                "kept": 2000,
                "quarantined": 100,
                "share": 100 / 2100,
                "reasons": {"not_null:income": 60, "range:age": 40},
            },
            {"source": "regions", "kind": "parquet", "location": "data/regions.parquet"}
            | {"rows_in": 4, "kept": 4, "quarantined": 0, "share": 0.0, "reasons": {}},
        ],
        quarantine_path=".keelson/quarantine/run-20250131-abc123.parquet",
        profile=_profile(rng),
        search=trials,
        search_metric="roc_auc",
        best={"family": top["family"], "params": top["params"], "cv_score": top["score"]},
        threshold=0.42,
        threshold_metric="f1",
        y_true=y_true.tolist(),
        y_score=y_score.tolist(),
        test_metrics={
            "roc_auc": _interval(float(roc_auc_score(y_true, y_score)), rng),
            "pr_auc": _interval(float(average_precision_score(y_true, y_score)), rng),
            **{name: _interval(float(rng.uniform(0.4, 0.7)), rng) for name in ("f1", "recall")},
            "precision": _interval(0.55, rng),
            "log_loss": _interval(0.38, rng),
        },
        feature_importance=[
            {"feature": name, "importance": float(value), "std": float(value) / 5}
            for name, value in zip(features, importance, strict=True)
        ],
        steps=[
            {"name": "read", "wall_s": 0.8, "cpu_s": 0.7, "peak_mb": 120.5, "status": "ok"},
            {"name": "search", "wall_s": 41.2, "cpu_s": 80.1, "peak_mb": 410.0, "status": "ok"},
        ],
        budget_seconds=60.0,
        search_seconds=41.2,
        task="binary",
        classes=["no", "yes"],
        ensemble={
            "used": True,
            "score": 0.861,
            "best_single_score": 0.853,
            "members": [
                {"trial": 12, "family": "lightgbm", "weight": 0.24},
                {"trial": 3, "family": "logistic", "weight": 0.56},
                {"trial": 20, "family": "random_forest", "weight": 0.2},
            ],
        },
        calibration={
            "method": "isotonic",
            "reason": "Isotonic had the lowest cross-fitted log loss.",
            **{"log_loss_before": 0.44, "log_loss_after": 0.39, "brier_before": 0.14},
            **{"brier_after": 0.12, "ece_before": 0.08, "ece_after": 0.02},
            "before": _reliability(y_true, y_score**2),
            "after": _reliability(y_true, y_score),
        },
        imbalance="smote",
        evidence=_evidence(),
        feature_selection={
            "dropped": ["feature_21", "feature_22"],
            "score_before": 0.851,
            "score_after": 0.853,
            "applied": True,
            "metric": "roc_auc",
        },
        wall_seconds=52.5,
        environment={"python": "3.11.9", "keelson": "0.1.0", "scikit-learn": "1.9.0"},
        cv_metrics={"roc_auc": 0.853, "pr_auc": 0.611, "log_loss": 0.401},
    )
    return dataclasses.replace(report, **changes)


def multiclass_changes(rows: int = 300) -> dict[str, Any]:
    """Fields that turn ``make_report`` into a three-class report."""
    rng = np.random.default_rng(11)
    y_true = rng.integers(0, 3, rows)
    logits = rng.normal(0, 1, (rows, 3)) + 1.5 * np.eye(3)[y_true]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = proba.argmax(axis=1)
    macro_f1 = float(f1_score(y_true, predicted, average="macro"))
    return {
        "task": "multiclass",
        "classes": CLASSES,
        "dataset": {"version": "ds-1", "target": "tier", "rows": 1500, "columns": 9},
        "search_metric": "log_loss",
        "threshold": None,
        "threshold_metric": None,
        "y_true": y_true.astype(float).tolist(),
        "y_score": proba.tolist(),
        "test_metrics": {
            "log_loss": MetricInterval(float(log_loss(y_true, proba)), 0.6, 0.8),
            "macro_f1": MetricInterval(macro_f1, macro_f1 - 0.05, macro_f1 + 0.05),
            "roc_auc_ovr": MetricInterval(0.81, 0.78, 0.84),
        },
        "cv_metrics": {"log_loss": 0.71, "macro_f1": 0.62},
        "calibration": None,
    }


def regression_changes(rows: int = 500) -> dict[str, Any]:
    """Fields that turn ``make_report`` into a regression report."""
    rng = np.random.default_rng(13)
    actual = rng.normal(50, 10, rows)
    predicted = actual + rng.normal(0, 3, rows)
    return {
        "task": "regression",
        "classes": [],
        "dataset": {"version": "ds-2", "target": "price", "rows": 5000, "columns": 7},
        "search_metric": "rmse",
        "threshold": None,
        "threshold_metric": None,
        "y_true": actual.tolist(),
        "y_score": predicted.tolist(),
        "test_metrics": {
            "rmse": MetricInterval(float(root_mean_squared_error(actual, predicted)), 2.8, 3.2),
            "mae": MetricInterval(float(mean_absolute_error(actual, predicted)), 2.2, 2.6),
            "r2": MetricInterval(float(r2_score(actual, predicted)), 0.89, 0.93),
        },
        "cv_metrics": {"rmse": 3.1, "mae": 2.5, "r2": 0.9},
        "calibration": None,
    }


TASK_CHANGES = {
    "binary": dict,
    "multiclass": multiclass_changes,
    "regression": regression_changes,
}


def _task_report(task: str, **changes: Any) -> RunReport:
    return make_report(**(TASK_CHANGES[task]() | changes))


class _TagBalance(HTMLParser):
    """Records every end tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")


def assert_well_formed(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    parser = _TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.open == []
    section_ids = re.findall(r'<section id="([^"]+)"', page)
    assert len(section_ids) == len(set(section_ids))


def assert_offline(page: str) -> None:
    urls = re.findall(r"https?://", page)
    namespaces = re.findall(r'xmlns(?::\w+)?="https?://[^"]*"', page)
    assert len(urls) == len(namespaces)
    lowered = page.lower()
    for forbidden in ("<script", "<link", "@import", "src="):
        assert forbidden not in lowered
    assert not re.search(r"url\((?!#)", lowered)  # only fragment references inside SVGs


def headings(page: str) -> list[str]:
    return re.findall(r"<h2>([^<]+)</h2>", page)


def figure_after(page: str, heading: str) -> str:
    """The first inline SVG after ``heading``."""
    start = page.index(f">{heading}</h2>")
    return page[page.index("<svg", start) : page.index("</svg>", start)]


def scatter_points(svg: str) -> int:
    """Dots drawn with the most used marker, less the one in the legend."""
    markers = Counter(re.findall(r'<use xlink:href="#([^"]+)"', svg))
    return markers.most_common(1)[0][1] - 1


@pytest.fixture(scope="module")
def html() -> str:
    return render(make_report())


def test_sections_appear_in_order(html: str) -> None:
    assert headings(html) == HEADINGS
    assert "bootstrap 95 % intervals on the held-out test set" in html.lower()


def test_plots_are_inline_svg(html: str) -> None:
    assert_well_formed(html)
    assert html.count("<svg") == 7  # ROC, PR, confusion, calibration, learning, importance, search
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    assert "AUC = " in html and "prevalence" in html and "best so far" in html


def test_no_external_references(html: str) -> None:
    assert_offline(html)
    assert re.findall(r"https?://", html)


def test_user_text_is_escaped() -> None:
    attack = "<script>alert(1)</script>"
    page = render(make_report(project=attack, model_name=attack, imbalance=attack))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<east>" not in page


def test_summary_shows_headline_intervals(html: str) -> None:
    report = make_report()
    roc = report.test_metrics["roc_auc"]
    assert f"{roc.value:.3f}" in html and f"{roc.low:.3f} – {roc.high:.3f}" in html
    assert f"<strong>{report.best['family']}</strong>" in html and "chosen for f1" in html
    assert "Test ROC-AUC" in html and "CV 0.853" in html  # test card carries the CV score too


def test_cost_threshold_is_explained() -> None:
    page = render(make_report(costs={"false_positive": 1.0, "false_negative": 5.0}))
    assert "minimises cost (false positive 1.00, false negative 5.00)" in page


def test_render_is_deterministic(html: str) -> None:
    assert render(make_report()) == html


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_render_deterministically(task: str) -> None:
    assert render(_task_report(task)) == render(_task_report(task))


def test_write_is_atomic_and_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "report.html"
    target.parent.mkdir()
    target.write_text("old", encoding="utf-8")
    report = make_report(search=[], feature_importance=[])
    assert write(report, target) == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [path.name for path in target.parent.iterdir()] == ["report.html"]


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_each_task_renders_its_figures(task: str) -> None:
    page = render(_task_report(task))
    assert_well_formed(page)
    assert_offline(page)
    shown = headings(page)
    for heading in TEST_HEADINGS[task]:
        assert heading in shown
    foreign = {h for t, hs in TEST_HEADINGS.items() if t != task for h in hs}
    assert not (foreign - set(TEST_HEADINGS[task])) & set(shown)
    assert NO_TEST not in page.lower()


def test_multiclass_shows_matrix_and_per_class_metrics() -> None:
    changes = multiclass_changes()
    page = render(make_report(**changes))
    y_true = np.asarray(changes["y_true"], dtype=int)
    predicted = np.asarray(changes["y_score"]).argmax(axis=1)
    per_class = f1_score(y_true, predicted, average=None)
    table = page[page.index(">Per-class metrics</h2>") : page.index(">Generalisation</h2>")]
    for name, f1 in zip(CLASSES[:2], per_class, strict=False):
        assert re.search(rf"<td>{name}</td>.*?<td class=\"num\">{f1:.3f}</td>", table)
    assert "gold &lt;vip&gt;" in table and "<vip>" not in page
    assert f"{per_class.mean():.3f}" in table  # the macro average row
    matrix = figure_after(page, "Confusion matrix")
    assert all(name in matrix for name in ("bronze", "silver"))
    assert "Test log loss" in page and "Test macro F1" in page
    assert "Decision threshold" not in page and "ROC curve" not in headings(page)


def test_many_classes_render_a_readable_matrix() -> None:
    rng = np.random.default_rng(5)
    names = [f"class_{index:02d}" for index in range(20)]
    proba = rng.dirichlet(np.ones(20), 400)
    changes = multiclass_changes() | {"classes": names, "y_score": proba.tolist()}
    page = render(make_report(**changes | {"y_true": rng.integers(0, 20, 400).tolist()}))
    matrix = figure_after(page, "Confusion matrix")
    assert "class_19" in matrix and "%" not in matrix  # too many cells to annotate with shares
    assert page.count("<tr><td>class_") == 20


def test_regression_subsamples_the_scatter_deterministically() -> None:
    page = render(make_report(**regression_changes(rows=5000)))
    assert "for 2,000 of 5,000 test rows" in page
    assert scatter_points(figure_after(page, "Predicted against actual")) == 2000
    assert "residual (actual − predicted)" in figure_after(page, "Residuals")
    assert all(f"Test {name}" in page for name in ("RMSE", "MAE", "R²"))
    assert 'RMSE <span class="note">(lower is better)</span>' in page
    assert render(make_report(**regression_changes(rows=5000))) == page


def test_regression_small_test_set_plots_every_row() -> None:
    page = render(make_report(**regression_changes(rows=300)))
    assert "for all 300 test rows" in page
    assert scatter_points(figure_after(page, "Predicted against actual")) == 300


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_no_test_set_says_so_at_the_top(task: str) -> None:
    page = render(_task_report(task, y_true=[], y_score=[], test_metrics={}))
    assert_well_formed(page)
    lowered = page.lower()
    assert lowered.index(NO_TEST) < page.index(">Summary</h2>")
    shown = headings(page)
    assert "Cross-validation metrics" in shown and "Test metrics" not in shown
    assert not set(TEST_HEADINGS[task]) & set(shown)
    start = page.index(">Cross-validation metrics</h2>")
    metrics = page[start : page.index("</section>", start)]
    report = _task_report(task)
    for value in report.cv_metrics.values():
        assert f"{value:.3f}" in metrics
    headline = {"binary": "ROC-AUC", "multiclass": "log loss", "regression": "RMSE"}[task]
    assert f"CV {headline}</div>" in page  # the summary card falls back to the CV score


def test_leakage_warnings_come_first_most_severe_on_top() -> None:
    findings = [
        {"check": "duplicated_rows", "column": None, "severity": "warning"}
        | {"message": "12 test rows (3 %) repeat a training row.", "value": 0.03},
        {"check": "single_feature", "column": "paid_late", "severity": "critical"}
        | {"message": "Column 'paid_late' alone predicts the target (AUC 0.999).", "value": 0.999},
    ]
    page = render(make_report(evidence=_evidence() | {"leakage": findings}))
    critical = page.index("Column &#39;paid_late&#39; alone predicts the target (AUC 0.999).")
    warning = page.index("12 test rows (3 %) repeat a training row.")
    assert critical < warning < page.index(">Summary</h2>")
    assert 'class="alert critical"' in page and "Possible leakage in column “paid_late”" in page
    checks = page[page.index("<h3>Leakage checks</h3>") :]
    assert checks.index("single_feature") < checks.index("duplicated_rows")


def test_clean_leakage_checks_raise_no_warning(html: str) -> None:
    assert 'role="alert"' not in html
    assert "The leakage checks found nothing to report." in html


def test_overfitting_gap_is_warned_about() -> None:
    gap = {"train_score": 0.99, "cv_score": 0.81, "gap": 0.18, "relative_gap": 0.22}
    gap |= {"warning": "Training ROC-AUC is 0.18 above cross-validation: the model memorises."}
    page = render(make_report(evidence=_evidence() | {"gap": gap}))
    alert = page.index("Possible over-fitting")
    assert alert < page.index(">Summary</h2>")
    assert "the model memorises. Training ROC-AUC 0.990 against cross-validated 0.810" in page
    assert "possible over-fitting</span>" in page


def test_budget_overrun_is_warned_about(html: str) -> None:
    assert "Over budget" not in html and "52.5 s of a 60.0 s budget (87.5 %)" in html
    page = render(make_report(wall_seconds=75.0))
    assert page.index("Over budget") < page.index(">Summary</h2>")
    assert "The run took 75.0 s against a budget of 60.0 s (25.0 % over)" in page


def test_ensemble_members_are_listed_by_weight(html: str) -> None:
    section = html[html.index(">Ensemble</h2>") : html.index(">Feature importance</h2>")]
    assert "weighted blend of 3 trials" in section
    member = r'<tr><td class="num">(\d+)</td><td>(\w+)</td><td class="num">([\d.]+ %)'
    assert re.findall(member, section) == [
        ("3", "logistic", "56.0 %"),
        ("12", "lightgbm", "24.0 %"),
        ("20", "random_forest", "20.0 %"),
    ]
    assert '<div class="value">ensemble</div>' in html


def test_unused_ensemble_says_why() -> None:
    ensemble = {"used": False, "score": 0.85, "best_single_score": 0.853, "members": []}
    page = render(make_report(ensemble=ensemble))
    assert "Not used: the blend" in page and '<div class="value">ensemble</div>' not in page


def test_calibration_figure_only_when_given(html: str) -> None:
    figure = figure_after(html, "Calibration")
    assert "before calibration" in figure and "after calibration" in figure
    assert "<strong>isotonic</strong>. Isotonic had the lowest cross-fitted log loss." in html
    assert "-0.0500" in html  # log loss 0.44 → 0.39
    page = render(make_report(calibration=None))
    assert "Calibration" not in headings(page) and page.count("<svg") == html.count("<svg") - 1


def test_learning_curve_and_feature_selection(html: str) -> None:
    assert "training rows" in figure_after(html, "Generalisation")
    assert "still rises by 0.030" in html
    selection = html[html.index(">Feature selection</h2>") : html.index(">Search history</h2>")]
    assert "Dropped 2 features" in selection and "<code>feature_22</code>" in selection


def test_environment_is_collapsible(html: str) -> None:
    section = html[html.index(">Environment</h2>") :]
    assert "<details>" in section and "<code>1.9.0</code>" in section


def test_old_callers_keep_working() -> None:
    full = make_report()
    required = {
        field.name: getattr(full, field.name)
        for field in dataclasses.fields(RunReport)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    }
    report = RunReport(**required)
    page = render(report)
    assert report.task == "binary" and report.evidence == {}
    assert "ROC curve" in headings(page) and "Calibration" not in headings(page)
    assert "No leakage checks were recorded." in page


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"search": [], "best": {}}, "No search trials were recorded."),
        ({"y_true": [0] * 50, "y_score": [0.1] * 50}, "holds a single class"),
        ({"feature_importance": []}, "No feature importance was recorded"),
        ({"test_metrics": {}, "cv_metrics": {}}, "No test metrics were recorded"),
        ({"y_score": [math.nan] * 400}, "holds a single class"),
        ({"threshold": None, "threshold_metric": None}, "at threshold 0.500"),
        ({"evidence": {}}, "No training-against-validation gap was recorded."),
    ],
)
def test_edge_cases_render(changes: dict[str, Any], expected: str) -> None:
    page = render(make_report(**changes))
    assert expected in page
    assert "Steps</h2>" in page


def test_unusual_values_render() -> None:
    report = make_report(
        search_metric="log_loss",
        model_version=None,
        quarantine_path=None,
        created_at="yesterday",
        budget_seconds=0.0,
    )
    page = render(report)
    for expected in ("lower is better", "not registered", "yesterday", "No rows were quarantined"):
        assert expected in page


def test_everything_empty_renders() -> None:
    empty = make_report(
        dataset={},
        sources=[],
        profile=[],
        search=[],
        best={},
        y_true=[],
        y_score=[],
        test_metrics={},
        feature_importance=[],
        steps=[],
        ensemble=None,
        calibration=None,
        evidence={},
        feature_selection=None,
        environment={},
        cv_metrics={},
        wall_seconds=None,
    )
    page = render(empty)
    assert "<svg" not in page
    assert_well_formed(page)
    assert headings(page) == [
        "Summary",
        "Cross-validation metrics",
        "Generalisation",
        "Feature importance",
        "Search history",
        "Data",
        "Sources and quarantine",
        "Steps",
    ]
    assert "No cross-validation metrics were recorded" in page


def test_nan_scores_are_left_out_with_a_note() -> None:
    report = make_report()
    scores = [math.nan] * 10 + report.y_score[10:]
    page = render(dataclasses.replace(report, y_score=scores))
    assert "10 test rows had a missing or non-finite score" in page
    assert page.count("<svg") == 7


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        make_report(y_score=[0.5])


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="'task' field of RunReport must be one of"):
        make_report(task="ranking")


@pytest.mark.parametrize("scores", [[[0.2, 0.8]] * 300, [[0.1, 0.2, 0.7], [0.5, 0.5]] * 150])
def test_multiclass_scores_need_one_probability_per_class(scores: list[Any]) -> None:
    with pytest.raises(ValueError, match="must hold 3 class probabilities"):
        make_report(**multiclass_changes() | {"y_score": scores})
