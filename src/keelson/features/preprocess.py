"""Preprocessing compiled into the fitted pipeline, so serving applies exactly what training did.

Two flavours, chosen by the model family:

* ``linear``: median imputation with missing indicators and scaling for numbers;
  one-hot encoding (rare and unseen categories grouped) for text columns.
* ``tree``: numbers pass through (the learners handle missing values); text
  columns are ordinal-encoded, with unseen and missing categories as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

Flavour = Literal["linear", "tree"]


@dataclass(frozen=True)
class ColumnKinds:
    numeric: list[str]
    categorical: list[str]

    @classmethod
    def of(cls, frame: pl.DataFrame) -> ColumnKinds:
        numeric = [n for n, t in frame.schema.items() if t.is_numeric() or t == pl.Boolean]
        categorical = [n for n in frame.columns if n not in numeric]
        return cls(numeric, categorical)

    def without(self, names: tuple[str, ...]) -> ColumnKinds:
        """These kinds minus ``names``: the preprocessing then ignores those columns."""
        return ColumnKinds(
            [n for n in self.numeric if n not in names],
            [n for n in self.categorical if n not in names],
        )


def preprocessor(kinds: ColumnKinds, flavour: Flavour) -> Any:
    """A ColumnTransformer; for ``tree`` the categorical columns come first."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

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
        parts = [
            ("numeric", numeric, kinds.numeric),
            ("categorical", categorical, kinds.categorical),
        ]
    else:
        ordinal = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
        )
        parts = [
            ("categorical", ordinal, kinds.categorical),
            ("numeric", "passthrough", kinds.numeric),
        ]
    return ColumnTransformer(
        [part for part in parts if part[2]], verbose_feature_names_out=False, sparse_threshold=0.0
    )
