"""Paired significance tests: does model B beat model A on the same held-out rows?

Every test is paired (both models are scored on the same rows, resampled together),
so the row-to-row correlation of their errors is accounted for. ROC-AUC on a binary
task uses DeLong's test; every other metric a paired bootstrap; predicted labels of
a classifier McNemar's test. Deltas are always B − A in the metric's own units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from keelson.errors import KeelsonError
from keelson.train.metrics import label
from keelson.train.weighted import ONE, WeightedMetric

Metric = Callable[[np.ndarray, np.ndarray], float]
Better = Literal["a", "b"]

TASKS = ("binary", "multiclass", "regression")
Z_95 = 1.959963984540054  # two-sided 95 % normal quantile
CHUNK = 100  # resamples scored per batch (an index matrix of CHUNK x rows)
EXACT_BELOW = 25  # McNemar: exact binomial test under this many discordant pairs


class ComparisonError(KeelsonError):
    code = "comparison_invalid"


@dataclass(frozen=True)
class Difference:
    """One metric of two models on the same rows; ``delta`` and its CI are B − A."""

    metric: str
    value_a: float
    value_b: float
    delta: float
    low: float
    high: float
    p_value: float
    method: str
    higher_is_better: bool

    @property
    def better(self) -> Better | None:
        """The model whose metric is better, or None when the 95 % CI of delta contains 0."""
        if self.low <= 0.0 <= self.high:
            return None
        return "b" if (self.delta > 0) == self.higher_is_better else "a"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"better": self.better}


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on the rows where exactly one of the two classifiers is right."""

    a_right_b_wrong: int
    a_wrong_b_right: int
    statistic: float
    p_value: float
    method: Literal["exact", "chi2"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    differences: list[Difference]
    mcnemar: McNemar | None

    def lines(self, name_a: str = "", name_b: str = "") -> list[str]:
        """One plain-language verdict per metric, then McNemar's if there is one."""
        lines = [verdict(diff, name_a, name_b) for diff in self.differences]
        if self.mcnemar is not None:
            lines.append(_mcnemar_line(self.mcnemar, name_a, name_b))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "differences": [diff.to_dict() for diff in self.differences],
            "mcnemar": None if self.mcnemar is None else self.mcnemar.to_dict(),
        }


def compare(
    task: str,
    y: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    labels_a: np.ndarray | None,
    labels_b: np.ndarray | None,
    metrics: Mapping[str, tuple[Metric, bool]],
    seed: int = 0,
    resamples: int = 2000,
) -> Comparison:
    """Every metric of two models on the same test rows, each with a paired test.

    ``metrics`` maps a name to (metric(y, scores), higher_is_better). Binary ROC-AUC uses
    DeLong's test; the rest a paired bootstrap, stratified by class for classifiers; the
    predicted labels of a classifier (when both are given) McNemar's test.
    """
    if task not in TASKS:
        raise ComparisonError(
            f"The task must be one of {', '.join(TASKS)}. Got {task!r} instead.", where="task"
        )
    strata = None if task == "regression" else y
    differences = [
        delong(y, scores_a, scores_b)
        if task == "binary" and name == "roc_auc"
        else paired_bootstrap(
            y, scores_a, scores_b, metric, higher, resamples, seed, name=name, strata=strata
        )
        for name, (metric, higher) in metrics.items()
    ]
    if task == "regression" or labels_a is None or labels_b is None:
        return Comparison(differences, None)
    return Comparison(differences, mcnemar(y, labels_a, labels_b))


# --- paired bootstrap -----------------------------------------------------------------------


def paired_bootstrap(
    y: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    metric: Metric,
    higher_is_better: bool,
    resamples: int = 2000,
    seed: int = 0,
    *,
    name: str | None = None,
    strata: np.ndarray | None = None,
) -> Difference:
    """Percentile bootstrap of metric(B) − metric(A), both models on the same resampled rows.

    With ``strata`` (e.g. the class labels) rows are resampled within each stratum, so every
    resample keeps the class counts. The p-value is 2·min(P(Δ ≤ 0), P(Δ ≥ 0)) over the
    resamples, floored at 1/(resamples + 1). Known metrics (roc_auc, roc_auc_ovr, log_loss,
    rmse, mae, r2) are scored for all resamples at once by a weighted formula, used only
    when it reproduces ``metric`` on the original rows; any other metric is called per resample.
    """
    name = name or getattr(metric, "__name__", "metric").strip("_")
    _check_rows(y, scores_a, scores_b)
    if resamples < 1:
        raise ComparisonError(f"resamples must be at least 1. Got {resamples} instead.")
    value_a, value_b = float(metric(y, scores_a)), float(metric(y, scores_b))
    groups = [np.arange(y.size)] if strata is None else _strata_rows(strata)
    chunks = _index_chunks(groups, resamples, np.random.default_rng(seed))
    weighted = _weighted_for(name, y, scores_a, scores_b, (value_a, value_b))
    draws = (
        _weighted_deltas(chunks, y, scores_a, scores_b, weighted)
        if weighted is not None
        else _looped_deltas(chunks, y, scores_a, scores_b, metric)
    )
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        raise ComparisonError(
            f"The metric {name!r} could not be computed on any bootstrap resample.",
            hint="Check that the test rows hold every class the metric needs.",
        )
    low, high = np.percentile(draws, [2.5, 97.5])
    share = min(np.mean(draws <= 0.0), np.mean(draws >= 0.0))
    p_value = min(1.0, max(2.0 * float(share), 1.0 / (resamples + 1)))
    return Difference(
        metric=name,
        value_a=value_a,
        value_b=value_b,
        delta=value_b - value_a,
        low=float(low),
        high=float(high),
        p_value=p_value,
        method="paired bootstrap",
        higher_is_better=higher_is_better,
    )


def _strata_rows(strata: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(strata == value) for value in np.unique(strata)]


def _index_chunks(
    groups: list[np.ndarray], resamples: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Resampled row indices, CHUNK resamples (rows of the matrix) at a time."""
    for start in range(0, resamples, CHUNK):
        count = min(CHUNK, resamples - start)
        yield np.concatenate(
            [rows[rng.integers(0, rows.size, size=(count, rows.size))] for rows in groups], axis=1
        )


def _looped_deltas(
    chunks: Iterator[np.ndarray], y: np.ndarray, a: np.ndarray, b: np.ndarray, metric: Metric
) -> np.ndarray:
    return np.array(
        [metric(y[rows], b[rows]) - metric(y[rows], a[rows]) for chunk in chunks for rows in chunk],
        dtype=np.float64,
    )


def _weighted_deltas(
    chunks: Iterator[np.ndarray],
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    weighted: WeightedMetric,
) -> np.ndarray:
    deltas = []
    for chunk in chunks:
        counts = _row_counts(chunk, y.size)
        deltas.append(weighted(y, b, counts) - weighted(y, a, counts))
    return np.concatenate(deltas)


def _row_counts(chunk: np.ndarray, rows: int) -> np.ndarray:
    """How many times each row appears in each resample: (resamples, rows) floats."""
    offsets = (np.arange(chunk.shape[0]) * rows)[:, None]
    flat = np.bincount((chunk + offsets).ravel(), minlength=chunk.shape[0] * rows)
    return flat.reshape(chunk.shape[0], rows).astype(np.float64)


# --- metrics of many resamples at once, from row counts -------------------------------------


def _weighted_for(
    name: str, y: np.ndarray, a: np.ndarray, b: np.ndarray, values: tuple[float, float]
) -> WeightedMetric | None:
    """The weighted formula for ``name`` if it reproduces the caller's metric on both models."""
    weighted = ONE.get(name)
    if weighted is None:
        return None
    ones = np.ones((1, y.size))
    try:
        with np.errstate(all="ignore"):
            own = [float(weighted(y, scores, ones)[0]) for scores in (a, b)]
    except (ValueError, IndexError, TypeError):
        return None
    return weighted if np.allclose(own, values, rtol=1e-9, atol=1e-12) else None


# --- DeLong ---------------------------------------------------------------------------------


def delong(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> Difference:
    """DeLong's test of two correlated ROC-AUCs on the same rows (Sun & Xu 2014, midranks).

    The CI is delta ± 1.96·sd from the variance of the difference of the two AUCs.
    """
    from scipy.stats import norm

    _check_binary(y, p_a, p_b)
    v10, v01 = _structural_components(y, np.vstack([p_a, p_b]))
    auc_a, auc_b = v10.mean(axis=1)
    covariance = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    variance = max(float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]), 0.0)
    delta, sd = float(auc_b - auc_a), math.sqrt(variance)
    z = abs(delta) / sd if sd > 0 else (0.0 if delta == 0 else math.inf)
    return Difference(
        metric="roc_auc",
        value_a=float(auc_a),
        value_b=float(auc_b),
        delta=delta,
        low=delta - Z_95 * sd,
        high=delta + Z_95 * sd,
        p_value=float(2 * norm.sf(z)),
        method="DeLong",
        higher_is_better=True,
    )


def _structural_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's V10 (models x positives) and V01 (models x negatives), from midranks.

    V10 of a positive: the share of negatives scored below it (ties count half);
    V01 of a negative: the share of positives scored above it. Their means are the AUCs.
    """
    from scipy.stats import rankdata

    positives, negatives = scores[:, y == 1], scores[:, y == 0]
    m, n = positives.shape[1], negatives.shape[1]
    within_pos = rankdata(positives, axis=1)
    within_neg = rankdata(negatives, axis=1)
    overall = rankdata(np.hstack([positives, negatives]), axis=1)
    v10 = (overall[:, :m] - within_pos) / n
    v01 = 1.0 - (overall[:, m:] - within_neg) / m
    return v10, v01


# --- McNemar --------------------------------------------------------------------------------


def mcnemar(y: np.ndarray, labels_a: np.ndarray, labels_b: np.ndarray) -> McNemar:
    """McNemar's test: exact binomial under 25 discordant rows, else chi² with continuity."""
    from scipy.stats import binomtest, chi2

    _check_rows(y, labels_a, labels_b)
    right_a, right_b = labels_a == y, labels_b == y
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    discordant = only_a + only_b
    if discordant == 0:
        return McNemar(only_a, only_b, 0.0, 1.0, "exact")
    if discordant < EXACT_BELOW:
        smaller = min(only_a, only_b)
        p_value = float(binomtest(smaller, discordant, 0.5).pvalue)
        return McNemar(only_a, only_b, float(smaller), p_value, "exact")
    statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
    return McNemar(only_a, only_b, float(statistic), float(chi2.sf(statistic, 1)), "chi2")


# --- verdicts -------------------------------------------------------------------------------


def verdict(diff: Difference, name_a: str, name_b: str) -> str:
    """One plain-language sentence; "better" means smaller for lower-is-better metrics."""
    unit = label(diff.metric)
    places = _places(diff.high - diff.low)
    test = f"{diff.method} {_p(diff.p_value)}"
    if diff.better is None:
        return (
            f"no significant difference in {unit}: Δ(B − A) = {_number(diff.delta, places, True)}, "
            f"95 % CI {_interval(diff.low, diff.high, places)}, {test}"
        )
    # the winner's gain: B − A if B wins a higher-is-better metric, negated otherwise
    sign = 1.0 if (diff.better == "b") == diff.higher_is_better else -1.0
    low, high = sorted((sign * diff.low, sign * diff.high))
    who = _model(diff.better, name_a if diff.better == "a" else name_b)
    return (
        f"{who} is better by {_number(sign * diff.delta, places)} {unit}, "
        f"95 % CI {_interval(low, high, places)}, {test}"
    )


def _mcnemar_line(result: McNemar, name_a: str, name_b: str) -> str:
    return (
        f"McNemar ({result.method}): {_model('a', name_a)} right and B wrong on "
        f"{result.a_right_b_wrong} rows, {_model('b', name_b)} right and A wrong on "
        f"{result.a_wrong_b_right}, {_p(result.p_value)}"
    )


def _model(which: Better, name: str) -> str:
    return f"{which.upper()} ({name})" if name else which.upper()


def _places(width: float) -> int:
    """Decimals that show the CI width to about two significant digits (3 for 0.01–0.1)."""
    if not math.isfinite(width) or width <= 0:
        return 3
    return min(6, max(0, 1 - math.floor(math.log10(width))))


def _number(value: float, places: int, signed: bool = False) -> str:
    value = 0.0 if round(value, places) == 0 else value
    text = f"{value:+.{places}f}" if signed else f"{value:.{places}f}"
    return text.replace("-", "−")


def _interval(low: float, high: float, places: int) -> str:
    return f"[{_number(low, places)}, {_number(high, places)}]"


def _p(p_value: float) -> str:
    if p_value < 0.001:
        return "p < 0.001"
    return f"p = {p_value:.2f}" if p_value >= 0.1 else f"p = {p_value:.3f}"


# --- input checks ---------------------------------------------------------------------------


def _check_rows(y: np.ndarray, first: np.ndarray, second: np.ndarray) -> None:
    for model, array in (("model A", first), ("model B", second)):
        if len(array) != len(y):
            raise ComparisonError(
                f"{model} has {len(array)} rows of predictions but there are {len(y)} labels.",
                hint="Score both models on the same test rows.",
            )
    if len(y) < 2:
        raise ComparisonError(f"Comparing models needs at least 2 test rows. Got {len(y)}.")


def _check_binary(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> None:
    _check_rows(y, p_a, p_b)
    if p_a.ndim != 1 or p_b.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ComparisonError(
            "DeLong's test needs 0/1 labels and one positive-class score per row.",
            hint="Use the paired bootstrap for multiclass scores.",
        )
    positives = int(np.sum(y == 1))
    if min(positives, y.size - positives) < 2:
        raise ComparisonError(
            f"DeLong's test needs at least 2 positive and 2 negative rows; "
            f"the test rows hold {positives} positive and {y.size - positives} negative.",
        )
