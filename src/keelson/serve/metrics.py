"""Prometheus metrics of one served model, in a registry of its own.

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so several apps
in one process (tests, a router keeping versions hot) never clash.
"""

from __future__ import annotations

import collections
import time
from typing import Any, get_args

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keelson.registry.model import LoadedModel, Prediction, Runtime

RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeMetrics:
    """Requests by endpoint and status, latency, errors by reason; per variant: the version
    served, answers, failures, scoring latency and what was predicted; batching."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.requests = Counter(
            "keelson_requests",
            "HTTP requests answered, by route template and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "keelson_request_duration_seconds",
            "Time from receiving a request to finishing its response, by route template.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "keelson_rows_predicted",
            "Rows scored, by variant.",
            ["variant"],
            registry=self.registry,
        )
        self.errors = Counter(
            "keelson_errors", "Error responses, by reason code.", ["reason"], registry=self.registry
        )
        self.version = Gauge(
            "keelson_model_version",
            "The model version each variant serves.",
            ["variant", "name"],
            registry=self.registry,
        )
        self.runtime = Gauge(
            "keelson_model_runtime",
            "1 for what answers each variant's model: scikit-learn (the pipeline as trained) "
            "or onnxruntime (its tree ensembles compiled), 0 for the other.",
            ["variant", "runtime"],
            registry=self.registry,
        )
        self.scored = Counter(
            "keelson_variant_requests",
            "Requests scored by each variant (primary, challenger, shadow), by outcome.",
            ["variant", "outcome"],
            registry=self.registry,
        )
        self.scoring = Histogram(
            "keelson_variant_scoring_seconds",
            "Time to score a request (queue and model), by variant.",
            ["variant"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.labels = Counter(
            "keelson_predicted_labels",
            "Rows predicted per label, by variant (classifiers).",
            ["variant", "label"],
            registry=self.registry,
        )
        self.value_sum = Gauge(
            "keelson_predicted_value_sum",
            "Sum of predicted values, by variant (regressors); over rows predicted: the mean.",
            ["variant"],
            registry=self.registry,
        )
        self.batch = Histogram(
            "keelson_batch_requests",
            "Requests scored together in one model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self._child(self.requests, endpoint, str(status)).inc()
        self._child(self.latency, endpoint).observe(seconds)

    def observe_prediction(self, variant: str, prediction: Prediction, seconds: float) -> None:
        self._child(self.scored, variant, "ok").inc()
        self._child(self.scoring, variant).observe(seconds)
        self._child(self.rows, variant).inc(prediction.rows)
        if prediction.values is not None:
            self._child(self.value_sum, variant).inc(float(prediction.values.sum()))
            return
        for name, count in collections.Counter(prediction.labels).items():
            self._child(self.labels, variant, name).inc(count)

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, kept: the lookup costs five times the increment."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_failure(self, variant: str) -> None:
        self._child(self.scored, variant, "error").inc()

    def serving(self, variant: str, model: LoadedModel) -> None:
        self.version.labels(variant=variant, name=model.name).set(model.version)
        for runtime in RUNTIMES:
            self.runtime.labels(variant=variant, runtime=runtime).set(model.runtime == runtime)

    def count_error(self, reason: str) -> None:
        self.errors.labels(reason=reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request and counting it by route and status."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before responding

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.metrics.observe_request(_endpoint(scope), status, time.perf_counter() - started)


def _endpoint(scope: Scope) -> str:
    """The route template (``/v2/models/{name}/infer``), never the raw path: bounded labels."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


def metrics_router(metrics: ServeMetrics) -> APIRouter:
    router = APIRouter(tags=["monitoring"])

    @router.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
