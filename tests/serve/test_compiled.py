"""Tree ensembles answered by ONNX Runtime: used only where they match the pipeline."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.ensemble import ExtraTreesClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from keelson.registry.model import LoadedModel
from keelson.registry.signature import Signature
from keelson.serve import compiled as compiled_module
from keelson.serve import create_app
from keelson.serve.app import Deployment
from keelson.serve.compiled import TOLERANCE, CompiledTrees, compile_model
from keelson.serve.holder import placeholder_rows
from keelson.spec import Serve
from keelson.train.blend import blend_prefit
from keelson.train.calibration import CalibratedClassifier, Calibration
from tests.serve.conftest import serving, toy_features, toy_frame, toy_preprocess

ROWS = 600


def loaded(pipeline: Any, frame: pl.DataFrame, classes: list[str]) -> LoadedModel:
    signature = Signature.from_frame(frame, classes=classes)
    return LoadedModel("trees", 1, pipeline, signature, threshold=0.4 if classes else None)


def lightgbm_classifier() -> tuple[LoadedModel, pl.DataFrame]:
    """keelson's binary shape: calibrated around preprocessing and LightGBM; the float
    column has missing values, which the imputer fills before LightGBM sees them."""
    frame, target = toy_frame(ROWS, seed=3)
    pipeline = Pipeline(
        [("preprocess", toy_preprocess()), ("model", LGBMClassifier(n_estimators=60, verbose=-1))]
    ).fit(frame, target)
    calibrated = CalibratedClassifier.prefit(pipeline, Calibration("sigmoid", (1.3, -0.2)), 0.4)
    return loaded(calibrated, frame, ["no", "yes"]), frame


def ensembles(pipeline: Any) -> list[Any]:
    inner = pipeline.estimator_ if hasattr(pipeline, "estimator_") else pipeline
    parts = inner.members_ if hasattr(inner, "members_") else [inner]
    return [p.steps[-1][1] if hasattr(p, "steps") else p for p in parts]


def test_lightgbm_inside_calibration_is_compiled_and_matches() -> None:
    model, frame = lightgbm_classifier()
    compilation = compile_model(model, placeholder_rows(model.signature, 8))

    assert compilation.compiled == ["LGBMClassifier"], compilation.summary()
    served = compilation.model
    assert served.runtime == "onnxruntime"
    assert isinstance(ensembles(served.pipeline)[0], CompiledTrees)
    assert isinstance(ensembles(model.pipeline)[0], LGBMClassifier)  # the original untouched
    expected, got = model.predict(frame), served.predict(frame)
    assert np.abs(got.probabilities - expected.probabilities).max() <= TOLERANCE
    assert got.labels == expected.labels


def test_missing_values_reaching_the_trees_are_answered_exactly() -> None:
    features, score = toy_features(ROWS, seed=4)
    numbers = features.select("age", "income")  # NaN goes straight to the ensembles
    target = np.where(score > 0, "yes", "no")
    cases = [(LGBMClassifier(n_estimators=40, verbose=-1), True), (ExtraTreesClassifier(30), False)]
    for ensemble, runtime_takes_missing in cases:  # ONNX sends NaN where LightGBM does
        model = loaded(ensemble.fit(numbers.to_numpy(), target), numbers, ["no", "yes"])
        served = compile_model(model).model
        assert served.runtime == "onnxruntime"
        assert served.pipeline.missing_exact is runtime_takes_missing  # else: the original
        expected, got = model.predict(numbers), served.predict(numbers)
        assert np.abs(got.probabilities - expected.probabilities).max() <= TOLERANCE


def test_a_regressor_matches_relative_to_its_values() -> None:
    frame, score = toy_features(ROWS, seed=5)
    for regressor in (LGBMRegressor(n_estimators=50, verbose=-1), RandomForestRegressor(20)):
        pipeline = Pipeline([("preprocess", toy_preprocess()), ("model", regressor)])
        model = loaded(pipeline.fit(frame, 1000.0 + 100.0 * score), frame, [])
        compilation = compile_model(model)
        assert compilation.compiled == [type(regressor).__name__], compilation.summary()
        expected, got = model.predict(frame).values, compilation.model.predict(frame).values
        assert expected is not None and got is not None
        assert np.max(np.abs(got - expected) / np.abs(expected)) <= TOLERANCE


def test_a_blend_compiles_its_ensembles_and_keeps_the_rest() -> None:
    frame, target = toy_frame(ROWS, seed=6)
    members = [
        Pipeline([("p", toy_preprocess()), ("m", m)]).fit(frame, target)
        for m in (LGBMClassifier(n_estimators=30, verbose=-1), LogisticRegression())
    ]
    model = loaded(blend_prefit(members, [0.6, 0.4], "binary"), frame, ["no", "yes"])
    compilation = compile_model(model)

    parts = ensembles(compilation.model.pipeline)
    assert isinstance(parts[0], CompiledTrees)
    assert isinstance(parts[1], LogisticRegression)
    expected, got = model.predict(frame), compilation.model.predict(frame)
    assert np.abs(got.probabilities - expected.probabilities).max() <= TOLERANCE


def test_a_conversion_that_does_not_match_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    model, frame = lightgbm_classifier()
    other_target = np.where(frame["age"].to_numpy() > 50, "yes", "no")  # another model
    other = Pipeline(
        [("preprocess", toy_preprocess()), ("model", LGBMClassifier(n_estimators=5, verbose=-1))]
    ).fit(frame, other_target)
    convert = compiled_module._to_onnx
    monkeypatch.setattr(compiled_module, "_to_onnx", lambda _: convert(other.steps[-1][1]))

    compilation = compile_model(model)

    assert compilation.compiled == []
    assert "LGBMClassifier: outputs differ by" in compilation.kept[0]
    assert compilation.model is model


def test_a_model_without_ensembles_is_served_as_it_is() -> None:
    frame, target = toy_frame(ROWS, seed=7)
    pipeline = Pipeline([("p", toy_preprocess()), ("m", LogisticRegression())]).fit(frame, target)
    model = loaded(pipeline, frame, ["no", "yes"])

    compilation = compile_model(model)

    assert compilation.model is model and compilation.summary().startswith("nothing compiled")


@pytest.mark.parametrize("compiled", [True, False])
def test_the_server_says_what_answers_and_answers_the_same(compiled: bool) -> None:
    model, frame = lightgbm_classifier()
    deployment = Deployment(models={"primary": model}, settings=Serve(compiled=compiled))
    rows = frame.head(20)
    with serving(create_app(deployment=deployment)) as url, httpx.Client(base_url=url) as http:
        metrics = http.get("/metrics").text
        answer = http.post("/invocations", json={"dataframe_records": rows.to_dicts()})

    runtime = "onnxruntime" if compiled else "scikit-learn"
    assert f'keelson_model_runtime{{runtime="{runtime}",variant="primary"}} 1.0' in metrics
    assert answer.status_code == 200, answer.text
    expected = model.predict(rows).probabilities
    got = np.asarray([p["probabilities"]["yes"] for p in answer.json()["predictions"]])
    assert np.abs(got - expected[:, 1]).max() <= TOLERANCE


def test_xgboost_is_compiled_when_installed() -> None:
    xgboost = pytest.importorskip("xgboost", reason="the xgboost extra is not installed")
    frame, score = toy_features(ROWS, seed=8)
    numbers = frame.select("age", "income")  # with missing values
    classifier = xgboost.XGBClassifier(n_estimators=30, n_jobs=1)
    model = loaded(classifier.fit(numbers.to_numpy(), (score > 0).astype(int)), numbers, ["0", "1"])

    compilation = compile_model(model)

    assert compilation.compiled == ["XGBClassifier"], compilation.summary()
    expected, got = model.predict(numbers), compilation.model.predict(numbers)
    assert np.abs(got.probabilities - expected.probabilities).max() <= TOLERANCE
