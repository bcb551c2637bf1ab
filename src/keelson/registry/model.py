"""A model version loaded for prediction: the one fitted pipeline plus its signature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from keelson.errors import IntegrityError
from keelson.registry.signature import Signature
from keelson.spec import TaskKind


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
        frame = frame.select(self.signature.names)
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
        positions = np.searchsorted(self.pipeline.classes_, self.pipeline.predict(frame))
        labels = np.asarray(classes, dtype=object)[positions].tolist()
        return Prediction(labels, probabilities, classes)
