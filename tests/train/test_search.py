from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest
from tests.train.problems import binary_problem

from keelson.spec import Budget, Train
from keelson.train.budget import Deadline
from keelson.train.crossval import Problem
from keelson.train.search import search
from keelson.train.workers import WorkerPool


def problem(rows: int = 600, k: int = 2) -> Problem:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 5, rows),
            "c": rng.choice(["x", "y", None], rows),
        }
    )
    signal = frame["a"].to_numpy() + (frame["c"] == "x").fill_null(False).to_numpy()
    labels = (signal + rng.normal(0, 0.5, rows) > 0.8).astype(int)
    return binary_problem(frame, labels, k)


def run_search(spec: Train, budget: float = 60.0) -> object:
    with WorkerPool(2) as pool:
        data = problem()
        pool.load(data)
        return search(data, pool, spec, Deadline(budget), ["none", "weights"])


def test_the_portfolio_runs_first_and_scores_well() -> None:
    spec = Train(
        candidates=["linear", "hist_gradient_boosting", "lightgbm"],
        budget=Budget(seconds=60, max_trials=6),
        cv_folds=2,
    )
    result = run_search(spec)
    families = [t.family for t in result.trials[:3]]
    assert families == ["lightgbm", "hist_gradient_boosting", "linear"]
    assert result.trials[0].config.params["n_estimators"] == 300  # the portfolio's first entry
    assert len(result.trials) == 6
    assert result.best.score is not None and result.best.score > 0.8
    assert result.best.oof is not None and not np.isnan(result.best.oof).any()


def test_the_same_seed_and_trial_count_give_the_same_trials() -> None:
    fast: list = ["linear", "hist_gradient_boosting", "lightgbm"]
    spec = Train(candidates=fast, budget=Budget(seconds=120, max_trials=7), cv_folds=2, seed=3)
    first, second = run_search(spec), run_search(spec)
    assert [t.to_dict()["params"] for t in first.trials] == [
        t.to_dict()["params"] for t in second.trials
    ]
    assert [t.score for t in first.trials] == [t.score for t in second.trials]


def test_no_trial_starts_after_the_search_deadline() -> None:
    spec = Train(candidates=["linear", "lightgbm"], budget=Budget(seconds=600), cv_folds=2)
    deadline = Deadline(8.0)
    with WorkerPool(2) as pool:
        data = problem()
        pool.load(data)
        result = search(data, pool, spec, deadline, ["none"])
    limit = deadline.search_until(result.complete()[:3], 2) - deadline.started
    began = result.seconds and min(t.started_s for t in result.trials)
    assert all(t.started_s - began <= limit + 0.5 for t in result.trials)
    assert any(t.state == "complete" for t in result.trials)


def test_skipped_proposals_end_the_search_only_twenty_in_a_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every other proposal is too slow for the time left: 29 of them are skipped in all,
    never two in a row, and the search still runs its 30 trials."""
    import itertools

    from keelson.train import search as module

    turns = itertools.cycle([True, False])
    monkeypatch.setattr(module._Loop, "_fits_in_time", lambda self, family: next(turns))
    spec = Train(candidates=["linear"], budget=Budget(seconds=120, max_trials=30), cv_folds=2)
    result = run_search(spec)
    assert len(result.trials) == 30
    assert result.trials[-1].trial == 58  # trial numbers count the skipped proposals too


def test_short_of_time_the_cheapest_family_goes_first() -> None:
    spec = Train(candidates=["lightgbm", "linear"], budget=Budget(seconds=60, max_trials=1))
    hurried = Deadline(100.0, started=time.monotonic() - 70.0)  # 30 % of the budget left
    with WorkerPool(1) as pool:
        data = problem()
        pool.load(data)
        result = search(data, pool, spec, hurried, ["none"])
    assert [t.family for t in result.trials] == ["linear"]
