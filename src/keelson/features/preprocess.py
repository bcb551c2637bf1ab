"""Preprocessing compiled into the fitted pipeline, so serving applies exactly what training did.

Two flavours, chosen by the model family:

* ``linear``: median imputation with missing indicators and scaling for numbers;
  one-hot encoding (rare and unseen categories grouped) for text columns.
* ``tree``: numbers pass through (the learners handle missing values); text
  columns are ordinal-encoded, with unseen and missing categories as NaN.

Dates and timestamps become calendar parts and elapsed days in both (``DateParts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

Flavour = Literal["linear", "tree"]


@dataclass(frozen=True)
class ColumnKinds:
    numeric: list[str]
    categorical: list[str]
    temporal: list[str] = field(default_factory=list)  # Date / Datetime: calendar parts

    @classmethod
    def of(cls, frame: pl.DataFrame) -> ColumnKinds:
        numeric = [n for n, t in frame.schema.items() if t.is_numeric() or t == pl.Boolean]
        temporal = [n for n, t in frame.schema.items() if t in (pl.Date, pl.Datetime)]
        categorical = [n for n in frame.columns if n not in numeric and n not in temporal]
        return cls(numeric, categorical, temporal)

    def without(self, names: tuple[str, ...]) -> ColumnKinds:
        """These kinds minus ``names``: the preprocessing then ignores those columns."""
        return ColumnKinds(
            [n for n in self.numeric if n not in names],
            [n for n in self.categorical if n not in names],
            [n for n in self.temporal if n not in names],
        )


def preprocessor(kinds: ColumnKinds, flavour: Flavour) -> Any:
    """A ColumnTransformer; for ``tree`` the categorical columns come first."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    from keelson.features.dates import DateParts

    if flavour == "linear":
        numeric = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
        )
        categorical = make_pipeline(
            SimpleImputer(strategy="constant", fill_value="(missing)"),
            OneHotEncoder(
                handle_unknown="infrequent_if_exist", min_frequency=10, sparse_output=False
            ),
        )
        dates = make_pipeline(
            DateParts(), SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
        )
        parts = [
            ("numeric", numeric, kinds.numeric),
            ("categorical", categorical, kinds.categorical),
            ("dates", dates, kinds.temporal),
        ]
    else:
        ordinal = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
        )
        parts = [
            ("categorical", ordinal, kinds.categorical),
            ("numeric", "passthrough", kinds.numeric),
            ("dates", DateParts(), kinds.temporal),
        ]
    return ColumnTransformer(
        [part for part in parts if part[2]], verbose_feature_names_out=False, sparse_threshold=0.0
    )
