"""Adaptive micro-batching: concurrent requests for one model version, one model call.

A pipeline call costs mostly per call, not per row (the column transformer, the
estimator's set-up), so rows of concurrent requests are scored together. One predict
thread per process takes every request queued while the previous batch ran; only when
traffic is concurrent (the last batch held several requests) does it wait up to
``max_wait_s`` for more. A lone caller therefore never waits, and a full queue answers
503 with ``Retry-After`` instead of growing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from keelson.registry.model import LoadedModel, Prediction
from keelson.serve.errors import ServeError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    model: LoadedModel
    frame: pl.DataFrame
    future: asyncio.Future[Prediction]


class MicroBatcher:
    """Queue requests' frames and predict them in batches on one thread."""

    def __init__(
        self,
        max_rows: int = 2000,
        max_wait_s: float = 0.002,
        max_queue: int = 512,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.max_rows = max_rows
        self.on_batch = on_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queue: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._concurrent = False

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="keelson-predict")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="keelson-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop the thread."""
        while self._queue:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def predict(self, model: LoadedModel, frame: pl.DataFrame) -> Prediction:
        """``model``'s prediction for ``frame``, scored with whatever else is queued."""
        if len(self._queue) >= self.max_queue:
            raise ServeError(
                503,
                "overloaded",
                f"the server has {len(self._queue)} requests waiting, its limit; retry shortly.",
                retry_after=1,
            )
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(model, frame, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
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
        if self._concurrent and self.max_wait_s > 0 and _rows(batch) < self.max_rows:
            await asyncio.sleep(self.max_wait_s)
            batch = self._take(batch)
        self._concurrent = len(batch) > 1
        await self._score(batch)

    def _take(self, batch: list[_Job]) -> list[_Job]:
        """Add queued jobs of the batch's model while the rows fit (always at least one)."""
        rows = _rows(batch)
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # the caller gave up (timeout, disconnect)
                self._queue.popleft()
                continue
            same_model = not batch or job.model is batch[0].model
            if not same_model or (batch and rows + job.frame.height > self.max_rows):
                break
            batch.append(self._queue.popleft())
            rows += job.frame.height
        return batch

    async def _score(self, batch: list[_Job]) -> None:
        if not batch:
            return
        loop = asyncio.get_running_loop()
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            frame = batch[0].frame if len(batch) == 1 else pl.concat([j.frame for j in batch])
            predict = batch[0].model.predict
            prediction = await loop.run_in_executor(self._executor, predict, frame)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, error=exc)
                return
            for job in batch:  # one bad request must not fail the others
                await self._score([job])
            return
        start = 0
        for job in batch:
            stop = start + job.frame.height
            _settle(job.future, prediction.part(start, stop))
            start = stop


def _rows(batch: list[_Job]) -> int:
    return sum(job.frame.height for job in batch)


def _settle(
    future: asyncio.Future[Prediction],
    result: Prediction | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
