from __future__ import annotations

from datetime import date, datetime

import numpy as np
import polars as pl
import pytest

from keelson.train.leakage import (
    check_leakage,
    duplicated_rows,
    future_timestamps,
    single_feature_leaks,
)

N = 2000


@pytest.fixture
def binary() -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    y = (rng.random(N) < 0.3).astype(int)
    features = pl.DataFrame(
        {
            "leak": y + rng.normal(0, 0.01, N),
            "weak": rng.normal(0, 1, N) + 0.3 * y,
            "id": [f"row-{i}" for i in range(N)],
            "status": np.where(y == 1, "closed", "open"),
            "noise": rng.choice(["a", "b", None], N),
        }
    )
    return features, y


def _critical(findings: list) -> set[str]:
    return {f.column for f in findings if f.severity == "critical"}


def test_label_copies_are_critical_and_id_and_weak_columns_are_not(binary: tuple) -> None:
    features, y = binary
    findings = single_feature_leaks(features, y, "binary", seed=0)
    assert _critical(findings) == {"leak", "status"}
    leak = next(f for f in findings if f.column == "leak")
    assert leak.value == pytest.approx(1.0, abs=1e-3)
    assert "'leak'" in leak.message and "Drop it" in leak.message
    assert leak.to_dict()["check"] == "single_feature_leak"


def test_inverted_leak_counts_as_strongly_as_a_direct_one(binary: tuple) -> None:
    features, y = binary
    findings = single_feature_leaks(features.select(-pl.col("leak")), y, "binary", seed=0)
    assert _critical(findings) == {"leak"}


def test_unique_ids_are_not_a_leak_but_ids_repeated_with_their_label_are(binary: tuple) -> None:
    features, y = binary
    assert single_feature_leaks(features.select("id"), y, "binary", seed=0) == []
    repeated = pl.DataFrame({"id": np.repeat(np.arange(N // 10), 10).astype(str)})
    by_pair = np.repeat(y[: N // 10], 10)  # the label is a property of the id: learnable
    assert _critical(single_feature_leaks(repeated, by_pair, "binary", seed=0)) == {"id"}


def test_numeric_nulls_are_handled(binary: tuple) -> None:
    features, y = binary
    holes = features.with_columns(
        pl.when(pl.int_range(pl.len()) % 50 == 0).then(None).otherwise(pl.col("leak")).alias("leak")
    )
    findings = single_feature_leaks(holes, y, "binary", seed=0)
    assert 0.98 <= next(f.value for f in findings if f.column == "leak") < 1.0


def test_multiclass_uses_macro_one_vs_rest_auc() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, N)
    features = pl.DataFrame(
        {
            "grade": np.array(["low", "mid", "high"])[y],
            "score": y * 10.0 + rng.normal(0, 0.1, N),
            "id": np.arange(N),
            "weak": rng.normal(0, 1, N) + 0.2 * y,
        }
    )
    findings = single_feature_leaks(features, y, "multiclass", seed=0)
    assert _critical(findings) == {"grade"}  # 'score' orders the middle class poorly one-vs-rest
    assert single_feature_leaks(features.select("score"), y, "multiclass", 0, threshold=0.8)


def test_regression_uses_spearman_and_encoding_r2() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, N)
    groups = rng.integers(0, 5, N)
    features = pl.DataFrame(
        {
            "monotone": np.exp(y),  # not linear, perfectly ranked
            "group": groups.astype(str),
            "weak": y + rng.normal(0, 3, N),
        }
    )
    target = y
    assert _critical(single_feature_leaks(features, target, "regression", seed=0)) == {"monotone"}
    by_group = groups * 10.0 + rng.normal(0, 0.01, N)
    assert _critical(single_feature_leaks(features, by_group, "regression", seed=0)) == {"group"}


def test_rejects_an_unknown_task_and_mismatched_lengths(binary: tuple) -> None:
    features, y = binary
    with pytest.raises(ValueError, match="task"):
        single_feature_leaks(features, y, "ranking", seed=0)
    with pytest.raises(ValueError, match="rows"):
        single_feature_leaks(features, y[:-1], "binary", seed=0)


def test_duplicated_rows_counts_exactly_with_nulls_equal() -> None:
    train = pl.DataFrame({"a": [1, None, 3, 3], "b": ["x", "y", None, None]})
    test = pl.DataFrame({"a": [None, 3, 3, 1, 2, 1], "b": ["y", None, None, None, "x", "x"]})
    finding = duplicated_rows(train, test)
    assert finding is not None
    assert finding.value == pytest.approx(4 / 6)  # (None, y), (3, None) twice, (1, x)
    assert finding.severity == "critical"
    assert finding.message.startswith("4 of 6 test rows")


def test_few_duplicates_are_a_warning_and_none_is_no_finding() -> None:
    train = pl.DataFrame({"a": list(range(100))})
    few = duplicated_rows(train, pl.DataFrame({"a": range(99, 199)}))
    assert few is not None and few.severity == "warning" and few.value == pytest.approx(0.01)
    assert duplicated_rows(train, pl.DataFrame({"a": list(range(100, 200))})) is None


def test_future_timestamps_found_per_column() -> None:
    features = pl.DataFrame(
        {
            "at": [datetime(2024, 1, d, 12) for d in range(1, 5)],
            "closed_on": [date(2024, 1, 1), date(2024, 1, 3), None, date(2024, 1, 4)],
            "signed_up": [datetime(2023, 5, 1)] * 4,
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    )
    findings = future_timestamps(features, "at")
    assert [(f.column, f.value) for f in findings] == [("closed_on", 0.25)]  # same day is fine
    assert findings[0].severity == "critical"
    assert "1 of 4 rows" in findings[0].message


def test_future_timestamps_compare_time_zones_in_utc() -> None:
    features = pl.DataFrame(
        {"at": [datetime(2024, 1, 1, 12)] * 2, "seen": [datetime(2024, 1, 1, 12, 30)] * 2}
    ).with_columns(pl.col("seen").dt.replace_time_zone("Europe/Paris"))  # 11:30 UTC
    assert future_timestamps(features, "at") == []
    with pytest.raises(ValueError, match="'nope'"):
        future_timestamps(features, "nope")


def test_check_leakage_runs_every_check_critical_first(binary: tuple) -> None:
    features, y = binary
    frame = features.with_columns(
        at=pl.lit(date(2020, 1, 1)), later=pl.lit(date(2020, 1, 1)).dt.offset_by("1d")
    )
    test = frame.head(3).vstack(frame.tail(300).with_columns(pl.col("weak") + 100))
    findings = check_leakage(frame, y, test, "binary", "at", seed=0)
    assert [f.check for f in findings] == [
        "single_feature_leak",
        "single_feature_leak",
        "future_timestamp",
        "duplicated_rows",
    ]
    assert findings[-1].severity == "warning" and findings[-1].value == pytest.approx(3 / 303)
    assert [f.check for f in check_leakage(frame, y, None, "binary", None, 0)] == [
        "single_feature_leak",
        "single_feature_leak",
    ]


def test_a_numeric_time_column_is_not_checked_for_future_dates() -> None:
    frame = pl.DataFrame({"t": [0.1, 0.2, 0.3, 0.4], "x": [1.0, 2.0, 1.0, 2.0]})
    findings = check_leakage(frame, np.array([0, 1, 0, 1]), None, "binary", "t", 0)
    assert all(finding.check != "future_timestamps" for finding in findings)
