"""The worker pool runs jobs in other processes and can stop one mid-flight.

Jobs are called as ``function(problem, *args)``; standard-library functions serve as
jobs here (``operator.add`` with the problem 2, ``time.sleep`` with the problem as the
number of seconds), so nothing needs importing in the children.
"""

from __future__ import annotations

import operator
import time

from keelson.train.workers import JobFailed, WorkerPool


def test_jobs_run_in_workers_and_return_results() -> None:
    with WorkerPool(2) as pool:
        pool.load(2)
        pool.submit("a", operator.add, 3)
        pool.submit("b", operator.mul, 5)
        results = dict(pool.wait(30) + pool.wait(30))
    assert results == {"a": 5, "b": 10}


def test_a_failing_job_is_reported_and_the_worker_lives_on() -> None:
    with WorkerPool(1) as pool:
        pool.load(2)
        pool.submit("bad", operator.truediv, 0)
        [(_, failed)] = pool.wait(30)
        assert isinstance(failed, JobFailed) and "ZeroDivisionError" in failed.error
        pool.submit("good", operator.add, 1)
        assert pool.wait(30) == [("good", 3)]


def test_a_stuck_job_is_stopped_and_the_worker_replaced() -> None:
    with WorkerPool(1) as pool:
        pool.load(3600)
        pool.submit("stuck", time.sleep)
        assert pool.wait(0.5) == []
        assert pool.stop_busy() == ["stuck"] and pool.idle() == 1
        pool.load(2)
        pool.submit("next", operator.add, 2)
        assert pool.wait(60) == [("next", 4)]
