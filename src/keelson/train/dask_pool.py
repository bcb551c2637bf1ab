"""Trials as Dask futures: the :class:`~keelson.train.workers.WorkerPool` interface on a cluster.

``execution.engine: dask`` runs the search's trials and the final refits here. The pool
starts a local cluster of ``execution.workers`` processes with one thread each (or joins
the scheduler at ``execution.address``), broadcasts the :class:`Problem` once, and runs
each job as a future. A job's exception comes back as :class:`JobFailed`. A job still
running at the deadline is cancelled; on a cluster the pool owns, the worker process
running it is killed too (its nanny starts a fresh one), so a stuck trial really stops
and the pool does not wait for a graceful shutdown. OpenMP/BLAS pools are pinned to one
thread per worker process, as in :mod:`keelson.train.workers`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

from keelson.errors import KeelsonError
from keelson.spec import Execution
from keelson.train.workers import JobFailed

if TYPE_CHECKING:
    from distributed import Client, Future

_PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_PRELOAD = ("keelson.train.crossval", "lightgbm", "sklearn.ensemble", "sklearn.linear_model")
_RECOVERY_SECONDS = 60.0  # how long a killed worker may take to come back


class DaskPool:
    """Jobs as futures on a Dask cluster; as many at once as the cluster has threads."""

    def __init__(self, execution: Execution, threads: int = 1) -> None:
        self.execution = execution
        self.threads = threads
        self._owned = execution.address is None
        self._stack = ExitStack()
        self._problem: Any = None
        self._scattered: Future | None = None
        self._running: dict[Any, Future] = {}
        self._killed: set[str] = set()  # worker addresses stopped mid-job, not yet replaced
        self._size = execution.workers
        self._started: Client | BaseException | None = None
        # starting the cluster takes seconds: do it beside the caller's work (the data stage)
        self._starting = threading.Thread(target=self._start, daemon=True)
        self._starting.start()

    @property
    def _client(self) -> Client:
        self._starting.join()
        if isinstance(self._started, BaseException):
            raise self._started
        assert self._started is not None
        return self._started

    @property
    def size(self) -> int:
        if not self._owned:  # a cluster at an address is sized once joined
            self._starting.join()
        return self._size

    def load(self, problem: Any) -> None:
        """Give every worker the data (a broadcast); later jobs refer to it."""
        self._recover()
        self._problem = problem
        self._scattered = self._client.scatter(problem, broadcast=True, hash=False)

    def idle(self) -> int:
        return max(self.size - len(self._running), 0)

    def busy(self) -> list[Any]:
        return list(self._running)

    def submit(self, key: Any, function: Callable[..., Any], *args: Any) -> None:
        self._recover()
        name = f"{getattr(function, '__name__', 'job')}-{uuid.uuid4().hex}"
        future = self._client.submit(
            _run, function, self._scattered, self.threads, *args, key=name, pure=False
        )
        self._running[key] = future

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        """Results that arrive within ``timeout`` seconds: (key, result or JobFailed)."""
        if not self._running:
            return []
        from distributed import wait

        try:
            wait(
                list(self._running.values()),
                timeout=max(timeout, 0.01),
                return_when="FIRST_COMPLETED",
            )
        except TimeoutError:
            return []
        done = [key for key, future in self._running.items() if future.done()]
        return [(key, _outcome(self._running.pop(key))) for key in done]

    def stop_busy(self) -> list[Any]:
        """Cancel every running job and, on an owned cluster, kill the workers running them."""
        if not self._running:
            return []
        client, keys = self._client, list(self._running)
        tasks = {future.key for future in self._running.values()}
        busy = [a for a, running in client.processing().items() if tasks & set(running)]
        client.cancel(list(self._running.values()), force=True)
        self._running.clear()
        if self._owned and busy:
            client.run(_exit_now, workers=busy, on_error="ignore")
            self._killed.update(busy)
        return keys

    def close(self) -> None:
        self._starting.join()
        if self._running and not isinstance(self._started, BaseException):
            self._client.cancel(list(self._running.values()), force=True)
        self._running.clear()
        self._stack.close()

    def __enter__(self) -> DaskPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _start(self) -> None:
        try:
            self._started = self._join() if not self._owned else self._local()
            self._started.register_plugin(_Preload(), name="keelson-preload")
        except BaseException as exc:  # raised where the client is first needed
            self._started = exc

    def _local(self) -> Client:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=self.execution.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=_PINNED,
            # a stopped trial kills its worker on purpose: not an error worth printing
            silence_logs=logging.CRITICAL,
        )
        self._stack.callback(cluster.close)
        client = Client(cluster)  # not as a context manager: it is closed from another thread
        self._stack.callback(client.close)
        return client

    def _join(self) -> Client:
        from keelson.data.executor import connect_scheduler

        client = connect_scheduler(str(self.execution.address))
        self._stack.callback(client.close)
        self._size = max(sum(client.nthreads().values()), 1)
        return client

    def _recover(self) -> None:
        """After workers were killed: wait for their replacements; scatter the data again
        if it was lost with them."""
        if not self._killed:
            return
        client, until = self._client, time.monotonic() + _RECOVERY_SECONDS
        while time.monotonic() < until:
            workers = set(client.scheduler_info(n_workers=-1)["workers"])
            if len(workers) >= self.execution.workers and not workers & self._killed:
                break  # every replacement has registered: scattering can reach them all
            time.sleep(0.05)
        else:
            raise KeelsonError(
                "the Dask workers stopped at the deadline did not come back.",
                where="execution",
                hint="Check the machine's memory and processes, or set execution.engine: polars.",
            )
        self._killed.clear()
        if self._scattered is not None and self._scattered.status != "finished":
            self.load(self._problem)


class _Preload(WorkerPlugin):
    """A worker plugin: import the learners when a worker starts (restarted ones too)."""

    def setup(self, worker: Any) -> None:
        import importlib

        for module in _PRELOAD:
            importlib.import_module(module)


def _run(function: Callable[..., Any], problem: Any, threads: int, *args: Any) -> Any:
    """A job on a worker: ``function(problem, *args)`` with OpenMP/BLAS pinned."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        return function(problem, *args)


def _outcome(future: Future) -> Any:
    if future.status == "finished":
        return future.result()
    if future.status == "error":
        error = future.exception()
        return JobFailed(f"{type(error).__name__}: {str(error)[:300]}")
    return JobFailed(f"the job was {future.status} on the Dask cluster")


def _exit_now() -> None:
    """Run on a worker that is stuck in a job: end its process at once."""
    os._exit(1)
