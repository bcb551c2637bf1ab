from __future__ import annotations

import polars as pl
import pytest

from keelson.errors import ContractError, SpecError
from keelson.spec import Target, Train
from keelson.train.task import Task


def resolve(values: list, **target: object) -> Task:
    return Task.of(pl.DataFrame({"t": values}), Target(column="t", **target), Train())


def test_auto_reads_the_task_from_the_values() -> None:
    assert resolve(["no", "yes", "no"]).kind == "binary"
    assert resolve([3, 5, 6, 7, 5]).kind == "multiclass"
    assert resolve([0.5, 1.25, 3.0]).kind == "regression"
    assert resolve(list(range(200))).kind == "regression"


def test_binary_positive_defaults_to_a_yes_or_the_rarer_class() -> None:
    assert resolve(["no", "yes", "no"]).classes == ["no", "yes"]
    assert resolve(["a", "b", "b"]).classes == ["b", "a"]
    assert resolve(["a", "b", "b"], positive="b").classes == ["a", "b"]


def test_labels_are_encoded_per_task() -> None:
    task = resolve([9, 3, 10, 3])
    assert task.classes == ["3", "9", "10"]  # numeric order, not text order
    assert task.encode(pl.Series([10, 3, 9])).tolist() == [2, 0, 1]
    assert resolve([True, False]).encode(pl.Series([True, False])).tolist() == [1, 0]


def test_metric_must_fit_the_task() -> None:
    with pytest.raises(SpecError, match="does not apply"):
        Task.of(
            pl.DataFrame({"t": [0.1, 0.2]}),
            Target(column="t", task="regression"),
            Train(metric="roc_auc"),
        )


def test_an_unseen_label_names_itself() -> None:
    with pytest.raises(ContractError, match="'maybe'"):
        resolve(["no", "yes"]).encode(pl.Series(["maybe"]))
