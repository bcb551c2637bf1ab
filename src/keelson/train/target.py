"""Separating the target from the features and encoding it as 0/1 (1 = positive)."""

from __future__ import annotations

import numpy as np
import polars as pl

from keelson.errors import ContractError
from keelson.spec import Target


def classes_of(frame: pl.DataFrame, target: Target) -> list[str]:
    """[negative label, positive label] as strings; checks the target is binary and complete."""
    if target.column not in frame.columns:
        raise ContractError(
            f"the target column '{target.column}' is not in the training table.",
            where="target.column",
            hint=f"Columns: {frame.columns}.",
        )
    column = frame[target.column]
    if column.null_count():
        raise ContractError(
            f"the target '{target.column}' has {column.null_count()} null value(s).",
            hint="Declare it `nullable: false` in its source's contract so they are quarantined.",
        )
    values = sorted(str(v) for v in column.unique().to_list())
    positive = str(target.positive)
    if positive not in values or len(values) != 2:
        raise ContractError(
            f"a binary target needs two values including the positive '{positive}'; "
            f"'{target.column}' has {values[:10]}.",
            where="target.positive",
        )
    return [next(v for v in values if v != positive), positive]


def features_and_labels(frame: pl.DataFrame, target: Target) -> tuple[pl.DataFrame, np.ndarray]:
    labels = (frame[target.column].cast(pl.String) == str(target.positive)).cast(pl.Int8)
    return frame.drop(target.column), labels.to_numpy()
