"""The final model: refit the chosen configuration, tune its threshold, test it once.

The threshold is tuned on the validation rows with a model fitted on the training
rows; the final pipeline is then refitted on training + validation and scored
exactly once on the untouched test rows, with bootstrap intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from keelson.features.preprocess import ColumnKinds
from keelson.spec import Train
from keelson.train.candidates import make_pipeline
from keelson.train.evaluate import Interval, bootstrap, tune_threshold
from keelson.train.importance import permutation_importance
from keelson.train.search import TrialRecord


@dataclass(frozen=True)
class LabelledRows:
    features: pl.DataFrame
    labels: np.ndarray


@dataclass(frozen=True)
class FinalModel:
    pipeline: Any  # FixedThresholdClassifier around preprocessing + estimator
    threshold: float
    validation_score: float
    test_labels: np.ndarray
    test_scores: np.ndarray
    test_metrics: dict[str, Interval]
    importance: list[dict[str, Any]]


def fit_final(
    best: TrialRecord,
    train: LabelledRows,
    validation: LabelledRows,
    test: LabelledRows,
    spec: Train,
) -> FinalModel:
    from sklearn.model_selection import FixedThresholdClassifier

    kinds = ColumnKinds.of(train.features)
    probe = make_pipeline(best.family, best.params, kinds, best.weighted, spec.seed)
    probe.fit(train.features, train.labels)
    threshold, value = tune_threshold(
        validation.labels, probe.predict_proba(validation.features)[:, 1], spec.threshold_metric
    )
    final = FixedThresholdClassifier(
        make_pipeline(best.family, best.params, kinds, best.weighted, spec.seed),
        threshold=threshold,
        response_method="predict_proba",
    )
    final.fit(
        pl.concat([train.features, validation.features]),
        np.concatenate([train.labels, validation.labels]),
    )
    scores = final.predict_proba(test.features)[:, 1]
    return FinalModel(
        pipeline=final,
        threshold=threshold,
        validation_score=value,
        test_labels=test.labels,
        test_scores=scores,
        test_metrics=bootstrap(test.labels, scores, threshold, spec.bootstrap, spec.seed),
        importance=permutation_importance(
            final, test.features, test.labels, spec.metric, 5, spec.seed
        ),
    )
