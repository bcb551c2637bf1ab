from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, log_loss, roc_auc_score

from keelson.train.evaluate import _weighted_metrics, all_metrics, bootstrap, tune_threshold


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.15).astype(int)
    p = np.round(np.clip(0.25 * y + rng.random(2000) * 0.75, 0, 1), 2)  # rounded: many ties
    return y, p


def test_point_metrics_match_scikit_learn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    metrics = all_metrics(y, p, 0.5)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert metrics["log_loss"] == pytest.approx(log_loss(y, p))
    assert metrics["f1"] == pytest.approx(f1_score(y, p >= 0.5))


def test_weighted_metrics_equal_metrics_on_the_resampled_rows(scored: tuple) -> None:
    y, p = scored
    counts = np.bincount(np.random.default_rng(0).integers(0, y.size, y.size), minlength=y.size)
    rows = np.repeat(np.arange(y.size), counts)
    weighted = _weighted_metrics(y, p, 0.4, counts[None, :])
    for name, value in all_metrics(y[rows], p[rows], 0.4).items():
        assert weighted[name][0] == pytest.approx(value, abs=1e-12), name


def test_bootstrap_intervals_contain_the_point_estimate(scored: tuple) -> None:
    y, p = scored
    intervals = bootstrap(y, p, 0.5, 200, seed=0)
    for interval in intervals.values():
        assert interval.low <= interval.value <= interval.high
    assert 0.0 < intervals["roc_auc"].high - intervals["roc_auc"].low < 0.15


def test_tuned_threshold_beats_one_half_for_f1(scored: tuple) -> None:
    y, p = scored
    threshold, value = tune_threshold(y, p, "f1")
    assert value >= all_metrics(y, p, 0.5)["f1"]
    assert value == pytest.approx(f1_score(y, p >= threshold))
