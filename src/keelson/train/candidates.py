"""Model families and trial configurations: what a trial fits, and how.

A family knows its estimator for each task, its preprocessing flavour, its search
space and a short portfolio of strong configurations tried before the search
proposes its own (the first is the family's default). Imbalance handling is part
of a configuration and lives inside the fitted pipeline: resamplers act in
``fit`` only (imbalanced-learn's pipeline), so they never touch scored rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keelson.features.preprocess import ColumnKinds, Flavour, preprocessor
from keelson.spec import TaskKind

Params = dict[str, Any]
# params, task, weighted, threads, seed, number of categorical columns (they come first)
Builder = Callable[[Params, TaskKind, bool, int, int, int], Any]


@dataclass(frozen=True)
class Config:
    """One trial's configuration: a family, its parameters and the imbalance handling."""

    family: str
    params: Params
    imbalance: str = "none"  # none | weights | over | under | smote | balanced_bagging
    drop: tuple[str, ...] = ()  # input columns the preprocessing ignores (feature selection)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "params": self.params,
            "imbalance": self.imbalance,
            "drop": list(self.drop),
        }


@dataclass(frozen=True)
class Family:
    name: str
    prefix: str  # of its parameter names in the search space
    flavour: Flavour
    portfolio: list[Params]
    space: Callable[[Any], Params]
    build: Builder
    tasks: frozenset[str] = field(default=frozenset({"binary", "multiclass", "regression"}))


def _linear_space(trial: Any) -> Params:
    return {"C": trial.suggest_float("linear.C", 1e-3, 1e2, log=True)}


def _linear(
    params: Params, task: TaskKind, weighted: bool, threads: int, seed: int, categorical: int
) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == "regression":
        return Ridge(alpha=1.0 / params["C"], random_state=seed)
    return LogisticRegression(
        C=params["C"], max_iter=2000, class_weight=_weights(weighted), random_state=seed
    )


def _forest_space(prefix: str) -> Callable[[Any], Params]:
    def space(trial: Any) -> Params:
        return {
            "n_estimators": trial.suggest_int(f"{prefix}.n_estimators", 100, 500, log=True),
            "max_features": trial.suggest_float(f"{prefix}.max_features", 0.1, 1.0),
            "min_samples_leaf": trial.suggest_int(f"{prefix}.min_samples_leaf", 1, 30, log=True),
        }

    return space


def _forest(kind: str) -> Builder:
    def build(
        params: Params, task: TaskKind, weighted: bool, threads: int, seed: int, categorical: int
    ) -> Any:
        from sklearn import ensemble

        name = {"rf": "RandomForest", "et": "ExtraTrees"}[kind]
        if task == "regression":
            return getattr(ensemble, f"{name}Regressor")(
                **params, n_jobs=threads, random_state=seed
            )
        return getattr(ensemble, f"{name}Classifier")(
            **params, class_weight=_weights(weighted), n_jobs=threads, random_state=seed
        )

    return build


def _hgb_space(trial: Any) -> Params:
    return {
        "learning_rate": trial.suggest_float("hgb.learning_rate", 0.01, 0.5, log=True),
        "max_leaf_nodes": trial.suggest_int("hgb.max_leaf_nodes", 4, 127, log=True),
        "min_samples_leaf": trial.suggest_int("hgb.min_samples_leaf", 5, 200, log=True),
        "l2_regularization": trial.suggest_float("hgb.l2_regularization", 1e-6, 10.0, log=True),
        "max_features": trial.suggest_float("hgb.max_features", 0.3, 1.0),
    }


def _hgb(
    params: Params, task: TaskKind, weighted: bool, threads: int, seed: int, categorical: int
) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    common = {
        **params,
        "max_iter": 1000,
        "early_stopping": True,
        "validation_fraction": 0.1,
        "n_iter_no_change": 20,
        "categorical_features": list(range(categorical)) or None,
        "random_state": seed,
    }
    if task == "regression":
        return HistGradientBoostingRegressor(**common)
    return HistGradientBoostingClassifier(**common, class_weight=_weights(weighted))


def _lgbm_space(trial: Any) -> Params:
    return {
        "learning_rate": trial.suggest_float("lgbm.learning_rate", 0.01, 0.5, log=True),
        "n_estimators": trial.suggest_int("lgbm.n_estimators", 20, 1000, log=True),
        "num_leaves": trial.suggest_int("lgbm.num_leaves", 4, 255, log=True),
        "min_child_samples": trial.suggest_int("lgbm.min_child_samples", 3, 200, log=True),
        "subsample": trial.suggest_float("lgbm.subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("lgbm.colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("lgbm.reg_lambda", 1e-6, 10.0, log=True),
    }


def _lgbm(
    params: Params, task: TaskKind, weighted: bool, threads: int, seed: int, categorical: int
) -> Any:
    from lightgbm import LGBMClassifier, LGBMRegressor

    common = {
        **params,
        "subsample_freq": 1,
        "random_state": seed,
        "n_jobs": threads,
        "verbose": -1,
    }
    if task == "regression":
        return LGBMRegressor(**common)
    return LGBMClassifier(**common, class_weight=_weights(weighted))


def _xgb_space(trial: Any) -> Params:
    return {
        "learning_rate": trial.suggest_float("xgb.learning_rate", 0.01, 0.5, log=True),
        "n_estimators": trial.suggest_int("xgb.n_estimators", 20, 1000, log=True),
        "max_depth": trial.suggest_int("xgb.max_depth", 2, 10),
        "min_child_weight": trial.suggest_float("xgb.min_child_weight", 0.5, 20.0, log=True),
        "subsample": trial.suggest_float("xgb.subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("xgb.colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("xgb.reg_lambda", 1e-3, 10.0, log=True),
    }


def _xgb(
    params: Params, task: TaskKind, weighted: bool, threads: int, seed: int, categorical: int
) -> Any:
    import xgboost

    common = {**params, "tree_method": "hist", "n_jobs": threads, "random_state": seed}
    if task == "regression":
        return xgboost.XGBRegressor(**common)
    return xgboost.XGBClassifier(**common)


def _weights(weighted: bool) -> str | None:
    return "balanced" if weighted else None


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("linear", "linear", "linear", [{"C": 1.0}, {"C": 0.05}], _linear_space, _linear),
        Family(
            "random_forest",
            "rf",
            "tree",
            [
                {"n_estimators": 200, "max_features": 0.35, "min_samples_leaf": 3},
                {"n_estimators": 300, "max_features": 0.2, "min_samples_leaf": 8},
            ],
            _forest_space("rf"),
            _forest("rf"),
        ),
        Family(
            "extra_trees",
            "et",
            "tree",
            [
                {"n_estimators": 200, "max_features": 0.6, "min_samples_leaf": 3},
                {"n_estimators": 300, "max_features": 0.9, "min_samples_leaf": 8},
            ],
            _forest_space("et"),
            _forest("et"),
        ),
        Family(
            "hist_gradient_boosting",
            "hgb",
            "tree",
            [
                {
                    "learning_rate": 0.1,
                    "max_leaf_nodes": 31,
                    "min_samples_leaf": 20,
                    "l2_regularization": 1e-6,
                    "max_features": 1.0,
                },
                {
                    "learning_rate": 0.05,
                    "max_leaf_nodes": 63,
                    "min_samples_leaf": 10,
                    "l2_regularization": 1.0,
                    "max_features": 0.5,
                },
                {  # small or noisy data: shallow, slow, regularised
                    "learning_rate": 0.03,
                    "max_leaf_nodes": 15,
                    "min_samples_leaf": 40,
                    "l2_regularization": 5.0,
                    "max_features": 0.7,
                },
            ],
            _hgb_space,
            _hgb,
        ),
        Family(
            "lightgbm",
            "lgbm",
            "tree",
            [
                {
                    "learning_rate": 0.05,
                    "n_estimators": 300,
                    "num_leaves": 31,
                    "min_child_samples": 20,
                    "subsample": 1.0,
                    "colsample_bytree": 1.0,
                    "reg_lambda": 1e-6,
                },
                {
                    "learning_rate": 0.03,
                    "n_estimators": 500,
                    "num_leaves": 63,
                    "min_child_samples": 10,
                    "subsample": 0.8,
                    "colsample_bytree": 0.5,
                    "reg_lambda": 1.0,
                },
                {
                    "learning_rate": 0.02,
                    "n_estimators": 600,
                    "num_leaves": 15,
                    "min_child_samples": 40,
                    "subsample": 0.7,
                    "colsample_bytree": 0.7,
                    "reg_lambda": 5.0,
                },
                {  # few, tiny trees: what still holds when the rows drift over time
                    "learning_rate": 0.3,
                    "n_estimators": 100,
                    "num_leaves": 4,
                    "min_child_samples": 20,
                    "subsample": 1.0,
                    "colsample_bytree": 0.7,
                    "reg_lambda": 1.0,
                },
            ],
            _lgbm_space,
            _lgbm,
        ),
        Family(
            "xgboost",
            "xgb",
            "tree",
            [
                {
                    "learning_rate": 0.05,
                    "n_estimators": 300,
                    "max_depth": 6,
                    "min_child_weight": 1.0,
                    "subsample": 0.8,
                    "colsample_bytree": 0.8,
                    "reg_lambda": 1.0,
                }
            ],
            _xgb_space,
            _xgb,
        ),
    )
}


_EXTRAS = {"xgboost": ("xgboost", "keelson[xgboost]")}  # family: (module, what to install)


def require_installed(candidates: list[str]) -> None:
    """A clear error before any work when a candidate's optional library is missing."""
    import importlib.util

    from keelson.errors import SpecError

    for name in candidates:
        if name in _EXTRAS and importlib.util.find_spec(_EXTRAS[name][0]) is None:
            raise SpecError(
                f"the candidate '{name}' needs the optional library '{_EXTRAS[name][0]}'.",
                where="train.candidates",
                hint=f"Install {_EXTRAS[name][1]}, or remove '{name}' from the candidates.",
            )


def portfolio(candidates: list[str]) -> list[Config]:
    """Every candidate's known-good configurations, best first, interleaved across families."""
    order = sorted(candidates, key=_PRIORITY.index)
    depth = max(len(FAMILIES[name].portfolio) for name in order)
    return [
        Config(name, dict(FAMILIES[name].portfolio[rank]))
        for rank in range(depth)
        for name in order
        if rank < len(FAMILIES[name].portfolio)
    ]


_PRIORITY = [
    "lightgbm",
    "hist_gradient_boosting",
    "linear",
    "extra_trees",
    "random_forest",
    "xgboost",
]


def make_pipeline(
    config: Config, kinds: ColumnKinds, task: TaskKind, threads: int, seed: int
) -> Any:
    """The one object that is trained, saved and served: preprocessing (+ resampler) + model."""
    family = FAMILIES[config.family]
    kinds = kinds.without(config.drop)
    weighted = config.imbalance == "weights"
    model = family.build(config.params, task, weighted, threads, seed, len(kinds.categorical))
    steps: list[tuple[str, Any]] = [("preprocess", preprocessor(kinds, family.flavour))]
    if config.imbalance in ("none", "weights"):
        from sklearn.pipeline import Pipeline

        return Pipeline([*steps, ("model", model)])
    from imblearn.pipeline import Pipeline as ResamplingPipeline

    if config.imbalance == "balanced_bagging":
        from imblearn.ensemble import BalancedBaggingClassifier

        model = BalancedBaggingClassifier(estimator=model, n_estimators=5, random_state=seed)
    else:
        steps += _resampler(config.imbalance, kinds, family.flavour, seed)
    return ResamplingPipeline([*steps, ("model", model)])


def _resampler(kind: str, kinds: ColumnKinds, flavour: Flavour, seed: int) -> list[tuple[str, Any]]:
    from imblearn import over_sampling, under_sampling

    if kind == "over":
        return [("resample", over_sampling.RandomOverSampler(random_state=seed))]
    if kind == "under":
        return [("resample", under_sampling.RandomUnderSampler(random_state=seed))]
    from sklearn.impute import SimpleImputer

    fill = [("fill", SimpleImputer(strategy="most_frequent", keep_empty_features=True))]
    categorical = list(range(len(kinds.categorical))) if flavour == "tree" else []
    if not categorical:
        return [*fill, ("resample", over_sampling.SMOTE(random_state=seed))]
    if len(categorical) == len(kinds.categorical) + len(kinds.numeric):
        return [*fill, ("resample", over_sampling.SMOTEN(random_state=seed))]
    return [
        *fill,
        ("resample", over_sampling.SMOTENC(categorical_features=categorical, random_state=seed)),
    ]
