"""Compiled preprocessing: keelson's tree-flavour ColumnTransformer as Polars expressions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from lightgbm import LGBMClassifier
from sklearn.pipeline import Pipeline

from keelson.features.preprocess import ColumnKinds, preprocessor
from keelson.registry.model import LoadedModel
from keelson.registry.signature import Signature
from keelson.serve.compiled import compile_model
from keelson.serve.compiled_columns import CompiledColumns, compile_columns
from keelson.serve.holder import placeholder_rows


def training_frame(rows: int = 400) -> tuple[pl.DataFrame, np.ndarray]:
    """Text columns with missing values (one seen in training, one not), numbers with nulls."""
    generator = np.random.default_rng(7)
    plans = generator.choice(["basic", "plus", "pro", None], size=rows).tolist()
    regions = generator.choice(["north", "south", "east"], size=rows).tolist()
    age = generator.integers(18, 80, size=rows).tolist()
    income = [None if i % 9 == 0 else float(v) for i, v in enumerate(generator.normal(50, 9, rows))]
    frame = pl.DataFrame(
        {"plan": plans, "region": regions, "age": age, "income": income},
        schema={"plan": pl.String, "region": pl.String, "age": pl.Int64, "income": pl.Float64},
    )
    target = (frame["age"].to_numpy() > 45) ^ (np.asarray(regions) == "east")
    return frame, target.astype(int)


def fitted_tree_preprocessing() -> tuple[object, pl.DataFrame]:
    frame, _ = training_frame()
    transformer = preprocessor(ColumnKinds.of(frame), "tree").fit(frame)
    return transformer, frame


def test_encoding_matches_the_original_on_unseen_and_missing_values() -> None:
    transformer, frame = fitted_tree_preprocessing()
    compiled = compile_columns(transformer, frame.schema)
    new = pl.DataFrame(
        {
            "plan": ["pro", "gold", None, "basic"],
            "region": ["east", None, "west", "north"],
            "age": [30, None, 51, 70],
            "income": [12.5, None, -3.0, 1e12],
        },
        schema=frame.schema,
    )

    got = compiled.transform(new)

    np.testing.assert_array_equal(got, transformer.transform(new))  # NaN where NaN
    assert np.isnan(got[1, :2]).all() and np.isnan(got[2, 1])  # unseen, missing not seen
    assert got[2, 0] == 3  # None was a plan in training: scikit-learn's category 3


def test_a_transformer_other_than_ordinal_and_passthrough_is_refused() -> None:
    frame, _ = training_frame()
    linear = preprocessor(ColumnKinds.of(frame), "linear").fit(frame)

    with pytest.raises(ValueError, match="not an ordinal encoder"):
        compile_columns(linear, frame.schema)


def test_a_tree_pipeline_is_served_with_both_compiled_and_answers_as_trained() -> None:
    frame, target = training_frame()
    pipeline = Pipeline(
        [
            ("preprocess", preprocessor(ColumnKinds.of(frame), "tree")),
            ("model", LGBMClassifier(n_estimators=40, verbose=-1)),
        ]
    ).fit(frame, target)
    model = LoadedModel("toy", 1, pipeline, Signature.from_frame(frame, ["0", "1"]), None)

    compilation = compile_model(model, placeholder_rows(model.signature, 8))

    assert compilation.compiled == ["ColumnTransformer", "LGBMClassifier"], compilation.summary()
    assert isinstance(compilation.model.pipeline.steps[0][1], CompiledColumns)
    expected = model.predict(frame).probabilities
    np.testing.assert_allclose(compilation.model.predict(frame).probabilities, expected, atol=1e-6)
