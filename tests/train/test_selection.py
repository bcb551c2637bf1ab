from __future__ import annotations

import numpy as np
import polars as pl
from tests.train.problems import binary_problem

from keelson.train.candidates import Config
from keelson.train.crossval import Problem, cross_validate
from keelson.train.search import TrialRecord
from keelson.train.selection import select_features
from keelson.train.workers import WorkerPool


def noisy_problem(rows: int = 1500) -> Problem:
    rng = np.random.default_rng(4)
    signal = rng.normal(size=(rows, 2))
    noise = rng.normal(size=(rows, 6))
    frame = pl.DataFrame(
        {"s0": signal[:, 0], "s1": signal[:, 1]} | {f"n{i}": noise[:, i] for i in range(6)}
    )
    labels = (signal.sum(axis=1) + rng.normal(0, 0.5, rows) > 0).astype(int)
    return binary_problem(frame, labels, 3)


def test_noise_columns_are_dropped_and_signal_kept() -> None:
    problem = noisy_problem()
    config = Config("linear", {"C": 1.0})
    outcome = cross_validate(problem, config)
    best = TrialRecord(0, config, score=outcome.score, state="complete", oof=outcome.oof)
    with WorkerPool(1) as pool:
        pool.load(problem)
        selection = select_features(problem, pool, best, until=float("inf"))
    assert {"s0", "s1"}.isdisjoint(selection.dropped)
    assert selection.dropped and all(column.startswith("n") for column in selection.dropped)
    assert selection.applied and selection.trial is not None
    assert selection.trial.config.drop == tuple(selection.dropped)
    assert (
        selection.score_after is not None
        and abs(selection.score_after - selection.score_before) < 0.01
    )


def test_no_time_means_no_change() -> None:
    problem = noisy_problem(300)
    config = Config("linear", {"C": 1.0})
    best = TrialRecord(0, config, score=0.9, state="complete")
    with WorkerPool(1) as pool:
        pool.load(problem)
        selection = select_features(problem, pool, best, until=0.0)
    assert not selection.applied and selection.score_after is None
