"""Micro-batching: concurrent requests share model calls, each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from keelson.registry.model import LoadedModel
from keelson.serve.batching import MicroBatcher
from keelson.serve.errors import ServeError

from .helpers import ROWS, columns, in_process


class CountingPipeline:
    """The real fitted pipeline, counting the frames it is called with."""

    def __init__(self, pipeline: Any, burn_s: float = 0.0) -> None:
        self.pipeline = pipeline
        self.burn_s = burn_s
        self.calls: list[int] = []
        self.threads: list[str] = []
        self.classes_ = pipeline.classes_

    def predict_proba(self, frame: Any) -> Any:
        self.calls.append(frame.height)
        self.threads.append(threading.current_thread().name)
        started = time.thread_time()
        while time.thread_time() - started < self.burn_s:  # a slow model: CPU, not sleep
            pass
        if frame["age"].min() < 0:
            raise ValueError("a negative age")
        return self.pipeline.predict_proba(frame)

    def predict(self, frame: Any) -> Any:
        return self.pipeline.predict(frame)


def counting(model: LoadedModel, burn_s: float = 0.0) -> tuple[LoadedModel, CountingPipeline]:
    pipeline = CountingPipeline(model.pipeline, burn_s)
    return LoadedModel(model.name, model.version, pipeline, model.signature, None), pipeline


def frames(model: LoadedModel, count: int, every: int = 3) -> list[Any]:
    """Requests' rows: checked column lists (as JSON bodies give), every ``every``-th a frame
    (as Arrow and Parquet bodies give)."""
    return [
        model.signature.frame(rows) if i % every == every - 1 else model.signature.rows(rows)
        for i in range(count)
        for rows in [columns([ROWS[i % len(ROWS)]])]
    ]


async def predict_all(batcher: MicroBatcher, model: LoadedModel, parts: list[Any]) -> list[Any]:
    batcher.start()
    try:
        return await asyncio.gather(
            *(batcher.predict(model, part) for part in parts), return_exceptions=True
        )
    finally:
        await batcher.stop()


@pytest.mark.parametrize("every", [1, 3, 1000], ids=["frames", "mixed", "column-lists"])
def test_concurrent_requests_share_model_calls_and_get_their_own_rows(
    model: LoadedModel, every: int
) -> None:
    served, pipeline = counting(model)
    parts = frames(model, 40, every)

    answers = asyncio.run(predict_all(MicroBatcher(max_wait_s=0.005), served, parts))

    assert len(pipeline.calls) < 40 and sum(pipeline.calls) == 40
    for i, answer in enumerate(answers):
        expected = in_process(model, [ROWS[i % len(ROWS)]])
        np.testing.assert_allclose(
            answer.prediction.probabilities, expected.probabilities, atol=1e-12
        )
        assert answer.prediction.labels == expected.labels
        start, stop = answer.rows
        own = answer.frame.slice(start, stop - start)
        assert own.equals(model.signature.frame(columns([ROWS[i % len(ROWS)]])))


def test_a_batch_respects_its_row_limit(model: LoadedModel) -> None:
    served, pipeline = counting(model)

    asyncio.run(predict_all(MicroBatcher(max_rows=3), served, frames(model, 20)))

    assert max(pipeline.calls) <= 3 and sum(pipeline.calls) == 20


def test_a_lone_request_is_scored_alone(model: LoadedModel) -> None:
    served, pipeline = counting(model)

    asyncio.run(predict_all(MicroBatcher(), served, frames(model, 1)))

    assert pipeline.calls == [1]


def test_one_bad_request_does_not_fail_the_others(model: LoadedModel) -> None:
    served, _ = counting(model)
    parts = frames(model, 12)
    parts[5] = model.signature.frame(columns([{**ROWS[0], "age": -3}]))

    answers = asyncio.run(predict_all(MicroBatcher(max_wait_s=0.005), served, parts))

    assert isinstance(answers[5], ValueError)
    assert all(not isinstance(a, Exception) for i, a in enumerate(answers) if i != 5)


def test_a_full_queue_answers_503_with_retry_after(model: LoadedModel) -> None:
    async def overflow() -> list[Any]:
        batcher = MicroBatcher(max_queue=2)  # not started: nothing leaves the queue
        waiting = [asyncio.ensure_future(batcher.predict(model, p)) for p in frames(model, 2)]
        await asyncio.sleep(0)
        with pytest.raises(ServeError) as refused:
            await batcher.predict(model, frames(model, 1)[0])
        for task in waiting:
            task.cancel()
        return [refused.value]

    [error] = asyncio.run(overflow())
    assert error.status_code == 503 and error.headers == {"Retry-After": "1"}


def test_stop_finishes_what_is_queued_then_refuses_with_503(model: LoadedModel) -> None:
    async def stop_under_load() -> tuple[list[Any], ServeError]:
        batcher = MicroBatcher(max_wait_s=0.005)
        batcher.start()
        queued = [asyncio.ensure_future(batcher.predict(model, p)) for p in frames(model, 30)]
        await asyncio.sleep(0)  # every request is queued before the stop
        await batcher.stop()
        with pytest.raises(ServeError) as refused:
            await batcher.predict(model, frames(model, 1)[0])
        return [task.result() for task in queued], refused.value

    answers, refused = asyncio.run(stop_under_load())

    assert len(answers) == 30 and all(a.prediction.rows == 1 for a in answers)
    assert refused.status_code == 503 and refused.headers == {"Retry-After": "1"}


def test_a_batch_waits_only_while_requests_keep_arriving(model: LoadedModel) -> None:
    """Closed-loop clients: each sends its next request once answered. With every
    client's request queued, none is on its way, so a batch leaves at once: a batcher
    idling its whole ``max_wait_s`` (20 s here) would run into the 10 s bound."""
    served, pipeline = counting(model)
    parts = frames(model, 4)

    async def clients() -> None:
        batcher = MicroBatcher(max_wait_s=20.0)
        batcher.start()

        async def client(part: Any) -> None:
            for _ in range(5):
                await batcher.predict(served, part)

        try:
            await asyncio.wait_for(asyncio.gather(*map(client, parts)), timeout=10)
        finally:
            await batcher.stop()

    asyncio.run(clients())

    assert sum(pipeline.calls) == 20 and max(pipeline.calls) > 1


@pytest.mark.parametrize(("burn_s", "inline"), [(0.0, True), (0.06, False)], ids=["quick", "slow"])
def test_a_quick_model_is_called_on_the_event_loop_a_slow_one_on_the_predict_thread(
    model: LoadedModel, burn_s: float, inline: bool
) -> None:
    served, pipeline = counting(model, burn_s)
    parts = frames(model, 1)

    async def one_at_a_time() -> str:
        batcher = MicroBatcher(inline_s=0.05)
        batcher.start()
        try:
            for _ in range(4):
                await batcher.predict(served, parts[0])
        finally:
            await batcher.stop()
        return threading.current_thread().name

    loop_thread = asyncio.run(one_at_a_time())

    first, *later = pipeline.threads  # the first call is measured on the predict thread
    assert first.startswith("keelson-predict")
    assert later == ([loop_thread] * 3 if inline else [first] * 3)
