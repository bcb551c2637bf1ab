"""Calibration repairs mis-calibrated scores, keeps calibrated ones, survives clone and skops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier

from keelson.train.calibration import (
    CalibratedClassifier,
    Calibration,
    apply,
    choose_calibration,
    expected_calibration_error,
    fit_calibration,
    reliability_curve,
)
from keelson.train.metrics import binary_log_loss as log_loss


def _calibrated(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are true probabilities, and labels drawn from them."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, rows)
    return p, (rng.random(rows) < p).astype(int)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_fitting_on_one_half_repairs_cubed_scores_on_the_other(method: str) -> None:
    p, y = _calibrated(6000, seed=0)
    distorted = p**3
    fit, held = slice(0, 3000), slice(3000, None)
    calibration = fit_calibration(distorted[fit], y[fit], method)  # type: ignore[arg-type]
    repaired = apply(calibration, distorted[held])
    assert log_loss(y[held], repaired) < log_loss(y[held], distorted[held]) - 0.2
    assert expected_calibration_error(y[held], repaired) < 0.04
    assert expected_calibration_error(y[held], distorted[held]) > 0.15
    assert np.all(np.diff(repaired[np.argsort(distorted[held])]) >= -1e-12)  # order kept


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_never_ties_rows_the_model_ranks_apart(method: str) -> None:
    """Isotonic regression is flat between knots; the map keeps every row's rank, so
    ROC-AUC and PR-AUC are the model's own (a stepwise map lost 0.024 PR-AUC on elec2)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    p, y = _calibrated(6000, seed=3)
    distorted = p**3
    calibration = fit_calibration(distorted[:3000], y[:3000], method)  # type: ignore[arg-type]
    held = np.concatenate([distorted[3000:], [0.0, 1e-9, 0.999999, 1.0]])  # beyond the knots too
    repaired = apply(calibration, held)
    assert np.unique(repaired).size == np.unique(held).size
    labels = np.concatenate([y[3000:], [0, 0, 1, 1]])
    assert roc_auc_score(labels, repaired) == roc_auc_score(labels, held)
    assert average_precision_score(labels, repaired) == average_precision_score(labels, held)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic", "auto"])
def test_choice_reports_improvement_on_mis_calibrated_scores(method: str) -> None:
    p, y = _calibrated(4000, seed=1)
    choice = choose_calibration(p**3, y, method, seed=0)  # type: ignore[arg-type]
    assert choice.method != "none"
    for name in ("log_loss", "brier", "ece"):
        assert choice.after[name] < choice.before[name], name
    assert choice.candidates[choice.method] == pytest.approx(choice.after["log_loss"])
    assert json.loads(json.dumps(choice.to_dict()))["method"] == choice.method


def test_auto_keeps_calibrated_scores_as_they_are_most_of_the_time() -> None:
    picks = [
        choose_calibration(*_calibrated(2000, seed), "auto", seed).method for seed in range(12)
    ]
    assert picks.count("none") >= 10, picks


def test_isotonic_needs_enough_rows_else_sigmoid() -> None:
    p, y = _calibrated(600, seed=2)
    choice = choose_calibration(p**3, y, "isotonic", seed=0)
    assert choice.method == "sigmoid"
    assert "1000 rows" in choice.reason
    assert "isotonic" not in choose_calibration(p**3, y, "auto", seed=0).candidates


def test_none_and_single_class_leave_scores_unchanged() -> None:
    p, y = _calibrated(500, seed=3)
    assert choose_calibration(p**3, y, "none").calibration == Calibration()
    one_class = choose_calibration(p, np.zeros_like(y), "auto")
    assert one_class.method == "none"
    assert "each class" in one_class.reason
    assert np.array_equal(apply(Calibration(), p), p)


def test_choice_refuses_non_binary_labels_and_unknown_methods() -> None:
    p, y = _calibrated(100, seed=4)
    with pytest.raises(ValueError, match="binary"):
        choose_calibration(p, y + 1)
    with pytest.raises(ValueError, match="'method' parameter"):
        choose_calibration(p, y, "platt")  # type: ignore[arg-type]


def test_identity_sigmoid_and_isotonic_bounds() -> None:
    p, y = _calibrated(2000, seed=5)
    assert np.allclose(apply(Calibration("sigmoid", (1.0, 0.0)), p), p)
    knots_x, knots_y = fit_calibration(p, y, "isotonic").knots()
    assert knots_x.size == knots_y.size > 1
    assert np.all(np.diff(knots_y) >= 0)
    assert knots_y.min() > 0 and knots_y.max() < 1  # log-loss stays finite on new rows


def test_reliability_curve_uses_quantile_bins() -> None:
    p, y = _calibrated(5000, seed=6)
    curve = reliability_curve(y, p, bins=10)
    assert len(curve) == 10
    assert sum(point["count"] for point in curve) == 5000
    assert {point["count"] for point in curve} <= {499, 500, 501}
    means = [point["mean_predicted"] for point in curve]
    assert means == sorted(means)
    assert max(abs(pt["mean_predicted"] - pt["observed_rate"]) for pt in curve) < 0.06


def test_constant_scores_make_one_bin_and_an_exact_ece() -> None:
    y = np.array([1, 0] * 50)
    scores = np.full(100, 0.8)
    assert reliability_curve(y, scores) == [
        {"mean_predicted": pytest.approx(0.8), "observed_rate": 0.5, "count": 100}
    ]
    assert expected_calibration_error(y, scores) == pytest.approx(0.3)


@pytest.fixture
def wrapped() -> tuple[CalibratedClassifier, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    features = rng.normal(size=(600, 3))
    labels = (features[:, 0] + rng.normal(size=600) > 0.5).astype(int)
    base = LogisticRegression().fit(features, labels).predict_proba(features)[:, 1]
    calibration = fit_calibration(base**2, labels, "isotonic")
    return CalibratedClassifier.wrap(LogisticRegression(), calibration), features, labels


def test_classifier_applies_the_calibration_to_the_positive_column(wrapped: tuple) -> None:
    model, features, labels = wrapped
    model.fit(features, labels)
    raw = model.estimator_.predict_proba(features)[:, 1]
    probabilities = model.predict_proba(features)
    assert np.allclose(probabilities[:, 1], apply(model.calibration, raw))
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.array_equal(model.predict(features), (probabilities[:, 1] >= 0.5).astype(int))
    assert not hasattr(model.estimator, "coef_")  # the given estimator is not fitted in place


def test_clone_keeps_the_calibration(wrapped: tuple) -> None:
    model, features, labels = wrapped
    copy = clone(model)
    assert copy.method == "isotonic"
    assert copy.params == model.params
    assert np.allclose(
        copy.fit(features, labels).predict_proba(features),
        model.fit(features, labels).predict_proba(features),
    )


def test_fixed_threshold_classifier_and_skops_round_trip(wrapped: tuple) -> None:
    model, features, labels = wrapped
    final = FixedThresholdClassifier(model, threshold=0.3, response_method="predict_proba")
    final.fit(features, labels)
    positive = final.predict_proba(features)[:, 1]
    assert np.array_equal(final.predict(features), (positive >= 0.3).astype(int))
    data = sio.dumps(final)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == ["keelson.train.calibration.CalibratedClassifier"]
    loaded = sio.loads(data, trusted=untrusted)
    assert np.array_equal(loaded.predict_proba(features), final.predict_proba(features))
    assert loaded.estimator.params == model.params


def test_classifier_refuses_inconsistent_params() -> None:
    features, labels = np.arange(20.0).reshape(-1, 1), np.arange(20) % 2
    with pytest.raises(ValueError, match="2 values for method 'sigmoid'"):
        CalibratedClassifier(LogisticRegression(), "sigmoid", (1.0,)).fit(features, labels)
    with pytest.raises(ValueError, match="'method' parameter"):
        CalibratedClassifier(LogisticRegression(), "beta").fit(features, labels)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="binary"):
        CalibratedClassifier(LogisticRegression()).fit(features, np.arange(20) % 3)


def test_a_prefit_model_is_saved_once_and_decides_at_its_threshold(
    wrapped: tuple[CalibratedClassifier, np.ndarray, np.ndarray],
) -> None:
    import skops.io as sio

    _, features, labels = wrapped
    fitted = LogisticRegression().fit(features, labels)
    calibration = fit_calibration(fitted.predict_proba(features)[:, 1], labels, "sigmoid")
    decided = CalibratedClassifier.prefit(fitted, calibration, threshold=0.8)
    assert decided.estimator_ is fitted and not hasattr(decided.estimator, "coef_")
    positive = decided.predict_proba(features)[:, 1]
    assert (decided.predict(features) == (positive >= 0.8)).all()
    loaded = sio.loads(sio.dumps(decided), trusted=sio.get_untrusted_types(data=sio.dumps(decided)))
    assert np.allclose(loaded.predict_proba(features), decided.predict_proba(features))
