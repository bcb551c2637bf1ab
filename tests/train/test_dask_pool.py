"""Trials as Dask futures on a real LocalCluster, through the worker pool's interface.

As in test_workers.py, standard-library functions serve as jobs (called as
``function(problem, *args)``): ``operator.add`` with the problem 2, ``time.sleep`` with
the problem as the number of seconds.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from tests.train.problems import binary_problem

from keelson.spec import Budget, Execution, Train
from keelson.train.budget import Deadline
from keelson.train.crossval import Problem
from keelson.train.dask_pool import DaskPool
from keelson.train.search import search
from keelson.train.workers import JobFailed


@pytest.fixture(scope="module")
def pool() -> Iterator[DaskPool]:
    with DaskPool(Execution(engine="dask", workers=2)) as pool:
        yield pool


def test_jobs_run_as_futures_and_return_results(pool: DaskPool) -> None:
    pool.load(2)
    pool.submit("a", operator.add, 3)
    pool.submit("b", operator.mul, 5)
    assert pool.idle() == 0 and sorted(pool.busy()) == ["a", "b"]
    results = dict(pool.wait(60))
    if len(results) < 2:
        results |= dict(pool.wait(60))
    assert results == {"a": 5, "b": 10}
    assert pool.idle() == 2 and pool.busy() == []


def test_a_failing_job_comes_back_as_job_failed(pool: DaskPool) -> None:
    pool.load(2)
    pool.submit("bad", operator.truediv, 0)
    [(key, failed)] = pool.wait(60)
    assert key == "bad" and isinstance(failed, JobFailed)
    assert "ZeroDivisionError" in failed.error
    pool.submit("good", operator.add, 1)
    assert pool.wait(60) == [("good", 3)]


def test_wait_returns_nothing_before_a_job_finishes(pool: DaskPool) -> None:
    pool.load(0.5)
    pool.submit("nap", time.sleep)
    assert pool.wait(0.0) == []
    assert pool.wait(60) == [("nap", None)]


def test_stuck_jobs_are_stopped_and_their_workers_replaced(pool: DaskPool) -> None:
    pool.load(3600)
    pool.submit("stuck", time.sleep)
    pool.submit("also stuck", time.sleep)
    assert pool.wait(1.0) == []
    assert sorted(pool.stop_busy()) == ["also stuck", "stuck"] and pool.idle() == 2
    # two workers of one thread each: these run only if the sleeping jobs really stopped,
    # and they find the problem although the killed workers held every copy of it
    pool.submit("x", operator.add, 2)
    pool.submit("y", operator.add, 3)
    results = dict(pool.wait(120))
    if len(results) < 2:
        results |= dict(pool.wait(120))
    assert results == {"x": 3602, "y": 3603}


def problem(rows: int = 500) -> Problem:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"a": rng.normal(size=rows), "b": rng.choice(["x", "y"], rows)})
    signal = frame["a"].to_numpy() + (frame["b"] == "x").to_numpy()
    labels = (signal + rng.normal(0, 0.5, rows) > 0.8).astype(int)
    return binary_problem(frame, labels, 2)


def test_a_search_runs_its_trials_on_the_cluster(pool: DaskPool) -> None:
    spec = Train(
        candidates=["linear", "hist_gradient_boosting"],
        budget=Budget(seconds=120, max_trials=4),
        cv_folds=2,
    )
    data = problem()
    pool.load(data)
    result = search(data, pool, spec, Deadline(120.0), ["none"])  # type: ignore[arg-type]
    assert [t.state for t in result.trials] == ["complete"] * 4
    assert {t.family for t in result.trials} == {"linear", "hist_gradient_boosting"}
    assert result.best.score is not None and result.best.score > 0.8
    assert result.best.oof is not None and not np.isnan(result.best.oof).any()
