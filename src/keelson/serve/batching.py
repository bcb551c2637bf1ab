"""Adaptive micro-batching: concurrent requests for one model version, one model call.

A pipeline call costs mostly per call, not per row (the column transformer, the
estimator's set-up), so rows of concurrent requests are scored together. Each batch
takes every request queued while the previous one ran; only when traffic is concurrent
(the last batch held several requests) does it take more while they keep arriving, up
to ``max_wait_s``. A lone caller therefore never waits, and a full queue answers 503
with ``Retry-After`` instead of growing.

A batch is scored on the predict thread (one per process), so the event loop goes on
reading requests, unless the same model scored a batch of its size in under
``inline_s`` last time: then on the event loop itself. Handing a call to a thread and
back costs both threads the GIL in turn, more than a sub-millisecond call blocks the
loop (a small LightGBM answers 40 % more requests per second that way).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from keelson.registry.model import LoadedModel, Prediction
from keelson.registry.signature import Rows
from keelson.serve.errors import ServeError

logger = logging.getLogger(__name__)


ModelKey = tuple[str, int, str]
Inputs = Rows | pl.DataFrame
"""A request's rows: checked column lists (JSON bodies) or a frame (columnar bodies)."""


@dataclass(frozen=True)
class Scoring:
    """A request's share of a batch: its prediction, and its rows as the model saw them:
    ``rows`` (start, stop) of the batch's ``frame`` (not sliced: only the log reads them)."""

    prediction: Prediction
    frame: pl.DataFrame
    rows: tuple[int, int]


@dataclass(frozen=True)
class _Job:
    model: LoadedModel
    inputs: Inputs
    future: asyncio.Future[Scoring]


class MicroBatcher:
    """Queue requests' frames and predict them in batches on one thread."""

    def __init__(
        self,
        max_rows: int = 2000,
        max_wait_s: float = 0.002,
        max_queue: int = 512,
        on_batch: Callable[[int], None] | None = None,
        inline_s: float = 0.001,
    ) -> None:
        self.max_rows = max_rows
        self.on_batch = on_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.inline_s = inline_s
        self._took: dict[tuple[ModelKey, int], float] = {}  # seconds, by model and rows
        self._queue: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._concurrent = False
        self._stopping = False

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="keelson-predict")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="keelson-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop the thread; later requests get a 503."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def predict(self, model: LoadedModel, inputs: Inputs) -> Scoring:
        """``model``'s prediction for ``inputs``, scored with whatever else is queued."""
        if self._stopping:
            raise ServeError(
                503, "shutting_down", "the server is shutting down; retry shortly.", retry_after=1
            )
        if len(self._queue) >= self.max_queue:
            raise ServeError(
                503,
                "overloaded",
                f"the server has {len(self._queue)} requests waiting, its limit; retry shortly.",
                retry_after=1,
            )
        future: asyncio.Future[Scoring] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(model, inputs, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while self._queue or not self._stopping:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                try:
                    await self._next_batch()
                except asyncio.CancelledError:
                    raise
                except Exception:  # never leave the queue without a consumer
                    logger.exception("the batcher failed; going on with the next batch")

    async def _next_batch(self) -> None:
        batch = self._take([])
        if self._concurrent and self.max_wait_s > 0:
            batch = await self._gather(batch)
        self._concurrent = len(batch) > 1
        await self._score(batch)

    async def _gather(self, batch: list[_Job]) -> list[_Job]:
        """Add requests while they keep arriving, for ``max_wait_s`` at most. A request
        reaches the queue a loop pass or two after its bytes arrive, so two passes that
        bring none mean none is on its way: waiting longer would only idle."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        quiet = 0
        while quiet < 2 and _rows(batch) < self.max_rows and loop.time() < deadline:
            await asyncio.sleep(0)
            before = len(batch)
            batch = self._take(batch)
            quiet = 0 if len(batch) > before else quiet + 1
        return batch

    def _take(self, batch: list[_Job]) -> list[_Job]:
        """Add queued jobs of the batch's model while the rows fit (always at least one)."""
        rows = _rows(batch)
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # the caller gave up (timeout, disconnect)
                self._queue.popleft()
                continue
            same_model = not batch or job.model is batch[0].model
            if not same_model or (batch and rows + job.inputs.height > self.max_rows):
                break
            batch.append(self._queue.popleft())
            rows += job.inputs.height
        return batch

    async def _score(self, batch: list[_Job]) -> None:
        if not batch:
            return
        loop = asyncio.get_running_loop()
        if self.on_batch is not None:
            self.on_batch(len(batch))
        model, inputs = batch[0].model, [job.inputs for job in batch]
        size = (_key(model), _rows(batch).bit_length())  # rows within a factor of two
        if len(self._took) > 512:  # models swapped many times: forget the old ones
            self._took.clear()
        try:  # the frame is built where the model is called
            if self._took.get(size, math.inf) < self.inline_s:
                frame, prediction, self._took[size] = _timed_predict(model, inputs)
            else:
                frame, prediction, self._took[size] = await loop.run_in_executor(
                    self._executor, _timed_predict, model, inputs
                )
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, error=exc)
                return
            for job in batch:  # one bad request must not fail the others
                await self._score([job])
            return
        start = 0
        for job in batch:
            stop = start + job.inputs.height
            _settle(job.future, Scoring(prediction.part(start, stop), frame, (start, stop)))
            start = stop


def _timed_predict(
    model: LoadedModel, inputs: list[Inputs]
) -> tuple[pl.DataFrame, Prediction, float]:
    """One frame of the batch's rows (built once when they all came as lists), predicted,
    and the CPU seconds it took this thread (not the time it waited for the GIL)."""
    started = time.thread_time()
    rows = [part for part in inputs if isinstance(part, Rows)]
    if len(rows) == len(inputs):
        frame = Rows.joined(rows).frame()
    else:
        frames = [part.frame() if isinstance(part, Rows) else part for part in inputs]
        frame = frames[0] if len(frames) == 1 else pl.concat(frames)
    prediction = model.predict(frame)
    return frame, prediction, time.thread_time() - started


def _key(model: LoadedModel) -> ModelKey:
    return model.name, model.version, model.runtime


def _rows(batch: list[_Job]) -> int:
    return sum(job.inputs.height for job in batch)


def _settle(
    future: asyncio.Future[Scoring],
    result: Scoring | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
