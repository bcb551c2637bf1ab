"""The data-plane REST server for one loaded model: app factory and ``run_server``."""

from __future__ import annotations

import ipaddress
import sys

import uvicorn
from fastapi import FastAPI

from keelson import __version__
from keelson.registry.model import LoadedModel
from keelson.serve.errors import install_error_handlers
from keelson.serve.invocations import invocations_router
from keelson.serve.limits import BodySizeLimit
from keelson.serve.metrics import MetricsMiddleware, ServeMetrics, metrics_router
from keelson.serve.scoring import Scorer
from keelson.serve.v2 import v2_router

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000


def create_app(
    model: LoadedModel,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> FastAPI:
    """An ASGI app serving ``model`` over Open Inference v2 REST and MLflow ``/invocations``.

    Bodies over ``max_body_bytes`` get 413 before they are read; requests with more
    than ``max_rows`` rows get 413. ``GET /metrics`` is the Prometheus exposition.
    """
    _check_positive("max_body_bytes", max_body_bytes)
    _check_positive("max_rows", max_rows)
    metrics = ServeMetrics(model)
    scorer = Scorer(model, max_rows=max_rows, metrics=metrics)
    app = FastAPI(
        title=f"keelson: {model.name} version {model.version}",
        version=__version__,
        description="Open Inference Protocol v2 REST and MLflow-style /invocations.",
    )
    install_error_handlers(app, metrics)
    app.include_router(v2_router(scorer))
    app.include_router(invocations_router(scorer))
    app.include_router(metrics_router(metrics))
    app.add_middleware(
        BodySizeLimit,
        max_bytes=max_body_bytes,
        on_reject=lambda: metrics.count_error("body_too_large"),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every answer
    return app


def run_server(
    model: LoadedModel, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info"
) -> None:
    """Serve ``model`` with uvicorn until interrupted."""
    app = create_app(model)
    print(f"keelson: serving '{model.name}' version {model.version} at {url_of(host, port)}")
    if not is_loopback(host):
        print(
            f"keelson: warning: {host} is reachable from other machines and this server "
            "has no authentication; put it behind an authenticating proxy.",
            file=sys.stderr,
        )
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"The '{name}' parameter of create_app must be a positive int. Got {value!r} instead."
        )
