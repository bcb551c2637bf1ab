"""Caruana ensemble selection: never worse than the best single model, honest about the mask."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score

from keelson.train.ensemble import blend, select_ensemble


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(mean_squared_error(y, p)))


def _multiclass_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, p, labels=[0, 1, 2]))


@pytest.fixture
def binary() -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels and five models that see the signal through different noise."""
    rng = np.random.default_rng(7)
    signal = rng.normal(size=3000)
    y = (signal + rng.normal(size=3000) > 0).astype(int)
    models = [
        1 / (1 + np.exp(-(signal + rng.normal(scale=s, size=3000)))) for s in (0.8, 1, 1, 1.5, 3)
    ]
    return y, models


def test_ensemble_is_at_least_as_good_as_the_best_single_model(binary: tuple) -> None:
    y, models = binary
    ensemble = select_ensemble(models, y, roc_auc_score, higher_is_better=True)
    singles = [roc_auc_score(y, p) for p in models]
    assert ensemble.best_single == int(np.argmax(singles))
    assert ensemble.best_single_score == pytest.approx(max(singles))
    assert ensemble.score >= ensemble.best_single_score
    assert ensemble.improves(0.0)  # independent noise: averaging helps
    assert len(ensemble.members) > 1


def test_score_is_the_score_of_the_blend(binary: tuple) -> None:
    y, models = binary
    ensemble = select_ensemble(models, y, roc_auc_score, higher_is_better=True)
    assert ensemble.score == pytest.approx(roc_auc_score(y, blend(models, ensemble.weights)))


def test_weights_are_one_per_model_and_sum_to_one(binary: tuple) -> None:
    y, models = binary
    ensemble = select_ensemble(models, y, roc_auc_score, higher_is_better=True)
    assert ensemble.weights.shape == (len(models),)
    assert ensemble.weights.sum() == pytest.approx(1.0)
    assert (ensemble.weights >= 0).all()
    assert ensemble.members == tuple(np.flatnonzero(ensemble.weights).tolist())
    assert ensemble.to_dict()["members"] == list(ensemble.members)


@pytest.mark.parametrize("good_first", [True, False])
def test_picks_the_good_model_over_noise(good_first: bool) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    good = np.clip(0.3 * y + 0.7 * rng.random(2000), 0, 1)
    noise = rng.random(2000)
    models = [good, noise] if good_first else [noise, good]
    ensemble = select_ensemble(models, y, roc_auc_score, higher_is_better=True)
    good_index = 0 if good_first else 1
    assert ensemble.best_single == good_index
    assert ensemble.members == (good_index,)


def test_lower_is_better_metric_and_rounds_limit(binary: tuple) -> None:
    y, models = binary
    ensemble = select_ensemble(models, y, log_loss, higher_is_better=False)
    assert ensemble.score <= ensemble.best_single_score
    single = select_ensemble(models, y, log_loss, higher_is_better=False, rounds=1)
    assert single.members == (single.best_single,)
    assert not single.improves(0.0)


def test_ties_go_to_the_lowest_index(binary: tuple) -> None:
    y, models = binary
    ensemble = select_ensemble([models[1], models[1], models[1]], y, roc_auc_score, True)
    assert ensemble.best_single == 0
    assert ensemble.members == (0,)


def test_mask_leaves_out_rows_without_predictions() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 1000)
    mask = np.arange(1000) >= 400  # the first rows were never in a validation fold
    right_on_mask = np.where(mask, 0.2 + 0.6 * y, 1 - y).astype(float)
    right_off_mask = np.where(mask, rng.random(1000), y).astype(float)
    right_on_mask[:10] = np.nan  # uncovered rows may hold anything
    ensemble = select_ensemble([right_off_mask, right_on_mask], y, roc_auc_score, True, mask=mask)
    assert ensemble.best_single == 1
    assert ensemble.best_single_score == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mask"):
        select_ensemble([right_off_mask, right_on_mask], y, roc_auc_score, True)


def _noisy_probabilities(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    draws = rng.gamma(1 + 2 * truth + rng.random(truth.shape))
    return draws / draws.sum(axis=1, keepdims=True)


def test_multiclass_blends_probabilities() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 1500)
    truth = np.eye(3)[y]
    predictions = [
        _noisy_probabilities(truth, rng),
        _noisy_probabilities(truth, rng),
        np.full((1500, 3), 1 / 3),
    ]
    ensemble = select_ensemble(predictions, y, _multiclass_log_loss, higher_is_better=False)
    blended = blend(predictions, ensemble.weights)
    assert blended.shape == (1500, 3)
    assert np.allclose(blended.sum(axis=1), 1.0)
    assert ensemble.score == pytest.approx(_multiclass_log_loss(y, blended))
    assert ensemble.improves(0.0)
    assert {0, 1} <= set(ensemble.members)


def test_regression_blends_values() -> None:
    rng = np.random.default_rng(11)
    y = rng.normal(size=2000) * 3
    predictions = [y + rng.normal(scale=1.0, size=2000) for _ in range(3)]
    ensemble = select_ensemble(predictions, y, _rmse, higher_is_better=False)
    blended = blend(predictions, ensemble.weights)
    assert blended.shape == (2000,)
    assert ensemble.improves(0.1)  # three independent errors: rmse drops by about 1 - 1/√3
    assert set(ensemble.members) == {0, 1, 2}
    assert ensemble.weights.max() < 0.6


def test_blend_refuses_mismatched_or_empty_weights(binary: tuple) -> None:
    _, models = binary
    with pytest.raises(ValueError, match="one weight per prediction"):
        blend(models, np.ones(2) / 2)
    with pytest.raises(ValueError, match="non-negative"):
        blend(models[:2], np.zeros(2))
    unused = [models[0], np.full(models[0].shape, np.nan)]
    assert np.array_equal(blend(unused, np.array([1.0, 0.0])), models[0])


def test_refuses_predictions_of_different_shapes(binary: tuple) -> None:
    y, models = binary
    with pytest.raises(ValueError, match="one shape"):
        select_ensemble([models[0], models[1][:10]], y, roc_auc_score, True)
    with pytest.raises(ValueError, match="one label per prediction row"):
        select_ensemble(models, y[:10], roc_auc_score, True)


def test_folds_score_a_blend_as_the_search_scores_a_trial() -> None:
    """Two periods with base rates 0.2 and 0.8: pooled, a model that only knows the period
    looks best; per fold (as the search and a later test see it) it ranks nothing."""
    rng = np.random.default_rng(4)
    folds = np.repeat([0, 1], 2000)
    y = (rng.random(4000) < np.where(folds == 0, 0.2, 0.8)).astype(int)
    within = 0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.3, 4000)  # ranks rows inside a period
    period = np.where(folds == 0, 0.2, 0.8)  # the base rate only
    pooled = select_ensemble([period, within], y, roc_auc_score, True)
    assert pooled.best_single == 0
    per_fold = select_ensemble([period, within], y, roc_auc_score, True, folds=folds)
    assert per_fold.best_single == 1
    assert per_fold.members == (1,)
    fold_means = np.mean([roc_auc_score(y[folds == f], within[folds == f]) for f in (0, 1)])
    assert per_fold.best_single_score == pytest.approx(fold_means)
