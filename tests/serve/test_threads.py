from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest
from sklearn.model_selection import FixedThresholdClassifier

from keelson.features.preprocess import ColumnKinds
from keelson.serve.threads import THREAD_VARIABLES, pin_environment, single_threaded
from keelson.train.candidates import Config, make_pipeline


def test_single_threaded_reaches_the_nested_estimator() -> None:
    frame = pl.DataFrame({"x": np.arange(40.0)})
    config = Config("lightgbm", {"n_estimators": 5})
    pipeline = make_pipeline(config, ColumnKinds.of(frame), "binary", threads=2, seed=0)
    model = FixedThresholdClassifier(pipeline, threshold=0.3).fit(frame, np.arange(40) % 2)
    before = model.predict_proba(frame)
    single_threaded(model)
    fitted = model.estimator_.named_steps
    assert fitted["model"].n_jobs == 1 and fitted["preprocess"].n_jobs == 1
    assert np.array_equal(model.predict_proba(frame), before)


def test_single_threaded_reaches_every_member_of_a_blend() -> None:
    from keelson.train.blend import blend_prefit
    from keelson.train.calibration import CalibratedClassifier, Calibration

    frame = pl.DataFrame({"x": np.arange(40.0)})
    labels = np.arange(40) % 2
    members = [
        make_pipeline(Config(family, params), ColumnKinds.of(frame), "binary", 2, 0).fit(
            frame, labels
        )
        for family, params in [("lightgbm", {"n_estimators": 5}), ("extra_trees", {})]
    ]
    blend = blend_prefit(members, [0.5, 0.5], "binary")
    model = CalibratedClassifier.prefit(blend, Calibration())  # as a saved ensemble is
    before = model.predict_proba(frame)
    single_threaded(model)
    assert [m.named_steps["model"].n_jobs for m in model.estimator_.members_] == [1, 1]
    assert np.array_equal(model.predict_proba(frame), before)


def test_pin_environment_keeps_an_explicit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    pin_environment()
    assert os.environ["OMP_NUM_THREADS"] == "4" and os.environ["MKL_NUM_THREADS"] == "1"
