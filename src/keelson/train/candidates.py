"""Model families: each knows its estimator, its preprocessing and its search space.

A family is one entry in ``FAMILIES``; adding one is adding one ``Family`` object.
The first trial of each family uses ``defaults`` (strong, cheap starting points).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keelson.features.preprocess import ColumnKinds, Flavour, preprocessor

Params = dict[str, Any]


@dataclass(frozen=True)
class Family:
    name: str
    flavour: Flavour
    defaults: Params
    space: Callable[[Any], Params]
    build: Callable[[Params, ColumnKinds, bool, int], Any]


def _logistic_space(trial: Any) -> Params:
    return {"C": trial.suggest_float("logistic.C", 1e-3, 1e2, log=True)}


def _logistic(params: Params, kinds: ColumnKinds, weighted: bool, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=params["C"],
        max_iter=2000,
        class_weight="balanced" if weighted else None,
        random_state=seed,
    )


def _hgb_space(trial: Any) -> Params:
    return {
        "learning_rate": trial.suggest_float("hgb.learning_rate", 0.01, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("hgb.max_leaf_nodes", 7, 127, log=True),
        "min_samples_leaf": trial.suggest_int("hgb.min_samples_leaf", 5, 200, log=True),
        "l2_regularization": trial.suggest_float("hgb.l2_regularization", 1e-6, 10.0, log=True),
        "max_features": trial.suggest_float("hgb.max_features", 0.3, 1.0),
    }


def _hgb(params: Params, kinds: ColumnKinds, weighted: bool, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    categorical = list(range(len(kinds.categorical))) or None
    return HistGradientBoostingClassifier(
        **params,
        max_iter=500,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        categorical_features=categorical,
        class_weight="balanced" if weighted else None,
        random_state=seed,
    )


def _lgbm_space(trial: Any) -> Params:
    return {
        "learning_rate": trial.suggest_float("lgbm.learning_rate", 0.01, 0.2, log=True),
        "n_estimators": trial.suggest_int("lgbm.n_estimators", 50, 800, log=True),
        "num_leaves": trial.suggest_int("lgbm.num_leaves", 7, 127, log=True),
        "min_child_samples": trial.suggest_int("lgbm.min_child_samples", 5, 200, log=True),
        "subsample": trial.suggest_float("lgbm.subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("lgbm.colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("lgbm.reg_lambda", 1e-6, 10.0, log=True),
    }


def _lgbm(params: Params, kinds: ColumnKinds, weighted: bool, seed: int) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        **params,
        subsample_freq=1,
        class_weight="balanced" if weighted else None,
        random_state=seed,
        n_jobs=2,
        verbose=-1,
    )


FAMILIES: dict[str, Family] = {
    "logistic": Family("logistic", "linear", {"C": 1.0}, _logistic_space, _logistic),
    "hist_gradient_boosting": Family(
        "hist_gradient_boosting",
        "tree",
        {
            "learning_rate": 0.1,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 20,
            "l2_regularization": 1e-6,
            "max_features": 1.0,
        },
        _hgb_space,
        _hgb,
    ),
    "lightgbm": Family(
        "lightgbm",
        "tree",
        {
            "learning_rate": 0.05,
            "n_estimators": 200,
            "num_leaves": 31,
            "min_child_samples": 20,
            "subsample": 1.0,
            "colsample_bytree": 1.0,
            "reg_lambda": 1e-6,
        },
        _lgbm_space,
        _lgbm,
    ),
}


def make_pipeline(
    family: str, params: Params, kinds: ColumnKinds, weighted: bool, seed: int
) -> Any:
    """The one object that is trained, saved, served: preprocessing + estimator."""
    from sklearn.pipeline import Pipeline

    chosen = FAMILIES[family]
    return Pipeline(
        [
            ("preprocess", preprocessor(kinds, chosen.flavour)),
            ("model", chosen.build(params, kinds, weighted, seed)),
        ]
    )
