"""What is being learned: the task kind, its classes, and the target encoded for learners.

Labels handed to learners are numpy arrays: binary 0/1 (1 = the positive class),
multi-class 0..k-1 in ``classes`` order, regression floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from keelson.errors import ContractError, SpecError
from keelson.spec import TASK_METRICS, Target, TaskKind, Train

MAX_CLASSES = 50  # above this, an integer target is read as a quantity (regression)
_POSITIVE_WORDS = ("1", "true", "yes", "y", "positive")


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    column: str
    classes: list[str]  # label strings in encoded order; binary [negative, positive]; [] regression
    metric: str  # what the search optimises

    @property
    def is_classification(self) -> bool:
        return self.kind != "regression"

    @classmethod
    def of(cls, frame: pl.DataFrame, target: Target, train: Train) -> Task:
        """Resolve ``task: auto``, check the target column and the metric, order the classes."""
        column = _target_column(frame, target)
        kind = target.task if target.task != "auto" else _infer_kind(column)
        classes = _classes(column, kind, target)
        metric = train.metric or TASK_METRICS[kind][0]
        if metric not in TASK_METRICS[kind]:
            raise SpecError(
                f"metric '{metric}' does not apply to a {kind} task.",
                where="train.metric",
                hint=f"Use one of {list(TASK_METRICS[kind])}.",
            )
        return cls(kind, target.column, classes, metric)

    def encode(self, column: pl.Series) -> np.ndarray:
        if self.kind == "regression":
            return column.cast(pl.Float64).to_numpy()
        codes = column.cast(pl.String).replace_strict(
            self.classes, list(range(len(self.classes))), default=-1, return_dtype=pl.Int64
        )
        unknown = column.filter(codes == -1)
        if unknown.len():
            raise ContractError(
                f"the target '{self.column}' has a label the model was not trained on: "
                f"{unknown[0]!r}.",
                where=f"target.column ({self.column})",
            )
        return codes.to_numpy()

    def split_frame(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
        """(features, encoded labels)."""
        return frame.drop(self.column), self.encode(frame[self.column])


def _target_column(frame: pl.DataFrame, target: Target) -> pl.Series:
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
            where="target.column",
            hint="Declare it `nullable: false` in its source's contract so they are quarantined.",
        )
    return column


def _infer_kind(column: pl.Series) -> TaskKind:
    distinct = column.n_unique()
    if distinct == 2:
        return "binary"
    numeric = column.dtype.is_numeric()
    if numeric and (column.dtype.is_float() or distinct > MAX_CLASSES):
        return "regression"
    return "multiclass"


def _classes(column: pl.Series, kind: TaskKind, target: Target) -> list[str]:
    if kind == "regression":
        if not column.dtype.is_numeric():
            raise ContractError(
                f"a regression target must be numeric; '{column.name}' is {column.dtype}.",
                where="target.task",
            )
        return []
    values = column.unique().sort().cast(pl.String).to_list()
    if kind == "multiclass":
        if not 3 <= len(values) <= 10 * MAX_CLASSES:
            raise ContractError(
                f"a multiclass target needs 3 to {10 * MAX_CLASSES} classes; "
                f"'{column.name}' has {len(values)}.",
                where="target.task",
            )
        return values
    if len(values) != 2:
        raise ContractError(
            f"a binary target needs exactly two values; '{column.name}' has {values[:10]}.",
            where="target.task",
        )
    positive = _positive(column, values, target)
    return [next(v for v in values if v != positive), positive]


def _positive(column: pl.Series, values: list[str], target: Target) -> str:
    if target.positive is not None:
        positive = str(target.positive)
        if positive not in values:
            raise ContractError(
                f"the positive label '{positive}' is not a value of '{column.name}' ({values}).",
                where="target.positive",
            )
        return positive
    named = [v for v in values if v.lower() in _POSITIVE_WORDS]
    if len(named) == 1:
        return named[0]
    counts = column.cast(pl.String).value_counts(sort=True)
    return str(counts[column.name][-1])  # the rarer class
