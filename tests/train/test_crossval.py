from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from tests.train.problems import binary_problem

from keelson.train.candidates import Config
from keelson.train.crossval import Problem, cross_validate


def imbalanced(rows: int = 600) -> Problem:
    rng = np.random.default_rng(1)
    frame = pl.DataFrame(
        {
            "row_id": np.arange(rows, dtype=np.float64),  # passes through the tree preprocessing
            "a": rng.normal(size=rows),
            "c": rng.choice(["x", "y"], rows),
        }
    )
    labels = (frame["a"].to_numpy() + rng.normal(0, 0.7, rows) > 1.6).astype(int)
    return binary_problem(frame, labels, 3, "pr_auc")


def test_smote_only_ever_sees_the_rows_being_fitted(monkeypatch: pytest.MonkeyPatch) -> None:
    from imblearn.over_sampling import SMOTENC

    seen: list[set[float]] = []
    original = SMOTENC.fit_resample

    def spy(self: Any, X: Any, y: Any, **kwargs: Any) -> Any:  # noqa: N803
        seen.append(set(np.asarray(X)[:, 1].tolist()))  # column 0 is the category, 1 row_id
        return original(self, X, y, **kwargs)

    monkeypatch.setattr(SMOTENC, "fit_resample", spy)
    problem = imbalanced()
    params = {"n_estimators": 30, "num_leaves": 7}
    outcome = cross_validate(problem, Config("lightgbm", params, "smote"))
    assert outcome.state == "complete" and len(seen) == len(problem.folds)
    for ids, (fit_rows, score_rows) in zip(seen, problem.folds, strict=True):
        assert ids == set(fit_rows.astype(float).tolist())
        assert ids.isdisjoint(score_rows.astype(float).tolist())


def test_out_of_fold_predictions_cover_every_row_once() -> None:
    problem = imbalanced()
    outcome = cross_validate(problem, Config("linear", {"C": 1.0}))
    assert outcome.oof is not None and not np.isnan(outcome.oof).any()
    assert len(outcome.fold_scores) == 3 and outcome.score == pytest.approx(
        np.mean(outcome.fold_scores)
    )


def test_repeated_folds_average_each_rows_predictions() -> None:
    from dataclasses import replace

    from keelson.spec import Split
    from keelson.train.split import folds

    problem = imbalanced()
    drawn = folds(problem.features, problem.labels, Split(), "stratified", 3, repeats=2)
    assert len(drawn) == 6
    for repeat in (drawn[:3], drawn[3:]):  # each repeat scores every row once
        assert sorted(np.concatenate([rows for _, rows in repeat])) == list(range(600))
    config = Config("linear", {"C": 1.0})
    first, second, both = (
        cross_validate(replace(problem, folds=part), config)
        for part in (drawn[:3], drawn[3:], drawn)
    )
    assert first.oof is not None and second.oof is not None and both.oof is not None
    assert not np.allclose(first.oof, second.oof)  # other rows in each fold: other models
    np.testing.assert_allclose(both.oof, (first.oof + second.oof) / 2)
    assert both.score == pytest.approx(np.mean(first.fold_scores + second.fold_scores))


def test_the_learning_curve_takes_its_full_size_point_from_the_trial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from keelson.train import crossval

    problem = imbalanced()
    config = Config("linear", {"C": 1.0})
    trial = cross_validate(problem, config)
    known = list(zip(trial.train_scores, trial.fold_scores, strict=True))
    fitted = crossval.learning_points(problem, config, float("inf"), ordered=False)
    built = []
    original = crossval.make_pipeline
    monkeypatch.setattr(crossval, "make_pipeline", lambda *a: built.append(a) or original(*a))
    reused = crossval.learning_points(problem, config, float("inf"), False, known)
    assert len(built) == 3 * 3  # three folds at 10, 25 and 50 % of their rows; none at 100 %
    assert [p["fraction"] for p in reused] == [0.1, 0.25, 0.5, 1.0]
    for mine, theirs in zip(reused, fitted, strict=True):
        assert mine == pytest.approx(theirs)


def test_a_trial_worse_than_the_bar_is_pruned_after_its_first_fold() -> None:
    outcome = cross_validate(imbalanced(), Config("linear", {"C": 1.0}), prune_bars=[1.1, 1.1, 1.1])
    assert outcome.state == "pruned" and len(outcome.fold_scores) == 1


def test_xgboost_is_a_candidate_when_installed() -> None:
    pytest.importorskip("xgboost", reason="the optional xgboost extra is not installed")
    problem = imbalanced()
    outcome = cross_validate(problem, Config("xgboost", {"n_estimators": 30, "max_depth": 3}))
    assert outcome.state == "complete" and outcome.score is not None
    assert outcome.score > 2 * problem.labels.mean()  # PR-AUC well above the base rate


def test_a_missing_optional_learner_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from keelson.errors import SpecError
    from keelson.train.candidates import require_installed

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpecError, match=r"keelson\[xgboost\]"):
        require_installed(["linear", "xgboost"])
