"""LoadedModel.predict for each task: binary, multiclass and regression pipelines, and Blends."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from keelson.errors import IntegrityError
from keelson.registry.model import LoadedModel
from keelson.registry.signature import Signature
from keelson.train.blend import blend_of

TIERS = ["bronze", "gold", "silver"]


def features(rows: int = 200, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    score = frame["a"].to_numpy() - 0.5 * frame["b"].to_numpy() + rng.normal(0, 0.3, rows)
    return frame, score


def loaded(
    pipeline: object, frame: pl.DataFrame, classes: list[str], threshold: float | None = None
) -> LoadedModel:
    return LoadedModel("m", 1, pipeline, Signature.from_frame(frame, classes), threshold)


def linear() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression())


def test_binary_labels_apply_the_tuned_threshold() -> None:
    frame, score = features()
    pipeline = FixedThresholdClassifier(linear(), threshold=0.2).fit(frame, (score > 0).astype(int))
    model = loaded(pipeline, frame, ["stay", "churn"], threshold=0.2)

    prediction = model.predict(frame)

    positive = pipeline.predict_proba(frame)[:, 1]
    assert model.task == "binary"
    assert np.allclose(prediction.probabilities, pipeline.predict_proba(frame), rtol=0, atol=0)
    assert prediction.labels == np.where(positive >= 0.2, "churn", "stay").tolist()
    assert ((positive >= 0.2) != (positive >= 0.5)).any()  # the threshold made a difference
    assert prediction.classes == ["stay", "churn"] and prediction.values is None
    assert prediction.rows == frame.height


@pytest.mark.parametrize("blended", [False, True])
def test_multiclass_labels_are_the_most_probable_class(blended: bool) -> None:
    frame, score = features()
    codes = np.digitize(score, [-0.5, 0.5])
    members = [linear(), DecisionTreeClassifier(max_depth=3, random_state=0)]
    estimator = blend_of(members, [0.5, 0.5], "multiclass") if blended else members[0]
    model = loaded(estimator.fit(frame, codes), frame, TIERS)

    prediction = model.predict(frame)

    assert model.task == "multiclass"
    assert prediction.probabilities.shape == (frame.height, 3)
    assert np.allclose(prediction.probabilities.sum(axis=1), 1.0)
    most_probable = np.argmax(prediction.probabilities, axis=1)
    assert prediction.labels == [TIERS[i] for i in most_probable]
    assert set(prediction.labels) == set(TIERS)
    assert prediction.classes == TIERS and prediction.values is None


@pytest.mark.parametrize("blended", [False, True])
def test_regression_answers_values(blended: bool) -> None:
    frame, score = features()
    members = [make_pipeline(StandardScaler(), Ridge()), LinearRegression()]
    estimator = blend_of(members, [0.7, 0.3], "regression") if blended else members[0]
    pipeline = estimator.fit(frame, 10.0 * score)
    model = loaded(pipeline, frame, [])

    prediction = model.predict(frame)

    assert model.task == "regression"
    assert prediction.values is not None
    assert prediction.values.dtype == np.float64
    assert np.allclose(prediction.values, pipeline.predict(frame), rtol=0, atol=1e-12)
    assert (prediction.labels, prediction.classes) == ([], [])
    assert prediction.probabilities.shape == (frame.height, 0)
    assert prediction.rows == frame.height


def test_predict_uses_the_signature_columns_in_order() -> None:
    frame, score = features()
    model = loaded(make_pipeline(StandardScaler(), Ridge()).fit(frame, score), frame, [])
    shuffled = frame.select("b", "a").with_columns(extra=pl.lit("ignored"))

    values, expected = model.predict(shuffled).values, model.predict(frame).values
    assert values is not None and expected is not None
    assert np.array_equal(values, expected)


def test_a_single_class_signature_is_refused() -> None:
    frame, score = features()
    with pytest.raises(IntegrityError, match=r"one class \['only'\]"):
        loaded(linear().fit(frame, (score > 0).astype(int)), frame, ["only"])


def test_probabilities_that_do_not_fit_the_classes_are_refused() -> None:
    frame, score = features()
    model = loaded(linear().fit(frame, (score > 0).astype(int)), frame, TIERS)

    with pytest.raises(IntegrityError, match=r"shape \(200, 2\).*3 classes"):
        model.predict(frame)
