from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from keelson.spec import Split, Target, Train
from keelson.train.split import folds, not_features, split, validation_folds
from keelson.train.task import Task


def frame(rows: int = 1000) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "i": range(rows),
            "when": rng.permutation(rows),  # shuffled time order
            "group": rng.integers(0, 60, rows),
            "y": [1 if i % 10 == 0 else 0 for i in range(rows)],
        }
    )


def task_of(table: pl.DataFrame) -> Task:
    return Task.of(table, Target(column="y"), Train())


def test_stratified_split_is_stratified_and_disjoint() -> None:
    table = frame()
    parts = split(table, task_of(table), Split(test=0.2))
    assert (parts.train.height, parts.test.height) == (800, 200)
    assert parts.test["y"].mean() == parts.train["y"].mean() == 0.1
    assert set(parts.train["i"]).isdisjoint(parts.test["i"])


def test_time_split_never_shuffles_and_keeps_the_gap() -> None:
    table = frame()
    parts = split(table, task_of(table), Split(method="time", time_column="when", test=0.2, gap=10))
    train_times, test_times = parts.train["when"].to_list(), parts.test["when"].to_list()
    assert train_times == sorted(train_times) and test_times == sorted(test_times)
    assert test_times[0] == 800 and train_times[-1] == 789  # the latest rows; 10 left out
    labels = parts.train["y"].to_numpy()
    spec = Split(method="time", time_column="when", gap=5)
    chained = folds(parts.train, labels, spec, "time", 4)
    for fit_rows, score_rows in chained:
        assert fit_rows.max() + 5 < score_rows.min()  # always the past predicts the future
        assert list(score_rows) == list(range(score_rows.min(), score_rows.max() + 1))
        assert fit_rows.size >= parts.train.height // 2 - 5  # each learns from half at least
    scored = np.concatenate([score_rows for _, score_rows in chained])
    assert parts.train.height // 2 - 4 < scored.size <= parts.train.height // 2  # the later half
    assert scored.max() == parts.train.height - 1


def test_group_split_keeps_each_group_on_one_side() -> None:
    table = frame()
    spec = Split(method="group", group_column="group", test=0.25)
    parts = split(table, task_of(table), spec)
    assert set(parts.train["group"]).isdisjoint(parts.test["group"])
    labels = parts.train["y"].to_numpy()
    groups = parts.train["group"].to_numpy()
    for fit_rows, score_rows in folds(parts.train, labels, spec, "group", 3):
        assert set(groups[fit_rows]).isdisjoint(groups[score_rows])


def test_no_test_set_keeps_every_row_for_training() -> None:
    table = frame()
    parts = split(table, task_of(table), Split(test=0))
    assert parts.train.height == 1000 and parts.test.height == 0


def test_time_split_needs_its_column() -> None:
    with pytest.raises(ValueError, match="time_column"):
        Split(method="time")


def test_time_holdout_scores_the_latest_rows_after_the_gap() -> None:
    table = frame()
    spec = Split(method="time", time_column="when", test=0, gap=7)
    parts = split(table, task_of(table), spec)
    labels = parts.train["y"].to_numpy()
    (fit_rows, score_rows), *more = validation_folds(
        parts.train, labels, spec, "time", Train(validation="holdout", holdout=0.25)
    )
    assert not more
    assert list(score_rows) == list(range(750, 1000))
    assert list(fit_rows) == list(range(743))


def test_stratified_holdout_keeps_the_class_share() -> None:
    table = frame()
    labels = table["y"].to_numpy()
    [(fit_rows, score_rows)] = validation_folds(
        table, labels, Split(), "stratified", Train(validation="holdout", holdout=0.2)
    )
    assert len(score_rows) == 200 and labels[score_rows].mean() == 0.1
    assert set(fit_rows).isdisjoint(score_rows) and len(fit_rows) + len(score_rows) == 1000


def test_cv_validation_gives_k_folds() -> None:
    table = frame()
    labels = table["y"].to_numpy()
    once = Train(cv_folds=4, cv_repeats=1)
    assert len(validation_folds(table, labels, Split(), "stratified", once)) == 4


def test_time_column_is_not_a_feature_unless_asked() -> None:
    spec = Split(method="time", time_column="when", group_column="group")
    assert not_features(spec, "time") == ["group", "when"]
    assert not_features(spec.model_copy(update={"time_feature": True}), "time") == ["group"]
    assert not_features(Split(), "stratified") == []


def test_small_tables_repeat_their_folds_unless_told() -> None:
    from keelson.train.split import repeats

    assert [repeats(Train(), rows) for rows in (300, 750, 1000, 1500, 50_000)] == [5, 3, 2, 1, 1]
    assert repeats(Train(cv_repeats=4), 50_000) == 4
    table = frame()
    labels = table["y"].to_numpy()
    drawn = validation_folds(table, labels, Split(), "stratified", Train(cv_folds=5))
    assert len(drawn) == 5 * 2  # 1,000 rows: two draws of the 5 folds
    time_spec = Split(method="time", time_column="when")
    assert len(validation_folds(table, labels, time_spec, "time", Train(cv_folds=5))) == 5
