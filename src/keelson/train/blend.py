"""A weighted average of fitted models: the estimator a greedy ensemble is served as."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone


class Blend(BaseEstimator):
    """Average of ``members``' probabilities (classification) or predictions (regression).

    ``fit`` fits a clone of each member; :func:`blend_prefit` blends models that are
    already fitted, without refitting them.
    """

    def __init__(self, members: list[Any], weights: list[float], task: str) -> None:
        self.members = members
        self.weights = weights
        self.task = task

    def fit(self, X: Any, y: Any) -> Blend:  # noqa: N803
        self.members_ = [clone(member).fit(X, y) for member in self.members]
        if self.task != "regression":
            self.classes_ = np.asarray(self.members_[0].classes_)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        return sum(  # type: ignore[return-value]
            weight * np.asarray(member.predict_proba(X), dtype=np.float64)
            for member, weight in zip(self.members_, self.weights, strict=True)
        )

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        if self.task == "regression":
            return sum(  # type: ignore[return-value]
                weight * np.asarray(member.predict(X), dtype=np.float64)
                for member, weight in zip(self.members_, self.weights, strict=True)
            )
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])


class BlendClassifier(ClassifierMixin, Blend):
    """A blend of classifiers: scikit-learn (and serving) see a classifier."""


class BlendRegressor(RegressorMixin, Blend):
    """A blend of regressors."""


def blend_of(members: list[Any], weights: list[float], task: str) -> Blend:
    kind = BlendRegressor if task == "regression" else BlendClassifier
    return kind(members, weights, task)


def blend_prefit(fitted: list[Any], weights: list[float], task: str) -> Blend:
    """A blend of already fitted models, as if ``fit`` had fitted them: ``members`` are
    their unfitted templates, so a saved model holds each fitted member once."""
    model = blend_of([clone(member) for member in fitted], weights, task)
    model.members_ = list(fitted)
    if task != "regression":
        model.classes_ = np.asarray(fitted[0].classes_)
    return model
