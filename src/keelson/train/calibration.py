"""Probability calibration for binary classifiers, learned on out-of-fold scores.

A calibration is plain data (a method and a tuple of floats), so the classifier that
carries it clones, hashes and serialises like any scikit-learn estimator:

* ``sigmoid``: Platt scaling on the logit of the score, ``p = expit(a · logit(s) + b)``;
  params ``(a, b)``, and ``(1, 0)`` leaves scores unchanged.
* ``isotonic``: a monotone step function fitted by isotonic regression; params are the
  knots' x values followed by their y values, applied with linear interpolation and
  clipped at the ends, then mixed with a millionth of the score itself. Isotonic
  regression is flat between knots: rows it would tie keep their order, so the
  calibration never changes the ranking (ROC-AUC, PR-AUC) of the model it calibrates.

``choose_calibration`` compares the methods by cross-fitted log-loss on the same
out-of-fold scores and keeps "none" unless a method is clearly better.

This module imports scikit-learn at import time (the classifier subclasses its base
classes); the CLI does not import it at startup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from keelson.train.metrics import binary_log_loss, brier, row_log_loss

Method = Literal["none", "sigmoid", "isotonic"]
Requested = Literal["auto", "isotonic", "sigmoid", "none"]
METHODS: tuple[Method, ...] = ("none", "sigmoid", "isotonic")
MIN_ISOTONIC_ROWS = 1000  # fewer rows: isotonic overfits, sigmoid is used instead
FOLDS = 5
MARGIN_SE = 2.0  # a method replaces a simpler one only if it lowers log-loss by 2 s.e.
_EPS = 1e-15
TIE_BREAK = 1e-6  # share of the raw score in an isotonic map: strictly increasing


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration map: ``method`` and its ``params`` (plain floats)."""

    method: Method = "none"
    params: tuple[float, ...] = ()

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """The isotonic knots as (x, y) arrays."""
        values = np.asarray(self.params, dtype=float)
        half = values.size // 2
        return values[:half], values[half:]


def fit_calibration(scores: np.ndarray, y: np.ndarray, method: Method) -> Calibration:
    """Learn the ``method`` map from scores (P(positive)) to calibrated probabilities."""
    scores, y = np.asarray(scores, dtype=float), np.asarray(y, dtype=float)
    if method == "none":
        return Calibration()
    if method == "sigmoid":
        return Calibration("sigmoid", _fit_platt(_logit(scores), y))
    if method == "isotonic":
        return Calibration("isotonic", _fit_isotonic(scores, y))
    raise ValueError(
        f"The 'method' parameter of fit_calibration must be one of {list(METHODS)}. "
        f"Got {method!r} instead."
    )


def apply(calibration: Calibration, scores: np.ndarray) -> np.ndarray:
    """Calibrated probabilities for ``scores``."""
    from scipy.special import expit

    scores = np.asarray(scores, dtype=float)
    if calibration.method == "sigmoid":
        a, b = calibration.params
        return np.asarray(expit(a * _logit(scores) + b))
    if calibration.method == "isotonic":
        return (1 - TIE_BREAK) * np.interp(scores, *calibration.knots()) + TIE_BREAK * scores
    return scores


def _logit(scores: np.ndarray) -> np.ndarray:
    from scipy.special import logit

    return np.asarray(logit(np.clip(scores, _EPS, 1 - _EPS)))


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt's fit: log-loss against smoothed targets, which keeps it finite when separable."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    positives = y.sum()
    negatives = y.size - positives
    target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        t = ab[0] * z + ab[1]
        value = -np.sum(target * log_expit(t) + (1 - target) * log_expit(-t))
        residual = expit(t) - target
        return float(value), np.array([residual @ z, residual.sum()])

    fit = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(fit.x[0]), float(fit.x[1])


def _fit_isotonic(scores: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    """Knots of the isotonic fit; y kept half a row away from 0 and 1 so log-loss stays finite."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, y)
    floor = 0.5 / y.size
    knots_y = np.clip(model.y_thresholds_, floor, 1 - floor)
    return tuple(float(v) for v in np.concatenate([model.X_thresholds_, knots_y]))


# -- measuring calibration ---------------------------------------------------------------


def _bins(scores: np.ndarray, bins: int) -> tuple[np.ndarray, int]:
    """Quantile bin of each score (ties share a bin) and the number of bins."""
    edges = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, bins + 1)))
    return np.searchsorted(edges[1:-1], scores, side="right"), max(edges.size - 1, 1)


def reliability_curve(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Per quantile bin of the scores: mean predicted probability, observed rate, rows."""
    scores, y = np.asarray(scores, dtype=float), np.asarray(y, dtype=float)
    if scores.size == 0:
        return []
    index, size = _bins(scores, bins)
    count = np.bincount(index, minlength=size)
    predicted = np.bincount(index, weights=scores, minlength=size)
    observed = np.bincount(index, weights=y, minlength=size)
    return [
        {
            "mean_predicted": float(predicted[i] / count[i]),
            "observed_rate": float(observed[i] / count[i]),
            "count": int(count[i]),
        }
        for i in np.flatnonzero(count)
    ]


def expected_calibration_error(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean gap between predicted and observed rates over quantile bins."""
    curve = reliability_curve(y, scores, bins)
    total = sum(point["count"] for point in curve)
    gaps = (
        point["count"] * abs(point["mean_predicted"] - point["observed_rate"]) for point in curve
    )
    return float(sum(gaps) / total) if total else 0.0


def calibration_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {
        "log_loss": binary_log_loss(y, scores),
        "brier": brier(y, scores),
        "ece": expected_calibration_error(y, scores),
    }


# -- choosing a calibration --------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationChoice:
    """The calibration chosen, and metrics before and after (after: cross-fitted)."""

    calibration: Calibration
    requested: Requested
    reason: str
    before: dict[str, float]
    after: dict[str, float]
    candidates: dict[str, float] = field(default_factory=dict)  # cross-fitted log-loss
    reliability_before: list[dict[str, Any]] = field(default_factory=list)
    reliability_after: list[dict[str, Any]] = field(default_factory=list)

    @property
    def method(self) -> Method:
        return self.calibration.method

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "requested": self.requested,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
            "candidates": self.candidates,
            "reliability_before": self.reliability_before,
            "reliability_after": self.reliability_after,
        }


def choose_calibration(
    scores: np.ndarray, y: np.ndarray, method: Requested = "auto", seed: int = 0
) -> CalibrationChoice:
    """Fit the requested calibration on out-of-fold ``scores``; with "auto", pick the method.

    Methods are compared by log-loss of cross-fitted (5-fold, stratified) calibrated
    scores; a method replaces a simpler one ("none" < "sigmoid" < "isotonic") only when
    it lowers log-loss by more than 2 standard errors of the paired per-row difference.
    Isotonic needs 1000 rows; below that, sigmoid is used instead. The "after" metrics
    are those of the cross-fitted scores, so they are not flattered by the fit.
    """
    if method not in ("auto", *METHODS):
        raise ValueError(
            "The 'method' parameter of choose_calibration must be one of "
            f"{['auto', *METHODS]}. Got {method!r} instead."
        )
    scores, y = _binary(scores, y)
    candidates, reason = _candidates(y, method)
    crossed = {name: _cross_fit(scores, y, name, seed) for name in candidates}
    chosen = _pick(y, crossed) if method == "auto" else candidates[-1]
    return CalibrationChoice(
        calibration=fit_calibration(scores, y, chosen),
        requested=method,
        reason=reason,
        before=calibration_metrics(y, scores),
        after=calibration_metrics(y, crossed[chosen]),
        candidates={name: binary_log_loss(y, values) for name, values in crossed.items()},
        reliability_before=reliability_curve(y, scores),
        reliability_after=reliability_curve(y, crossed[chosen]),
    )


def _binary(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=float), np.asarray(y)
    if scores.shape != labels.shape or scores.ndim != 1 or scores.size == 0:
        raise ValueError(
            "choose_calibration needs one positive-class score per label, as 1-d arrays. "
            f"Got scores of shape {scores.shape} and labels of shape {labels.shape} instead."
        )
    if not np.isin(labels, (0, 1)).all() or not np.isfinite(scores).all():
        raise ValueError(
            "choose_calibration needs labels in {0, 1} and finite scores; "
            "calibration is for binary tasks."
        )
    return scores, labels.astype(int)


def _candidates(y: np.ndarray, method: Requested) -> tuple[tuple[Method, ...], str]:
    """The methods to cross-fit for the request, and why the choice is made as it is."""
    if np.bincount(y, minlength=2).min() < 2:
        return ("none",), "calibration needs at least 2 rows of each class"
    if method == "none":
        return ("none",), "requested"
    enough = y.size >= MIN_ISOTONIC_ROWS
    note = "" if enough else f"; isotonic needs {MIN_ISOTONIC_ROWS} rows, got {y.size}"
    if method == "auto":
        methods = METHODS if enough else METHODS[:2]
        return methods, f"lowest cross-fitted log-loss among {list(methods)}{note}"
    if method == "isotonic" and not enough:
        return ("none", "sigmoid"), f"sigmoid instead of isotonic{note}"
    return ("none", method), "requested"


def _cross_fit(scores: np.ndarray, y: np.ndarray, method: Method, seed: int) -> np.ndarray:
    """Each row calibrated by a map fitted on the other folds."""
    from sklearn.model_selection import StratifiedKFold

    if method == "none":
        return scores
    folds = min(FOLDS, int(np.bincount(y).min()))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    result = np.empty_like(scores)
    for fit_rows, held_rows in splitter.split(scores, y):
        calibration = fit_calibration(scores[fit_rows], y[fit_rows], method)
        result[held_rows] = apply(calibration, scores[held_rows])
    return result


def _pick(y: np.ndarray, crossed: dict[Method, np.ndarray]) -> Method:
    """The simplest method no later method beats by more than MARGIN_SE standard errors."""
    chosen: Method = "none"
    for name in METHODS[1:]:
        if name not in crossed:
            continue
        gain = row_log_loss(y, crossed[chosen]) - row_log_loss(y, crossed[name])
        if gain.mean() > MARGIN_SE * gain.std(ddof=1) / np.sqrt(gain.size):
            chosen = name
    return chosen


# -- the calibrated classifier -------------------------------------------------------------


class CalibratedClassifier(ClassifierMixin, BaseEstimator):
    """A binary classifier whose positive-class probability goes through a fixed calibration.

    The calibration was learned out-of-fold beforehand; ``fit`` fits (a clone of)
    ``estimator`` only. ``method`` and ``params`` are those of a :class:`Calibration`.
    """

    def __init__(
        self,
        estimator: Any,
        method: Method = "none",
        params: tuple[float, ...] = (),
        threshold: float = 0.5,
    ):
        self.estimator = estimator
        self.method = method
        self.params = params
        self.threshold = threshold

    @classmethod
    def wrap(
        cls, estimator: Any, calibration: Calibration, threshold: float = 0.5
    ) -> CalibratedClassifier:
        return cls(estimator, calibration.method, calibration.params, threshold)

    @classmethod
    def prefit(
        cls, fitted: Any, calibration: Calibration, threshold: float = 0.5
    ) -> CalibratedClassifier:
        """Around an already fitted classifier, as if ``fit`` had fitted it: ``estimator``
        is its unfitted template, so a saved model holds the fitted one once."""
        from sklearn.base import clone

        model = cls.wrap(clone(fitted), calibration, threshold)
        model._check_calibration()
        model.estimator_ = fitted
        model.classes_ = np.asarray(fitted.classes_)
        return model

    @property
    def calibration(self) -> Calibration:
        return Calibration(self.method, tuple(self.params))

    def fit(self, X: Any, y: Any, **fit_params: Any) -> CalibratedClassifier:  # noqa: N803
        from sklearn.base import clone

        self._check_calibration()
        self.estimator_ = clone(self.estimator).fit(X, y, **fit_params)
        self.classes_ = self.estimator_.classes_
        if len(self.classes_) != 2:
            raise ValueError(
                "CalibratedClassifier is for binary targets. "
                f"Got {len(self.classes_)} classes instead."
            )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        positive = apply(self.calibration, self.estimator_.predict_proba(X)[:, 1])
        return np.column_stack([1 - positive, positive])

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """The positive class where its calibrated probability reaches ``threshold``."""
        flagged = self.predict_proba(X)[:, 1] >= self.threshold
        return np.asarray(self.classes_[flagged.astype(int)])

    def _check_calibration(self) -> None:
        expected = {"none": "no", "sigmoid": "2", "isotonic": "an even, positive number of"}
        if self.method not in expected:
            raise ValueError(
                f"The 'method' parameter of CalibratedClassifier must be one of {list(METHODS)}. "
                f"Got {self.method!r} instead."
            )
        size = len(self.params)
        valid = {"none": size == 0, "sigmoid": size == 2, "isotonic": size > 0 and size % 2 == 0}
        if not valid[self.method]:
            raise ValueError(
                f"The 'params' parameter of CalibratedClassifier must hold "
                f"{expected[self.method]} values for method {self.method!r}. Got {size} instead."
            )
