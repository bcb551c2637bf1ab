"""Dates and timestamps as numbers a learner can split on: calendar parts and elapsed days.

A raw timestamp is neither a category (every value is new) nor a useful number for a
linear model; its year, month, day of week, hour and days since 1970 are. Stateless, so
it needs no fitting and survives cloning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, TransformerMixin

PARTS = ("year", "month", "day", "weekday", "hour", "days")


class DateParts(TransformerMixin, BaseEstimator):
    """Each Date/Datetime column → year, month, day, weekday, hour and days since 1970
    (NaN where the value is missing)."""

    def fit(self, X: Any, y: Any = None) -> DateParts:  # noqa: N803
        self.columns_ = list(_frame(X).columns)
        return self

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        frame = _frame(X)
        parts = [_parts(frame[column]) for column in frame.columns]
        return np.column_stack(parts) if parts else np.empty((frame.height, 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"{c}.{part}" for c in self.columns_ for part in PARTS], dtype=object)


def _frame(X: Any) -> pl.DataFrame:  # noqa: N803
    return X if isinstance(X, pl.DataFrame) else pl.from_pandas(X)


def _parts(column: pl.Series) -> np.ndarray:
    moment = column.cast(pl.Datetime("us"))
    days = moment.cast(pl.Int64) / 86_400_000_000
    parts = [
        moment.dt.year(),
        moment.dt.month(),
        moment.dt.day(),
        moment.dt.weekday(),
        moment.dt.hour(),
        days,
    ]
    return np.column_stack([part.cast(pl.Float64).fill_null(np.nan).to_numpy() for part in parts])
