"""Leakage checks run before training: columns that give the label away, test rows seen in
training, and timestamps known only after the prediction time.

Every check returns ``Finding`` records; none fits a model. Single-column strength is
measured with ranks (numeric columns) or out-of-fold mean-target encoding (categorical
columns, so that an ID column cannot look perfect by memorising the label of each row).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

Severity = Literal["critical", "warning", "info"]
DUPLICATE_WARNING_SHARE = 0.005  # below: reported, without a warning
DUPLICATE_CRITICAL_SHARE = 0.05
_STRENGTH = {"binary": "ROC-AUC", "multiclass": "macro one-vs-rest ROC-AUC"}


@dataclass(frozen=True)
class Finding:
    """One leakage finding; ``value`` is the number the message is about."""

    check: str
    column: str | None
    severity: Severity
    message: str
    value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def single_feature_leaks(
    features: pl.DataFrame, y: np.ndarray, task: str, seed: int, threshold: float = 0.98
) -> list[Finding]:
    """Columns that alone predict ``y`` with a strength of at least ``threshold``.

    Strength: binary -> ROC-AUC of the column, max(auc, 1 - auc); multiclass -> the
    macro one-vs-rest mean of that; regression -> |Spearman| for numeric columns, R² of
    the out-of-fold encoding for the others. Numeric nulls take the median; categorical
    nulls are a category of their own.
    """
    _check_task(task)
    if y.shape[0] != features.height:
        raise ValueError(f"y has {y.shape[0]} values but features have {features.height} rows.")
    fold = np.random.default_rng(seed).permutation(features.height) % 2
    findings = []
    for column in features.columns:
        strength = _strength(features[column], np.asarray(y), task, fold)
        if strength is not None and strength >= threshold:
            findings.append(_leak_finding(column, strength, task, threshold))
    return sorted(findings, key=lambda finding: -finding.value)


def duplicated_rows(train: pl.DataFrame, test: pl.DataFrame) -> Finding | None:
    """Test rows equal to some training row in every shared column (nulls equal), or None."""
    columns = [column for column in test.columns if column in train.columns]
    if test.height == 0 or not columns:
        return None
    seen = train.select(columns).unique()
    count = test.select(columns).join(seen, on=columns, how="semi", nulls_equal=True).height
    if count == 0:
        return None
    share = count / test.height
    return Finding(
        check="duplicated_rows",
        column=None,
        severity=_duplicate_severity(share),
        message=(
            f"{count} of {test.height} test rows ({share:.1%}) are identical to a training row "
            f"in all {len(columns)} feature columns, so the test score overstates how the model "
            "does on new rows. Remove duplicates before splitting, or split by a group column."
        ),
        value=share,
    )


def _duplicate_severity(share: float) -> Severity:
    if share > DUPLICATE_CRITICAL_SHARE:
        return "critical"
    return "warning" if share >= DUPLICATE_WARNING_SHARE else "info"


def future_timestamps(features: pl.DataFrame, time_column: str) -> list[Finding]:
    """Date/Datetime columns whose value is later than the row's ``time_column`` value."""
    if time_column not in features.columns:
        raise ValueError(
            f"The time column '{time_column}' is not among the feature columns {features.columns}."
        )
    if not features.schema[time_column].is_temporal():
        raise ValueError(
            f"The time column '{time_column}' must be a Date or Datetime column. "
            f"Got {features.schema[time_column]} instead."
        )
    findings = []
    for column, dtype in features.schema.items():
        if column == time_column or not isinstance(dtype, pl.Date | pl.Datetime):
            continue
        later = features.select(_later(column, time_column, features.schema).sum()).item()
        if later:
            findings.append(_future_finding(column, time_column, later, features.height))
    return sorted(findings, key=lambda finding: -finding.value)


def check_leakage(
    train_features: pl.DataFrame,
    y_train: np.ndarray,
    test_features: pl.DataFrame | None,
    task: str,
    time_column: str | None,
    seed: int,
) -> list[Finding]:
    """Every check that applies, critical findings first.

    Timestamps are checked on training and test rows together, and only when
    ``time_column`` is given, is one of the feature columns and holds dates or times
    (a time split may also order rows by a plain number, which no date can be after).
    """
    findings = single_feature_leaks(train_features, y_train, task, seed)
    if test_features is not None:
        duplicate = duplicated_rows(train_features, test_features)
        findings += [duplicate] if duplicate else []
    temporal = time_column in train_features.columns and train_features[time_column].dtype in (
        pl.Date,
        pl.Datetime,
    )
    if time_column is not None and temporal:
        frames = [train_features] + ([test_features] if test_features is not None else [])
        findings += future_timestamps(pl.concat(frames, how="diagonal_relaxed"), time_column)
    order = {"critical": 0, "warning": 1}
    return sorted(findings, key=lambda finding: order.get(finding.severity, 2))


def _check_task(task: str) -> None:
    if task not in ("binary", "multiclass", "regression"):
        raise ValueError(
            f"The 'task' parameter must be one of binary, multiclass, regression. Got {task!r}."
        )


def _strength(column: pl.Series, y: np.ndarray, task: str, fold: np.ndarray) -> float | None:
    """How well ``column`` alone predicts ``y``, in [0, 1]; None for unsupported types."""
    dtype = column.dtype
    if dtype == pl.Object:
        return None
    if dtype.is_numeric() or dtype.is_temporal():
        values = _filled(column.to_physical().cast(pl.Float64))
        if task == "regression":
            return abs(_correlation(_ranks(values), _ranks(y.astype(np.float64))))
        return _macro_auc(values[:, None], y, task)
    encoded = _oof_encoding(_codes(column), y, task, fold)
    if task == "regression":
        return _r_squared(encoded[:, 0], y.astype(np.float64))
    return _macro_auc(encoded, y, task)


def _filled(values: pl.Series) -> np.ndarray:
    """Float values with NaN and null replaced by the median (0 when nothing is left)."""
    values = values.fill_nan(None)
    median = values.median()
    return values.fill_null(median if isinstance(median, float) else 0.0).to_numpy()


def _ranks(values: np.ndarray) -> np.ndarray:
    return pl.Series(values).rank("average").cast(pl.Float64).to_numpy()


def _codes(column: pl.Series) -> np.ndarray:
    """Dense integer codes of the values, nulls one code of their own."""
    return np.unique(column.hash(0).to_numpy(), return_inverse=True)[1].ravel()


def _one_hot(y: np.ndarray, task: str) -> np.ndarray:
    """Targets as columns: one per class for multiclass, else the single target column."""
    if task == "multiclass":
        return (y[:, None] == np.unique(y)[None, :]).astype(np.float64)
    return y.astype(np.float64)[:, None]


def _oof_encoding(codes: np.ndarray, y: np.ndarray, task: str, fold: np.ndarray) -> np.ndarray:
    """Mean target of each row's category in the other fold (its mean when unseen there)."""
    targets = _one_hot(y, task)
    encoded = np.empty_like(targets)
    size = int(codes.max(initial=-1)) + 1
    for part in (0, 1):
        rows, other = fold == part, fold != part
        counts = np.bincount(codes[other], minlength=size)[codes[rows]]
        for k in range(targets.shape[1]):
            sums = np.bincount(codes[other], weights=targets[other, k], minlength=size)
            prior = targets[other, k].mean() if other.any() else 0.0
            with np.errstate(divide="ignore", invalid="ignore"):
                encoded[rows, k] = np.where(counts > 0, sums[codes[rows]] / counts, prior)
    return encoded


def _macro_auc(scores: np.ndarray, y: np.ndarray, task: str) -> float | None:
    """Mean over classes of max(auc, 1 - auc); a single score column serves every class."""
    targets = _one_hot(y, task)
    ranks = np.column_stack([_ranks(scores[:, j]) for j in range(scores.shape[1])])
    aucs = [
        _auc(ranks[:, min(k, ranks.shape[1] - 1)], targets[:, k] > 0.5)
        for k in range(targets.shape[1])
    ]
    valid = [auc for auc in aucs if auc is not None]
    return float(np.mean([max(auc, 1.0 - auc) for auc in valid])) if valid else None


def _auc(ranks: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC-AUC from average ranks (Mann-Whitney U); None when only one class is present."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _r_squared(predicted: np.ndarray, y: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - predicted) ** 2).sum()) / total if total > 0 else 0.0


def _later(column: str, time_column: str, schema: pl.Schema) -> pl.Expr:
    """Whether ``column`` is after ``time_column``: by day if either is a Date, else in UTC."""
    if pl.Date in (schema[column], schema[time_column]):
        return _as_date(column, schema) > _as_date(time_column, schema)
    return pl.col(column).cast(pl.Datetime("us")) > pl.col(time_column).cast(pl.Datetime("us"))


def _as_date(column: str, schema: pl.Schema) -> pl.Expr:
    return pl.col(column) if schema[column] == pl.Date else pl.col(column).dt.date()


def _leak_finding(column: str, strength: float, task: str, threshold: float) -> Finding:
    name = _STRENGTH.get(task, "rank correlation (or R² of its category means)")
    return Finding(
        check="single_feature_leak",
        column=column,
        severity="critical",
        message=(
            f"The column '{column}' alone predicts the target with {name} {strength:.3f} "
            f"(at or above {threshold:.2f}): it probably leaks the label, e.g. it is computed "
            "from the outcome or recorded after it. Drop it from the features unless it is "
            "truly known at prediction time."
        ),
        value=strength,
    )


def _future_finding(column: str, time_column: str, count: int, rows: int) -> Finding:
    share = count / rows
    return Finding(
        check="future_timestamp",
        column=column,
        severity="critical",
        message=(
            f"The column '{column}' is later than the prediction time '{time_column}' in "
            f"{count} of {rows} rows ({share:.1%}): it holds information known only after the "
            "prediction is made. Drop it, or replace it with a value known at that time."
        ),
        value=share,
    )
