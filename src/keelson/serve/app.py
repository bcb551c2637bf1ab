"""The data-plane REST server: the app factory and ``run_server``.

One app serves a deployment: the primary model (and, with a traffic policy, a
challenger), each either given loaded or followed through a registry alias. Requests
are scored in micro-batches on one predict thread; readiness stays false until every
variant is loaded and warmed.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI

from keelson import __version__
from keelson.registry.model import LoadedModel
from keelson.security.keys import KeyRing, keep_fresh
from keelson.serve.auth import ApiKeyAuth, route_scope
from keelson.serve.batching import MicroBatcher
from keelson.serve.errors import install_error_handlers
from keelson.serve.fastpath import FastPath
from keelson.serve.holder import ModelHolder, StoreSource
from keelson.serve.invocations import invocations_router
from keelson.serve.limits import BodySizeLimit
from keelson.serve.logs import Logs
from keelson.serve.metrics import MetricsMiddleware, ServeMetrics, metrics_router
from keelson.serve.ratelimit import RateLimit, SharedTokenBuckets
from keelson.serve.scoring import Limits, Scorer
from keelson.serve.traffic import CHALLENGER, PRIMARY, TrafficPolicy, Variant
from keelson.serve.v2 import v2_router
from keelson.spec import Serve
from keelson.store.store import Store


@dataclass(frozen=True)
class Deployment:
    """What one server answers with (loaded models, or store aliases to follow), who may
    call it (a key ring, refreshed from ``key_store``; None: no auth), where its
    predictions are logged (None: not logged) and the file its worker processes share
    their rate-limit buckets in (None: one process, buckets in memory)."""

    models: dict[Variant, LoadedModel] = field(default_factory=dict)
    follow: dict[Variant, StoreSource] = field(default_factory=dict)
    settings: Serve = field(default_factory=Serve)
    keyring: KeyRing | None = None
    key_store: Store | None = None
    log_url: str | None = None
    shared_buckets: str | None = None

    @property
    def variants(self) -> list[Variant]:
        return list(dict.fromkeys([*self.models, *self.follow]))


def create_app(model: LoadedModel | None = None, deployment: Deployment | None = None) -> FastAPI:
    """An ASGI app serving ``model`` (or a whole ``deployment``) over Open Inference v2
    REST and MLflow ``/invocations``, with ``GET /metrics`` for Prometheus."""
    deployment = deployment or Deployment(models={PRIMARY: model} if model else {})
    if PRIMARY not in deployment.variants:
        raise ValueError("a deployment needs a primary model, loaded or followed")
    settings = deployment.settings
    metrics = ServeMetrics()
    holders = {
        variant: _holder(variant, metrics, settings.compiled) for variant in deployment.variants
    }
    for variant, loaded in deployment.models.items():
        holders[variant].set(loaded)
    policy = TrafficPolicy(
        settings.traffic.policy if CHALLENGER in holders else "none", settings.traffic.percent
    )
    batcher = MicroBatcher(
        settings.batching.max_rows,
        settings.batching.max_wait_ms / 1000,
        settings.max_queue,
        on_batch=metrics.batch.observe,
        inline_s=settings.batching.inline_ms / 1000,
    )
    scorer = Scorer(
        holders,
        batcher,
        metrics,
        policy,
        Limits(settings.max_rows, settings.timeout_seconds),
        settings.traffic.key_header,
    )
    logs = Logs.open(deployment.log_url, settings) if deployment.log_url else None
    app = FastAPI(
        title="keelson model server",
        version=__version__,
        description="Open Inference Protocol v2 REST and MLflow-style /invocations.",
        lifespan=_lifespan(scorer, deployment, logs),
        # Metrics are Prometheus (/metrics); FastAPI's OpenTelemetry probe would cost
        # every request ~15 us even with no provider configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app, metrics)
    scoring = [v2_router(scorer), invocations_router(scorer)]
    for router in [*scoring, metrics_router(metrics)]:
        app.include_router(router)
    if logs is not None:
        logs.attach(app, scorer, metrics)
    app.add_middleware(FastPath, routers=scoring, metrics=metrics)
    _protect(app, deployment, metrics)
    return app


def _protect(app: FastAPI, deployment: Deployment, metrics: ServeMetrics) -> None:
    """Middlewares around the fast path, innermost first: body size, rate limit, API keys,
    then metrics."""
    settings = deployment.settings
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        on_reject=lambda: metrics.count_error("body_too_large"),
    )
    limit = settings.rate_limit
    if limit is not None or deployment.keyring is not None:  # keys may carry their own rate
        app.add_middleware(
            RateLimit,
            rate=limit.per_second if limit else None,
            burst=limit.burst if limit else None,
            buckets=SharedTokenBuckets(deployment.shared_buckets)
            if deployment.shared_buckets
            else None,
            exempt=lambda scope: route_scope(scope) is None,
            on_reject=metrics.count_error,
        )
    if deployment.keyring is not None:  # outside the limit: buckets are per key
        app.add_middleware(ApiKeyAuth, keyring=deployment.keyring, on_reject=metrics.count_error)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every answer


def _holder(variant: Variant, metrics: ServeMetrics, compiled: bool) -> ModelHolder:
    holder = ModelHolder(compiled)
    holder.on_swap.append(lambda model: metrics.serving(variant, model))
    holder.on_swap.append(_spare_from_collector)
    return holder


def _spare_from_collector(model: LoadedModel) -> None:
    """Move every object alive now (the libraries, the model just loaded) out of the
    cyclic garbage collector's reach. A full collection otherwise walks them all: 200-300 ms
    pauses every few seconds under load, the whole p99, on a 2-core machine. Reference
    counting still frees a frozen object; only a cycle among them would stay."""
    gc.freeze()


def _lifespan(
    scorer: Scorer, deployment: Deployment, logs: Logs | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scorer.batcher.start()
        for variant, source in deployment.follow.items():  # no connection before: each
            await scorer.holders[variant].check(source)  # worker is ready when it accepts
        every = deployment.settings.follow_seconds
        background = [
            asyncio.create_task(scorer.holders[variant].follow(source, every))
            for variant, source in deployment.follow.items()
        ]
        if deployment.keyring is not None and deployment.key_store is not None:
            background.append(
                asyncio.create_task(keep_fresh(deployment.keyring, deployment.key_store, every))
            )
        try:
            yield
        finally:  # uvicorn has stopped accepting and drained the requests in flight
            for task in background:
                task.cancel()
            await scorer.stop()
            await scorer.batcher.stop()
            if logs is not None:
                await asyncio.to_thread(logs.close)

    return lifespan
