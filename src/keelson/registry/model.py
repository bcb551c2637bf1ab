"""A model version loaded for prediction: the one fitted pipeline plus its signature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from keelson.registry.signature import Signature


@dataclass(frozen=True)
class Prediction:
    labels: list[str]
    probabilities: np.ndarray  # shape (rows, classes), columns in ``classes`` order
    classes: list[str]


@dataclass(frozen=True)
class LoadedModel:
    """What training saved and serving/streaming load: preprocessing and model as one object.

    ``pipeline`` is a fitted scikit-learn classifier whose ``predict`` already applies
    the tuned decision ``threshold`` (a ``FixedThresholdClassifier``). The signature's
    ``classes`` name the pipeline's ``classes_`` in order (training encodes the
    target as 0/1, so ``classes`` is [negative label, positive label]).
    """

    name: str
    version: int
    pipeline: Any
    signature: Signature
    threshold: float

    def predict(self, frame: pl.DataFrame) -> Prediction:
        frame = frame.select(self.signature.names)
        probabilities = np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)
        predicted = self.pipeline.predict(frame)
        classes = self.signature.classes or [str(c) for c in self.pipeline.classes_]
        positions = np.searchsorted(self.pipeline.classes_, predicted)
        return Prediction([classes[i] for i in positions], probabilities, classes)
