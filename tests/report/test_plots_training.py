"""The reliability diagram and the learning curve render to deterministic inline SVG."""

from __future__ import annotations

from typing import Any

import numpy as np

from keelson.report.plots import calibration_svg, learning_curve_svg
from keelson.train.calibration import reliability_curve


def _curves() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, 3000)
    y = (rng.random(3000) < p).astype(int)
    return reliability_curve(y, p**3), reliability_curve(y, p)


def _points() -> list[dict[str, Any]]:
    rows = [4000, 500, 1000, 2000]  # any order: plotted by rows
    return [
        {"rows": n, "train_score": 0.95 - n / 1e5, "cv_score": 0.7 + n / 1e4, "cv_std": 0.02}
        for n in rows
    ]


def test_calibration_svg_draws_before_and_after_deterministically() -> None:
    before, after = _curves()
    svg = calibration_svg(before, after)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "before calibration" in svg and "after calibration" in svg
    assert "perfectly calibrated" in svg
    assert calibration_svg(before, after) == svg


def test_calibration_svg_without_after_draws_one_line() -> None:
    before, _ = _curves()
    svg = calibration_svg(before, None)
    assert svg.startswith("<svg")
    assert "before calibration" not in svg
    assert svg != calibration_svg(*_curves())


def test_learning_curve_svg_names_the_metric_and_is_deterministic() -> None:
    svg = learning_curve_svg(_points(), metric="roc_auc")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "roc_auc" in svg and "training rows" in svg
    assert "cross-validation (± std)" in svg
    assert learning_curve_svg(_points(), metric="roc_auc") == svg
    assert learning_curve_svg(list(reversed(_points())), metric="roc_auc") == svg


def test_learning_curve_svg_escapes_the_metric_name() -> None:
    svg = learning_curve_svg(_points(), metric="$cost$ <per> row")
    assert "$cost$ &lt;per&gt; row" in svg
