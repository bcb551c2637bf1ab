"""``keelson serve`` as uvicorn runs it: one app per worker process, built from the
deployment written to the environment (worker processes are spawned, not forked).

Each worker pins its intra-op threads to one, follows the aliases itself and scores on
its own predict thread; uvicorn spreads connections over the workers.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from keelson.serve.threads import pin_environment
from keelson.spec import Serve
from keelson.store.store import StoreLocation

DEPLOYMENT_VARIABLE = "KEELSON_SERVE_DEPLOYMENT"
GRACEFUL_SHUTDOWN_S = 30


def deployment_of(
    location: StoreLocation,
    settings: Serve,
    model: str,
    log_url: str | None,
    shared_buckets: str | None = None,
) -> dict[str, Any]:
    """What every worker needs to build the same app: the store, the settings, the log,
    the file of the rate-limit buckets they share."""
    return {
        "store": {"url": location.url, "artifacts": location.artifacts},
        "model": model,
        "settings": settings.model_dump(mode="json"),
        "log_url": log_url,
        "shared_buckets": shared_buckets,
    }


def needs_keys(settings: Serve) -> bool:
    """API keys unless told otherwise: ``auto`` waives them on loopback only."""
    from keelson.net import is_loopback

    return settings.auth == "keys" or (settings.auth == "auto" and not is_loopback(settings.host))


def app_from_environment() -> FastAPI:
    """The uvicorn factory: the app of the deployment in ``KEELSON_SERVE_DEPLOYMENT``."""
    pin_environment()
    from keelson.serve.app import Deployment, create_app
    from keelson.serve.holder import StoreSource
    from keelson.serve.traffic import CHALLENGER, PRIMARY

    described = json.loads(os.environ[DEPLOYMENT_VARIABLE])
    location, settings = StoreLocation(**described["store"]), Serve(**described["settings"])
    follow = {PRIMARY: StoreSource(location, described["model"])}
    if settings.traffic.policy != "none" and settings.traffic.challenger:
        follow[CHALLENGER] = StoreSource(location, settings.traffic.challenger)
    keyring, key_store = None, None
    if needs_keys(settings):
        from keelson.security.keys import KeyRing
        from keelson.store.store import open_store

        key_store = open_store(location)
        keyring = KeyRing.load(key_store)
    deployment = Deployment(
        follow=follow,
        settings=settings,
        keyring=keyring,
        key_store=key_store,
        log_url=described["log_url"],
        shared_buckets=described.get("shared_buckets"),
    )
    return create_app(deployment=deployment)


def run(
    location: StoreLocation,
    settings: Serve,
    model: str,
    log_url: str | None,
    log_level: str = "info",
) -> None:
    """Serve until interrupted; SIGTERM drains requests in flight, then flushes and exits."""
    pin_environment()
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with _scratch(settings.workers) as scratch:  # removed when the server stops
        buckets = str(Path(scratch) / "rate-limits.sqlite") if scratch else None
        described = deployment_of(location, settings, model, log_url, buckets)
        os.environ[DEPLOYMENT_VARIABLE] = json.dumps(described)
        _serve(settings, model, log_level)


def _scratch(workers: int) -> AbstractContextManager[str | None]:
    """A private folder for what the worker processes share (none for one process)."""
    return tempfile.TemporaryDirectory(prefix="keelson-serve-") if workers > 1 else nullcontext()


def _serve(settings: Serve, model: str, log_level: str) -> None:
    import uvicorn

    scheme = "https" if settings.tls_certfile else "http"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(
        f"keelson: serving {model} at {scheme}://{host}:{settings.port} "
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''}, "
        f"{'API keys' if needs_keys(settings) else 'no auth'})",
        file=sys.stderr,
    )
    uvicorn.run(
        "keelson.serve.run:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
        log_config=_log_config(log_level),
        access_log=False,
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with keelson's own messages (what was loaded, compiled, swapped)
    on the same handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["keelson"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def _exit_cleanly(signum: int, frame: object) -> None:
    """SIGTERM is the orderly way to stop a server: uvicorn drains, then re-raises it;
    exit 0 then (as with ``--workers``) instead of dying of the signal."""
    raise SystemExit(0)
