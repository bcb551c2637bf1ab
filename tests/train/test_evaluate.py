from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, log_loss, roc_auc_score

from keelson.spec import Costs
from keelson.train.evaluate import all_metrics, bootstrap, tune_threshold
from keelson.train.weighted import binary, multiclass, regression


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.15).astype(int)
    p = np.round(np.clip(0.25 * y + rng.random(2000) * 0.75, 0, 1), 2)  # rounded: many ties
    return y, p


def test_point_metrics_match_scikit_learn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    metrics = all_metrics("binary", y, p, 0.5)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert metrics["log_loss"] == pytest.approx(log_loss(y, p))
    assert metrics["f1"] == pytest.approx(f1_score(y, p >= 0.5))


def test_weighted_metrics_equal_metrics_on_the_resampled_rows(scored: tuple) -> None:
    y, p = scored
    counts = np.bincount(np.random.default_rng(0).integers(0, y.size, y.size), minlength=y.size)
    rows = np.repeat(np.arange(y.size), counts)
    weighted = binary(y, p, 0.4, counts[None, :])
    for name, value in all_metrics("binary", y[rows], p[rows], 0.4).items():
        assert weighted[name][0] == pytest.approx(value, abs=1e-12), name


def test_bootstrap_intervals_contain_the_point_estimate(scored: tuple) -> None:
    y, p = scored
    intervals = bootstrap("binary", y, p, 0.5, 200, seed=0)
    for interval in intervals.values():
        assert interval.low <= interval.value <= interval.high
    assert 0.0 < intervals["roc_auc"].high - intervals["roc_auc"].low < 0.15


def test_tuned_threshold_beats_one_half_for_f1(scored: tuple) -> None:
    y, p = scored
    threshold, value = tune_threshold(y, p, "f1")
    assert value >= all_metrics("binary", y, p, 0.5)["f1"]
    assert value == pytest.approx(f1_score(y, p >= threshold))


def _resampled(n: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(np.random.default_rng(1).integers(0, n, n), minlength=n)
    return counts, np.repeat(np.arange(n), counts)


def test_weighted_multiclass_metrics_equal_metrics_on_the_resampled_rows() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 800)
    p = rng.dirichlet(np.ones(4), 800)
    p[np.arange(800), y] += 0.5
    p /= p.sum(axis=1, keepdims=True)
    counts, rows = _resampled(y.size)
    weighted = multiclass(y, p, counts[None, :])
    for name, value in all_metrics("multiclass", y[rows], p[rows], None).items():
        assert weighted[name][0] == pytest.approx(value, abs=1e-9), name


def test_weighted_regression_metrics_equal_metrics_on_the_resampled_rows() -> None:
    rng = np.random.default_rng(6)
    y = rng.normal(size=500)
    p = y + rng.normal(0, 0.3, 500)
    counts, rows = _resampled(y.size)
    weighted = regression(y, p, counts[None, :])
    for name, value in all_metrics("regression", y[rows], p[rows], None).items():
        assert weighted[name][0] == pytest.approx(value, abs=1e-9), name


def test_the_cost_threshold_moves_with_the_price_of_a_miss(scored: tuple) -> None:
    y, p = scored
    cheap_miss, _ = tune_threshold(y, p, "cost", Costs(false_positive=5, false_negative=1))
    dear_miss, _ = tune_threshold(y, p, "cost", Costs(false_positive=1, false_negative=5))
    assert dear_miss < cheap_miss  # expensive misses: flag more rows
    cost = all_metrics("binary", y, p, dear_miss, Costs(false_positive=1, false_negative=5))["cost"]
    assert (
        cost <= all_metrics("binary", y, p, 0.5, Costs(false_positive=1, false_negative=5))["cost"]
    )
