from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

from keelson.train import generalisation
from keelson.train.generalisation import (
    LearningPoint,
    ScoreRows,
    assess_gap,
    learning_curve,
    more_data_verdict,
)

X, Y = make_classification(
    n_samples=1200, n_features=20, n_informative=6, flip_y=0.05, random_state=0
)
FOLDS = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, Y))


def _auc(model: Any, rows: np.ndarray) -> float:
    return float(roc_auc_score(Y[rows], model.predict_proba(X[rows])[:, 1]))


def _scorer(make: type, **params: Any) -> ScoreRows:
    def score(fit: np.ndarray, held_out: np.ndarray) -> tuple[float, float]:
        model = make(**params).fit(X[fit], Y[fit])
        return _auc(model, fit), _auc(model, held_out)

    return score


def _cross_validated(score: ScoreRows) -> tuple[float, float]:
    train, held_out = np.mean([score(fit, rows) for fit, rows in FOLDS], axis=0)
    return float(train), float(held_out)


def test_gap_warns_for_a_memorising_model_and_not_for_a_tight_one() -> None:
    memorising = assess_gap(*_cross_validated(_scorer(DecisionTreeClassifier)), "roc_auc", True)
    tight = assess_gap(*_cross_validated(_scorer(LogisticRegression, C=0.1)), "roc_auc", True)
    assert memorising.train_score == 1.0 and memorising.gap > 0.05
    assert memorising.warning is not None and "ROC-AUC" in memorising.warning
    assert 0 <= tight.gap < 0.05 and tight.warning is None


def test_gap_of_a_loss_is_oriented_and_relative() -> None:
    gap = assess_gap(train_score=0.10, cv_score=0.40, metric="log_loss", higher_is_better=False)
    assert gap.gap == pytest.approx(0.30) and gap.relative == pytest.approx(0.75)
    assert gap.warning is not None and "below" in gap.warning
    close = assess_gap(train_score=0.36, cv_score=0.40, metric="rmse", higher_is_better=False)
    assert close.relative == pytest.approx(0.10) and close.warning is None
    assert close.to_dict()["metric"] == "rmse"


def test_learning_curve_rises_with_rows() -> None:
    points = learning_curve(_scorer(LogisticRegression), FOLDS, fractions=(0.05, 0.25, 1.0))
    assert [p.fraction for p in points] == [0.05, 0.25, 1.0]
    assert [p.rows for p in points] == [40, 200, 800]
    cv = [p.cv_score for p in points]
    assert cv[0] < cv[1] < cv[2]
    assert points[0].train_score > points[0].cv_score  # few rows: memorised
    assert set(points[0].to_dict()) == {"rows", "train_score", "cv_score", "cv_std", "fraction"}


def test_learning_curve_is_reproducible_with_nested_subsets() -> None:
    seen: list[np.ndarray] = []

    def record(fit: np.ndarray, held_out: np.ndarray) -> tuple[float, float]:
        seen.append(fit)
        return 0.0, 0.0

    learning_curve(record, FOLDS[:1], fractions=(0.5, 0.25), seed=3)
    first = list(seen)
    assert np.isin(first[0], first[1]).all()  # the 25 % subset is inside the 50 % one
    seen.clear()
    learning_curve(record, FOLDS[:1], fractions=(0.25, 0.5), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, seen, strict=True))


def test_ordered_takes_the_last_rows() -> None:
    seen: list[np.ndarray] = []

    def record(fit: np.ndarray, held_out: np.ndarray) -> tuple[float, float]:
        seen.append(fit)
        return 1.0, 0.5

    folds = [(np.arange(100), np.arange(100, 120))]
    points = learning_curve(record, folds, fractions=(0.1, 1.0), ordered=True)
    assert np.array_equal(seen[0], np.arange(90, 100))
    assert np.array_equal(seen[1], np.arange(100))
    assert points[0].rows == 10 and points[0].cv_std == 0.0


def test_learning_curve_returns_nothing_once_the_deadline_has_passed() -> None:
    calls: list[int] = []

    def score(fit: np.ndarray, held_out: np.ndarray) -> tuple[float, float]:
        calls.append(fit.size)
        return 1.0, 0.5

    assert learning_curve(score, FOLDS, deadline=time.monotonic() - 1.0) == []
    assert calls == []


def test_learning_curve_keeps_only_the_fractions_finished_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(generalisation.time, "monotonic", lambda: clock[0])
    calls: list[int] = []

    def score(fit: np.ndarray, held_out: np.ndarray) -> tuple[float, float]:
        calls.append(fit.size)
        clock[0] += 1.0  # each fit takes one second on this clock
        return 1.0, 0.5

    points = learning_curve(score, FOLDS, fractions=(0.1, 0.5, 1.0), deadline=3.5)
    assert len(calls) == 4 and [p.fraction for p in points] == [0.1]  # 0.5 left unfinished


def test_learning_curve_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="fractions"):
        learning_curve(_scorer(LogisticRegression), FOLDS, fractions=(0.0, 1.0))


def _curve(*cv: float) -> list[LearningPoint]:
    fractions = (0.25, 0.5, 0.75, 1.0)
    return [
        LearningPoint(f, int(1000 * f), 0.99, s, 0.01) for f, s in zip(fractions, cv, strict=True)
    ]


def test_verdict_for_a_rising_curve() -> None:
    verdict = more_data_verdict(_curve(0.80, 0.85, 0.856, 0.861), True, "roc_auc")
    assert verdict == (
        "The CV ROC-AUC still rises by 0.011 from 50 % to 100 % of the rows: "
        "more data would likely help."
    )


def test_verdict_for_a_flat_curve_and_a_falling_loss() -> None:
    flat = more_data_verdict(_curve(0.80, 0.860, 0.8605, 0.861), True, "roc_auc")
    assert flat.startswith("The CV ROC-AUC is flat (+0.001) from 50 % to 100 % of the rows")
    assert "unlikely to pay" in flat
    loss = more_data_verdict(_curve(0.60, 0.50, 0.45, 0.40), False, "log_loss")
    assert loss.startswith("The CV log loss still falls by 0.1 ")
    worse = more_data_verdict(_curve(0.80, 0.85, 0.83, 0.82), True, "roc_auc")
    assert "getting worse" in worse


def test_verdict_with_too_few_points() -> None:
    assert "too few" in more_data_verdict(_curve(0.8, 0.8, 0.8, 0.8)[:1], True, "roc_auc")
    assert "too few" in more_data_verdict([], True, "roc_auc")
