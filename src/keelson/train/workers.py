"""Worker processes that run trials, so that the deadline can stop a trial mid-fit.

Each worker is a process forked from a fork server that has imported the learners
once (so a worker, or its replacement, starts in milliseconds, and nothing
fork-unsafe in the parent, such as Polars' thread pool, is inherited); it holds
one copy of the :class:`Problem`.
The parent sends it jobs (a function of this package and its arguments) over a
pipe and waits with a timeout; a job still running at the deadline is stopped by
killing its process, which is replaced the next time work is submitted. Each
worker pins its OpenMP/BLAS pools to ``threads``: on a small machine, several
libraries each starting one thread per core cost far more than they gain.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# imported once by the fork server, while the parent is still reading data
_PRELOAD = (
    "keelson.train.crossval",
    "lightgbm",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "imblearn.pipeline",
    "threadpoolctl",
)


@dataclass(frozen=True)
class JobFailed:
    """What a job raised, as text: the trial is recorded as failed, the worker lives on."""

    error: str


class Pool(Protocol):
    """Where trials run: worker processes here (:class:`WorkerPool`) or a Dask cluster."""

    @property
    def size(self) -> int: ...

    def load(self, problem: Any) -> None: ...

    def idle(self) -> int: ...

    def busy(self) -> list[Any]: ...

    def submit(self, key: Any, function: Callable[..., Any], *args: Any) -> None: ...

    def wait(self, timeout: float) -> list[tuple[Any, Any]]: ...

    def stop_busy(self) -> list[Any]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Pool: ...

    def __exit__(self, *_exc: object) -> None: ...


@dataclass
class _Slot:
    process: Any
    conn: Connection
    job: Any = None  # the key of the job it is running, if any


def start_fork_server() -> None:
    """Start the fork server now: its imports (seconds on a small machine) then overlap the
    caller's own, instead of following them. A :class:`WorkerPool` uses the same server."""
    from multiprocessing import forkserver

    get_context("forkserver").set_forkserver_preload(list(_PRELOAD))
    forkserver.ensure_running()


class WorkerPool:
    """``workers`` processes, each running one job at a time."""

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.threads = threads
        self._context = get_context("forkserver")
        self._context.set_forkserver_preload(list(_PRELOAD))  # unless already started
        self._problem: bytes | None = None
        self._workers = workers
        self._slot_list: list[_Slot] = []
        # starting the fork server waits for its imports: do it beside the caller's work
        self._starting = threading.Thread(target=self._start_all, daemon=True)
        self._starting.start()

    @property
    def _slots(self) -> list[_Slot]:
        self._starting.join()
        return self._slot_list

    @property
    def size(self) -> int:
        return self._workers

    def _start_all(self) -> None:
        self._slot_list = [self._start() for _ in range(self._workers)]

    def load(self, problem: Any) -> None:
        """Give every worker the data; later jobs refer to it."""
        self._problem = pickle.dumps(("load", problem), protocol=pickle.HIGHEST_PROTOCOL)
        for slot in self._slots:
            if slot.process.is_alive():
                slot.conn.send_bytes(self._problem)
            else:
                self._restart(slot)

    def idle(self) -> int:
        return sum(slot.job is None for slot in self._slots)

    def busy(self) -> list[Any]:
        return [slot.job for slot in self._slots if slot.job is not None]

    def submit(self, key: Any, function: Callable[..., Any], *args: Any) -> None:
        slot = next(slot for slot in self._slots if slot.job is None)
        if not slot.process.is_alive():
            self._restart(slot)
        slot.conn.send_bytes(pickle.dumps(("run", function, args), pickle.HIGHEST_PROTOCOL))
        slot.job = key

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        """Results that arrive within ``timeout`` seconds: (key, result or JobFailed)."""
        busy = {slot.conn: slot for slot in self._slots if slot.job is not None}
        if not busy:
            return []
        done = []
        for conn in wait(list(busy), timeout=min(max(timeout, 0.0), 86400.0)):
            slot = busy[conn]  # type: ignore[index]
            try:
                result = pickle.loads(slot.conn.recv_bytes())
            except (EOFError, OSError):  # the process died (out of memory, killed)
                result = JobFailed("the worker process died")
                slot.process.join(timeout=1)
            done.append((slot.job, result))
            slot.job = None
        return done

    def stop_busy(self) -> list[Any]:
        """Kill every worker that is running a job; return those jobs' keys."""
        stopped = []
        for slot in self._slots:
            if slot.job is not None:
                slot.process.kill()
                slot.process.join(timeout=5)
                stopped.append(slot.job)
                slot.job = None
        return stopped

    def close(self) -> None:
        for slot in self._slots:
            if slot.process.is_alive() and slot.job is None:
                with contextlib.suppress(OSError):
                    slot.conn.send_bytes(pickle.dumps(("stop",)))
        deadline = time.monotonic() + 0.5
        for slot in self._slots:
            slot.process.join(timeout=max(deadline - time.monotonic(), 0))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            slot.conn.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _start(self) -> _Slot:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self.threads), daemon=True)
        process.start()
        child.close()
        return _Slot(process, parent)

    def _restart(self, slot: _Slot) -> None:
        slot.conn.close()
        fresh = self._start()
        slot.process, slot.conn = fresh.process, fresh.conn
        if self._problem is not None:
            slot.conn.send_bytes(self._problem)


def _serve(conn: Connection, threads: int) -> None:
    """A worker's life: pin threads, import the learners, then run jobs until told to stop."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import warnings

    warnings.simplefilter("ignore")
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    problem = None
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        if message[0] == "load":
            problem = message[1]
            continue
        _, function, args = message
        try:
            result = function(problem, *args)
        except Exception as exc:  # a configuration the data cannot support, and the like
            result = JobFailed(f"{type(exc).__name__}: {str(exc)[:300]}")
        conn.send_bytes(pickle.dumps(result, pickle.HIGHEST_PROTOCOL))
