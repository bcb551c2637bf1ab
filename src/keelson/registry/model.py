"""A model version loaded for prediction: the one fitted pipeline plus its signature."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import polars as pl

from keelson.errors import IntegrityError
from keelson.registry.signature import Signature
from keelson.spec import TaskKind

Runtime = Literal["scikit-learn", "onnxruntime"]  # what answers a loaded model's pipeline


@dataclass(frozen=True)
class Prediction:
    """A model's answer for a batch of rows.

    Classification: one label per row, ``probabilities`` of shape (rows, classes) with
    columns in ``classes`` order, and ``values`` None. Regression: ``values`` of shape
    (rows,), no labels or classes, and ``probabilities`` of shape (rows, 0).
    """

    labels: list[str]
    probabilities: np.ndarray
    classes: list[str]
    values: np.ndarray | None = None

    @classmethod
    def of_values(cls, values: np.ndarray) -> Prediction:
        """A regression prediction."""
        return cls([], np.empty((len(values), 0), dtype=np.float64), [], values)

    @property
    def rows(self) -> int:
        return int(self.probabilities.shape[0])

    def part(self, start: int, stop: int) -> Prediction:
        """Rows ``start:stop`` (a request's share of a batched prediction)."""
        values = None if self.values is None else self.values[start:stop]
        return Prediction(
            self.labels[start:stop], self.probabilities[start:stop], self.classes, values
        )


@dataclass(frozen=True)
class LoadedModel:
    """What training saved and serving/streaming load: preprocessing and model as one object.

    The signature's ``classes`` say what ``pipeline`` is (see :attr:`task`):

    - binary (two classes, [negative label, positive label]): a fitted classifier whose
      ``predict`` applies the tuned decision ``threshold`` (keelson's ``CalibratedClassifier``);
    - multiclass (three or more, in the order of the pipeline's ``classes_``): a fitted
      classifier with ``predict_proba`` and ``classes_``;
    - regression (no classes): a fitted regressor.

    ``threshold`` is recorded for binary models only (None otherwise).
    """

    name: str
    version: int
    pipeline: Any
    signature: Signature
    threshold: float | None = None
    runtime: Runtime = "scikit-learn"  # onnxruntime: see keelson.serve.compiled

    def __post_init__(self) -> None:
        if len(self.signature.classes) == 1:
            raise IntegrityError(
                f"model '{self.name}' version {self.version} has one class "
                f"{self.signature.classes}; a classifier needs two or more, a regressor none."
            )

    @property
    def task(self) -> TaskKind:
        """No classes: regression; two: binary; more: multiclass."""
        classes = len(self.signature.classes)
        if classes == 0:
            return "regression"
        return "binary" if classes == 2 else "multiclass"

    def predict(self, frame: pl.DataFrame) -> Prediction:
        names = self.signature.names
        if frame.columns != names:  # a frame built from the signature is in order already
            frame = frame.select(names)
        if self.task == "regression":
            values = np.asarray(self.pipeline.predict(frame), dtype=np.float64)
            return Prediction.of_values(values.reshape(frame.height))
        return self._classify(frame)

    def _classify(self, frame: pl.DataFrame) -> Prediction:
        classes = self.signature.classes
        probabilities = np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)
        if probabilities.shape != (frame.height, len(classes)):
            raise IntegrityError(
                f"model '{self.name}' version {self.version} returned probabilities of shape "
                f"{probabilities.shape}; its signature has {len(classes)} classes {classes}."
            )
        positions = self._positions(frame, probabilities)
        labels = np.asarray(classes, dtype=object)[positions].tolist()
        return Prediction(labels, probabilities, classes)

    def _positions(self, frame: pl.DataFrame, probabilities: np.ndarray) -> np.ndarray:
        """Each row's class position: from the probabilities when the pipeline's own rule
        is known (one model call instead of two), else from ``predict``."""
        threshold, most_probable = self._label_rule
        if threshold is not None:
            return (probabilities[:, 1] >= threshold).astype(np.intp)
        if most_probable:
            return np.argmax(probabilities, axis=1)
        return np.searchsorted(self.pipeline.classes_, self.pipeline.predict(frame))

    @cached_property
    def _label_rule(self) -> tuple[float | None, bool]:
        """(threshold, predicts the most probable class), read once per loaded model."""
        return decision_threshold(self.pipeline), predicts_most_probable(self.pipeline)


def decision_threshold(pipeline: Any) -> float | None:
    """The threshold of a binary classifier whose ``predict`` is ``P(positive) >= t``:
    keelson's calibrated classifier and scikit-learn's fixed-threshold wrapper."""
    from sklearn.model_selection import FixedThresholdClassifier

    from keelson.train.calibration import CalibratedClassifier

    if isinstance(pipeline, CalibratedClassifier):
        return float(pipeline.threshold)
    if (
        isinstance(pipeline, FixedThresholdClassifier)
        and pipeline.response_method == "predict_proba"
        and pipeline.pos_label in (None, pipeline.classes_[1])
        and isinstance(pipeline.threshold, int | float)
    ):
        return float(pipeline.threshold)
    return None


def predicts_most_probable(pipeline: Any) -> bool:
    """Whether ``predict`` is the most probable class (ties to the first): the learners
    keelson trains, alone, at the end of a pipeline, or blended."""
    from sklearn.pipeline import Pipeline

    from keelson.train.blend import BlendClassifier

    final = pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline
    return isinstance(final, BlendClassifier) or type(final).__name__ in _MOST_PROBABLE


_MOST_PROBABLE = frozenset(
    {
        "LGBMClassifier",
        "XGBClassifier",
        "HistGradientBoostingClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "LogisticRegression",
        "BalancedBaggingClassifier",
        "CompiledTrees",  # keelson.serve.compiled: a classifier's predict is its argmax
    }
)
