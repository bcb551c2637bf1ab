from __future__ import annotations

import numpy as np
import polars as pl

from keelson.spec import Budget, Split, Train
from keelson.train.search import search
from keelson.train.split import split


def problem(rows: int = 600) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 5, rows),
            "c": rng.choice(["x", "y", None], rows),
        }
    )
    labels = (frame["a"].to_numpy() + (frame["c"] == "x").fill_null(False).to_numpy()) + rng.normal(
        0, 0.5, rows
    ) > 0.8
    return frame, labels.astype(int)


def test_every_family_runs_its_defaults_first_and_scores_well() -> None:
    features, labels = problem()
    result = search(features, labels, Train(budget=Budget(seconds=30, max_trials=5), cv_folds=2))
    assert [t.family for t in result.trials[:3]] == [
        "logistic",
        "hist_gradient_boosting",
        "lightgbm",
    ]
    assert len(result.trials) == 5
    assert result.best.score is not None and result.best.score > 0.8


def test_the_budget_stops_the_search() -> None:
    features, labels = problem()
    result = search(features, labels, Train(budget=Budget(seconds=1.0), cv_folds=2))
    assert any(t.state == "complete" for t in result.trials)
    assert all(t.started_s < 1.0 for t in result.trials)  # none starts after the deadline
    assert result.seconds <= 1.0 + max(t.seconds for t in result.trials) + 0.5


def test_split_is_stratified_and_disjoint() -> None:
    frame = pl.DataFrame({"i": range(1000), "y": [1 if i % 10 == 0 else 0 for i in range(1000)]})
    parts = split(frame, "y", Split(test=0.2, validation=0.2))
    assert parts.sizes() == {"train": 600, "validation": 200, "test": 200}
    assert parts.test["y"].mean() == parts.train["y"].mean() == 0.1
    seen = set(parts.train["i"]) | set(parts.validation["i"]) | set(parts.test["i"])
    assert len(seen) == 1000
