"""Compiled preprocessing: a fitted ColumnTransformer of ordinal encoders and passthrough
columns (keelson's ``tree`` flavour) as one Polars ``select``, used only where it matches.

scikit-learn spends ~2 ms per call routing a frame through a ColumnTransformer whatever
the number of rows (column selection, joblib, validation); the same encoding as Polars
expressions costs a fraction of that, so a small batch no longer pays most of its time
before the model. Each category maps to its position in the encoder's ``categories_``
(a cast to an Enum of them); unseen values become NaN, as the encoder's settings say,
and so do missing ones unless training saw them; numbers pass through as float64. Any
other transformer, or an encoder set otherwise, is not compiled, and the compiled
columns are checked against the original on probe rows (every category, an unseen one,
missing values): equal, NaN for NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator

_UNSEEN = "(a category never seen in training)"
_NUMBERS = (0.0, 1.5, -2.0, None, 1e9)


class CompiledColumns(BaseEstimator):
    """``original.transform`` as Polars expressions, for Polars frames (others: the original)."""

    def __init__(self, original: Any, expressions: list[pl.Expr]) -> None:
        self.original = original
        self.expressions = expressions
        self.n_features_in_: int = original.n_features_in_

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # noqa: N803
        return "CompiledColumns(polars)"

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X: Any, y: Any = None) -> CompiledColumns:  # noqa: N803
        raise TypeError("compiled columns are not refitted: fit the original pipeline")

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        if not isinstance(X, pl.DataFrame):
            return np.asarray(self.original.transform(X), dtype=np.float64)
        return X.select(self.expressions).cast(pl.Float64).to_numpy()


def compile_columns(transformer: Any, schema: pl.Schema) -> CompiledColumns:
    """``transformer`` (a fitted ColumnTransformer reading frames of ``schema``) compiled;
    ValueError naming what is not supported, or where the outputs differ."""
    expressions: list[pl.Expr] = []
    for name, part, columns in transformer.transformers_:
        if part == "drop":
            continue
        if not all(isinstance(column, str) for column in columns):
            raise ValueError(f"part '{name}' selects columns other than by name")
        if _passthrough(part):
            expressions += [pl.col(column).cast(pl.Float64) for column in columns]
        else:
            expressions += _ordinal(name, part, columns)
    compiled = CompiledColumns(transformer, expressions)
    probes = probe_frame(transformer, schema)
    expected = np.asarray(transformer.transform(probes), dtype=np.float64)
    if not np.array_equal(expected, compiled.transform(probes), equal_nan=True):
        raise ValueError("its output differs from the original's on probe rows")
    return compiled


def _passthrough(part: Any) -> bool:
    """'passthrough', which a fitted ColumnTransformer holds as an identity function."""
    from sklearn.preprocessing import FunctionTransformer

    identity = type(part) is FunctionTransformer and part.func is None
    return identity or (isinstance(part, str) and part == "passthrough")


def _ordinal(name: str, encoder: Any, columns: list[str]) -> list[pl.Expr]:
    from sklearn.preprocessing import OrdinalEncoder

    if type(encoder) is not OrdinalEncoder or not _unknown_and_missing_are_nan(
        encoder.handle_unknown, encoder.unknown_value, encoder.encoded_missing_value
    ):
        raise ValueError(f"part '{name}' is {encoder!r}, not an ordinal encoder giving NaN")
    return [
        _encoded(column, categories)
        for column, categories in zip(columns, encoder.categories_, strict=True)
    ]


def _encoded(column: str, categories: np.ndarray) -> pl.Expr:
    """The column's codes. scikit-learn takes a None seen in training for a category of
    its own (only NaN counts as missing), so a null gets None's code then, else NaN."""
    code = pl.col(column).cast(pl.String).cast(_enum(categories), strict=False).to_physical()
    nulls = [position for position, value in enumerate(categories) if value is None]
    if not nulls:
        return code
    return pl.when(pl.col(column).is_null()).then(pl.lit(nulls[0])).otherwise(code)


def _unknown_and_missing_are_nan(handle: str, unknown: Any, missing: Any) -> bool:
    def nan(value: Any) -> bool:
        return isinstance(value, float) and math.isnan(value)

    return handle == "use_encoded_value" and nan(unknown) and nan(missing)


def _enum(categories: np.ndarray) -> pl.Enum:
    """The text categories in order: an Enum's code is the encoder's position (a None or
    NaN category, always last, is left out)."""
    texts = [value for value in categories if isinstance(value, str)]
    if texts != list(categories[: len(texts)]):
        raise ValueError("a category that is not text comes before text ones")
    return pl.Enum(texts)


def probe_frame(transformer: Any, schema: pl.Schema) -> pl.DataFrame:
    """Rows of ``schema`` giving every encoded column each of its categories, an unseen
    one and a missing value, and every other column numbers and a missing value."""
    categories: dict[str, list[Any]] = {}
    for _, part, columns in transformer.transformers_:
        for column, known in zip(columns, getattr(part, "categories_", []), strict=False):
            categories[column] = [*known.tolist(), _UNSEEN, None]
    height = max([len(values) for values in categories.values()] + [len(_NUMBERS)])
    columns = {}
    for column, dtype in schema.items():
        values = categories.get(column, list(_NUMBERS) if dtype.is_numeric() else ["x", None])
        values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
        cycled = [values[row % len(values)] for row in range(height)]
        columns[column] = pl.Series(column, cycled, strict=False).cast(dtype, strict=False)
    return pl.DataFrame(columns)
