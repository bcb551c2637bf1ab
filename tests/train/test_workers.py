"""The worker pool runs jobs in other processes and can stop one mid-flight.

Jobs are called as ``function(problem, *args)``; standard-library functions serve as
jobs here (``operator.add`` with the problem 2, ``time.sleep`` with the problem as the
number of seconds), so nothing needs importing in the children.
"""

from __future__ import annotations

import operator
import os
import time

import psutil

from keelson.train.workers import JobFailed, WorkerPool, start_fork_server


def test_jobs_run_in_workers_and_return_results() -> None:
    with WorkerPool(2) as pool:
        pool.load(2)
        pool.submit("a", operator.add, 3)
        pool.submit("b", operator.mul, 5)
        results = dict(pool.wait(30) + pool.wait(30))
    assert results == {"a": 5, "b": 10}


def test_the_fork_server_started_early_is_the_one_workers_come_from() -> None:
    start_fork_server()  # `keelson run` starts it before its own imports
    servers = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    assert len(servers) == 1
    with WorkerPool(1) as pool:
        pool.load(os.getppid)
        pool.submit("parent", operator.call)  # the job calls os.getppid() in the worker
        assert pool.wait(30) == [("parent", servers[0].pid)]


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
