"""Score a request: pick the variant, build the signature's frame, predict in a batch.

Both protocols (v2 and ``/invocations``, JSON or columnar) hand :meth:`Scorer.score` a
function turning their body into the rows a given model takes (checked column lists or
a frame); routing, limits,
batching, the timeout, shadow copies, metrics and the prediction log are shared.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl

from keelson.registry.model import LoadedModel, Prediction
from keelson.serve.batching import Inputs, MicroBatcher, Scoring
from keelson.serve.errors import ServeError
from keelson.serve.holder import ModelHolder
from keelson.serve.metrics import ServeMetrics
from keelson.serve.traffic import PRIMARY, SHADOW, Route, TrafficPolicy, Variant

logger = logging.getLogger(__name__)
InputsOf = Callable[[LoadedModel], Inputs]


@dataclass(frozen=True)
class Scored:
    """A request's answer: which variant and version produced which prediction, from
    which rows (``rows`` of the batch's ``frame``)."""

    request_id: str
    variant: Variant
    model: LoadedModel
    frame: pl.DataFrame
    rows: tuple[int, int]
    prediction: Prediction
    seconds: float

    def headers(self) -> dict[str, str]:
        """Which version and variant answered, and the request id."""
        headers = {"x-model-version": str(self.model.version), "x-model-variant": self.variant}
        if _header_safe(self.request_id):  # a body's id may hold any character
            headers["x-request-id"] = self.request_id
        return headers


ScoredListener = Callable[[Scored], None]


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    timeout_s: float = 10.0


class Scorer:
    """The deployment's variants behind both protocols."""

    def __init__(
        self,
        holders: dict[Variant, ModelHolder],
        batcher: MicroBatcher,
        metrics: ServeMetrics,
        policy: TrafficPolicy | None = None,
        limits: Limits | None = None,
        key_header: str = "x-request-key",
    ) -> None:
        self.holders = holders
        self.batcher = batcher
        self.metrics = metrics
        self.policy = policy or TrafficPolicy()
        self.limits = limits or Limits()
        self.key_header = key_header
        self.listeners: list[ScoredListener] = []
        self._shadows: set[asyncio.Task[None]] = set()

    @property
    def primary(self) -> LoadedModel:
        return self.holders[PRIMARY].model

    @property
    def ready(self) -> bool:
        return all(holder.ready for holder in self.holders.values())

    def model(self, name: str, version: str | None = None) -> LoadedModel:
        """The model a path names: the primary's name, any version being served (404)."""
        return self.holders[self._variant(name, version)].model

    async def score(
        self,
        inputs_of: InputsOf,
        name: str,
        version: str | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Scored:
        """Answer with the routed variant (or the named version); shadow a copy if asked."""
        if version is not None:
            route = Route(self._variant(name, version))
        else:
            self._variant(name, None)
            route = self.policy.route((headers or {}).get(self.key_header))
        request_id = request_id or str(uuid.uuid4())
        scored = await self._score(inputs_of, route.answer, request_id)
        if route.shadow is not None:
            self._shadow(inputs_of, route.shadow, request_id)
        return scored

    async def stop(self) -> None:
        """Let shadow copies finish (the batcher drains the rest)."""
        if self._shadows:
            await asyncio.wait(self._shadows, timeout=self.limits.timeout_s)

    def _variant(self, name: str, version: str | None) -> Variant:
        primary = self.primary
        if name != primary.name:
            raise ServeError(
                404,
                "model_not_found",
                f"model '{name}' not found; this server serves '{primary.name}'.",
            )
        if version is None:
            return PRIMARY
        for variant, holder in self.holders.items():
            if holder.ready and str(holder.model.version) == version:
                return variant
        served = sorted({str(h.model.version) for h in self.holders.values() if h.ready})
        raise ServeError(
            404,
            "model_not_found",
            f"model '{name}' has no version '{version}' here; this server serves {served}.",
        )

    async def _score(
        self,
        inputs_of: InputsOf,
        variant: Variant,
        request_id: str,
        label: Variant | None = None,
    ) -> Scored:
        """Score with ``variant``'s model; metrics and the log call it ``label`` (shadow)."""
        label = label or variant
        model = self.holders[variant].model  # taken once: a swap does not touch this request
        started = time.perf_counter()
        inputs = self._checked(inputs_of(model))
        try:
            scoring = await self._predict(model, inputs)
        except ServeError:
            self.metrics.observe_failure(label)
            raise
        seconds = time.perf_counter() - started
        scored = Scored(
            request_id, label, model, scoring.frame, scoring.rows, scoring.prediction, seconds
        )
        self.metrics.observe_prediction(label, scoring.prediction, seconds)
        for listener in self.listeners:
            listener(scored)
        return scored

    def _checked(self, inputs: Inputs) -> Inputs:
        if inputs.height > self.limits.max_rows:
            raise ServeError(
                413,
                "too_many_rows",
                f"the request has {inputs.height} rows; the limit is {self.limits.max_rows} rows "
                "per request. Split it into smaller batches.",
            )
        if inputs.height == 0:
            raise ServeError(422, "no_rows", "the request has no rows; send at least one.")
        return inputs

    async def _predict(self, model: LoadedModel, inputs: Inputs) -> Scoring:
        try:
            async with asyncio.timeout(self.limits.timeout_s):  # no task per request
                return await self.batcher.predict(model, inputs)
        except TimeoutError:
            raise ServeError(
                503,
                "timeout",
                f"no answer within {self.limits.timeout_s:g} s: the server is too busy; retry "
                "shortly.",
                retry_after=1,
            ) from None
        except ServeError:
            raise
        except Exception as exc:
            logger.exception("prediction failed for '%s' version %s", model.name, model.version)
            raise ServeError(
                500, "prediction_failed", "prediction failed; the server log has the details."
            ) from exc

    def _shadow(self, inputs_of: InputsOf, variant: Variant, request_id: str) -> None:
        async def copy() -> None:
            try:
                await self._score(inputs_of, variant, request_id, label=SHADOW)
            except Exception:  # a shadow copy never affects the answer
                logger.warning("the shadow copy of request %s failed", request_id)

        task = asyncio.get_running_loop().create_task(copy())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)


def _header_safe(value: str) -> bool:
    return len(value) <= 256 and value.isascii() and value.isprintable()
