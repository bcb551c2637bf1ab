"""Served labels come from the probabilities (one model call) only where that is exactly
what the pipeline's own ``predict`` would say: checked for every family keelson trains."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from keelson.features.preprocess import ColumnKinds
from keelson.registry.model import LoadedModel, predicts_most_probable
from keelson.registry.signature import Signature
from keelson.train.candidates import FAMILIES, Config, make_pipeline


def table(rows: int, classes: int) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 3))
    plan = rng.choice(["a", "b", "c"], rows)
    score = x[:, 0] + 0.5 * x[:, 1] + (plan == "b") + rng.normal(0, 0.7, rows)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    frame = pl.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "plan": plan})
    return frame, y


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("imbalance", ["none", "balanced_bagging"])
def test_labels_from_probabilities_equal_the_pipelines_predict(
    family: str, classes: int, imbalance: str
) -> None:
    if family == "xgboost":
        pytest.importorskip("xgboost")
    frame, y = table(400, classes)
    config = Config(family, FAMILIES[family].portfolio[0], imbalance)
    pipeline = make_pipeline(
        config, ColumnKinds.of(frame), "binary" if classes == 2 else "multiclass", 1, 0
    ).fit(frame, y)
    names = [f"class{c}" for c in range(classes)]
    model = LoadedModel("m", 1, pipeline, Signature.from_frame(frame, names))

    served = model.predict(frame).labels

    assert predicts_most_probable(pipeline)
    assert served == [names[c] for c in pipeline.predict(frame)]
