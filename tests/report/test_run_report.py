"""The run report renders every section, works offline, escapes user text and survives gaps."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from keelson.report import MetricInterval, RunReport, render, write

HEADINGS = [
    "Summary",
    "Test metrics",
    "ROC curve",
    "Precision–recall curve",
    "Confusion matrix",
    "Feature importance",
    "Search history",
    "Data",
    "Sources and quarantine",
    "Steps",
]
FAMILIES = ["logistic", "lightgbm", "random_forest"]


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


def make_report(**changes: Any) -> RunReport:
    """A realistic report from synthetic data; ``changes`` replace fields."""
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
    )
    return dataclasses.replace(report, **changes)


@pytest.fixture(scope="module")
def html() -> str:
    return render(make_report())


def test_sections_appear_in_order(html: str) -> None:
    positions = [html.index(f">{heading}</h2>") for heading in HEADINGS]
    assert positions == sorted(positions)
    assert "bootstrap 95 % intervals on the held-out test set" in html.lower()


def test_plots_are_inline_svg(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") >= 5
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    assert "AUC = " in html and "prevalence" in html and "best so far" in html


def test_no_external_references(html: str) -> None:
    urls = re.findall(r"https?://", html)
    namespaces = re.findall(r'xmlns(?::\w+)?="https?://[^"]*"', html)
    assert len(urls) == len(namespaces) > 0
    lowered = html.lower()
    for forbidden in ("<script", "<link", "@import", "src="):
        assert forbidden not in lowered
    assert not re.search(r"url\((?!#)", lowered)  # only fragment references inside SVGs


def test_user_text_is_escaped() -> None:
    attack = "<script>alert(1)</script>"
    page = render(make_report(project=attack, model_name=attack))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<east>" not in page


def test_summary_shows_headline_intervals(html: str) -> None:
    report = make_report()
    roc = report.test_metrics["roc_auc"]
    assert f"{roc.value:.3f}" in html and f"{roc.low:.3f} – {roc.high:.3f}" in html
    assert f"<strong>{report.best['family']}</strong>" in html and "chosen for f1" in html


def test_render_is_deterministic(html: str) -> None:
    assert render(make_report()) == html


def test_write_is_atomic_and_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "report.html"
    target.parent.mkdir()
    target.write_text("old", encoding="utf-8")
    report = make_report(search=[], feature_importance=[])
    assert write(report, target) == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [path.name for path in target.parent.iterdir()] == ["report.html"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"search": [], "best": {}}, "No search trials were recorded."),
        ({"y_true": [0] * 50, "y_score": [0.1] * 50}, "holds a single class"),
        ({"feature_importance": []}, "No feature importance was recorded"),
        ({"test_metrics": {}}, "No test metrics were recorded"),
        ({"y_score": [math.nan] * 400}, "holds a single class"),
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
    )
    page = render(empty)
    assert "<svg" not in page
    assert all(f">{heading}</h2>" in page for heading in HEADINGS)


def test_nan_scores_are_left_out_with_a_note() -> None:
    report = make_report()
    scores = [math.nan] * 10 + report.y_score[10:]
    page = render(dataclasses.replace(report, y_score=scores))
    assert "10 test rows had a missing or non-finite score" in page
    assert page.count("<svg") >= 5


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        make_report(y_score=[0.5])
