"""The untouched test set and the cross-validation folds inside the training part.

Methods: ``stratified`` (on the class), ``random``, ``time`` (rows ordered by a column,
the latest rows are the test, never shuffled, an optional gap of rows left out
between what is learned from and what is scored) and ``group`` (rows sharing a
group value never fall on both sides).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl

from keelson.errors import ContractError
from keelson.spec import Split, Train
from keelson.train.task import Task

Fold = tuple[np.ndarray, np.ndarray]  # (rows to fit on, rows to score)
SCORED_ROWS = 2000  # automatic CV repeats score about this many rows in all


@dataclass(frozen=True)
class Splits:
    train: pl.DataFrame
    test: pl.DataFrame  # empty when the spec keeps no test set
    method: str

    def sizes(self) -> dict[str, int | str]:
        return {"train": self.train.height, "test": self.test.height, "method": self.method}


def method_of(spec: Split, task: Task) -> str:
    if spec.method != "auto":
        return spec.method
    return "stratified" if task.is_classification else "random"


def not_features(spec: Split, method: str) -> list[str]:
    """Split columns the model must not learn from: the group (an identity) and, unless
    asked, the time column of a time split."""
    time = method == "time" and not spec.time_feature
    return [c for c in (spec.group_column, spec.time_column if time else None) if c]


def split(frame: pl.DataFrame, task: Task, spec: Split) -> Splits:
    """Hold out ``spec.test`` of the rows (none when 0) for the one final test."""
    method = method_of(spec, task)
    _check_columns(frame, spec, method)
    if method == "time":
        frame = frame.sort(str(spec.time_column), maintain_order=True, nulls_last=False)
    if spec.test == 0:
        return Splits(frame, frame.head(0), method)
    rows = np.arange(frame.height)
    if method == "time":
        first_test = frame.height - math.ceil(spec.test * frame.height)
        train, test = rows[: max(first_test - spec.gap, 0)], rows[first_test:]
    elif method == "group":
        train, test = _group_holdout(frame[str(spec.group_column)], spec.test, spec.seed)
    else:
        from sklearn.model_selection import train_test_split

        stratify = frame[task.column].cast(pl.String).to_numpy() if method == "stratified" else None
        train, test = train_test_split(
            rows, test_size=spec.test, random_state=spec.seed, stratify=stratify
        )
    if len(train) == 0:
        raise ContractError(
            f"the {method} split leaves no training rows ({frame.height} rows in all).",
            where="split",
            hint="Lower split.test or split.gap.",
        )
    return Splits(frame[np.sort(train)], frame[np.sort(test)], method)


def validation_folds(
    frame: pl.DataFrame, labels: np.ndarray, spec: Split, method: str, train: Train
) -> list[Fold]:
    """The folds the search scores on: K-fold CV, or one hold-out fold."""
    if train.validation == "holdout":
        return [holdout(frame, labels, spec, method, train.holdout)]
    return folds(frame, labels, spec, method, train.cv_folds, repeats(train, frame.height))


def repeats(train: Train, rows: int) -> int:
    """How often the K folds are drawn: ``cv_repeats``, or under ``auto`` enough times to
    score about ``SCORED_ROWS`` rows (at most 5): on a table of 750 rows a fold's ROC-AUC
    varies by 0.03, more than the trials it should tell apart."""
    if train.cv_repeats != "auto":
        return train.cv_repeats
    return min(5, max(1, round(SCORED_ROWS / max(rows, 1))))


def holdout(
    frame: pl.DataFrame, labels: np.ndarray, spec: Split, method: str, share: float
) -> Fold:
    """One fold scoring ``share`` of the rows: the latest ones (after the gap) for ``time``,
    whole groups for ``group``, a (stratified) random share otherwise."""
    rows = np.arange(frame.height)
    scored = math.ceil(share * frame.height)
    if method == "time":
        first = frame.height - scored
        return rows[: max(first - spec.gap, 1)], rows[first:]
    if method == "group":
        fit_rows, score_rows = _group_holdout(frame[str(spec.group_column)], share, spec.seed)
        return np.sort(fit_rows), np.sort(score_rows)
    from sklearn.model_selection import train_test_split

    stratify = labels if method == "stratified" else None
    fit_rows, score_rows = train_test_split(
        rows, test_size=scored, random_state=spec.seed, stratify=stratify
    )
    return np.sort(fit_rows), np.sort(score_rows)


def folds(
    frame: pl.DataFrame, labels: np.ndarray, spec: Split, method: str, k: int, repeats: int = 1
) -> list[Fold]:
    """K cross-validation folds over ``frame`` (the training part, time-sorted for ``time``),
    drawn ``repeats`` times for a stratified or random split (K x repeats folds)."""
    from sklearn import model_selection as ms

    rows = np.zeros(frame.height)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        if method == "time":
            chained = ms.TimeSeriesSplit(k, gap=spec.gap, test_size=_later_half(rows.size, k))
            return list(chained.split(rows))
        if method == "group":
            groups = frame[str(spec.group_column)].to_numpy()
            grouped = ms.StratifiedGroupKFold if _is_class(labels) else ms.GroupKFold
            kwargs = {"shuffle": True, "random_state": spec.seed} if _is_class(labels) else {}
            return list(grouped(n_splits=k, **kwargs).split(rows, labels, groups))
        draws = {"n_splits": k, "n_repeats": repeats, "random_state": spec.seed}
        if method == "stratified":
            return list(ms.RepeatedStratifiedKFold(**draws).split(rows, labels))
        return list(ms.RepeatedKFold(**draws).split(rows))


def _later_half(rows: int, k: int) -> int | None:
    """Rows each forward-chaining fold scores: ``k`` folds cover the later half, so every
    fold learns from half the rows at least. Folds that learn from a sixth (scikit-learn's
    default for k=5) favour models that win when data is scarce, which the final model,
    fitted on all rows, is not (on elec2 they ranked logistic regression second of five,
    the test last; later-half folds ranked the five as the test did but for one pair)."""
    size = rows // (2 * k)
    return size if size > 0 else None


def _is_class(labels: np.ndarray) -> bool:
    return labels.dtype.kind in "iub"


def _group_holdout(groups: pl.Series, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    train, test = next(splitter.split(np.zeros(groups.len()), groups=groups.to_numpy()))
    return train, test


def _check_columns(frame: pl.DataFrame, spec: Split, method: str) -> None:
    column = {"time": spec.time_column, "group": spec.group_column}.get(method)
    if column is None:
        return
    if column not in frame.columns:
        raise ContractError(
            f"the {method} split column '{column}' is not in the training table.",
            where=f"split.{method}_column",
            hint=f"Columns: {frame.columns}.",
        )
    if frame[column].null_count():
        raise ContractError(
            f"the {method} split column '{column}' has {frame[column].null_count()} null value(s).",
            where=f"split.{method}_column",
            hint="Declare it `nullable: false` in its source's contract.",
        )
