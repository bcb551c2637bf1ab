"""``keelson serve``: the REST server for a model alias, from the spec's ``serve`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keelson.cli.common import fail, find_project, friendly
from keelson.spec import Serve


@friendly
def serve(
    ref: str | None = typer.Argument(
        None, help="NAME@ALIAS to follow, or NAME@VERSION; default: serve.model in the spec."
    ),
    host: str | None = typer.Option(None, help="Address to bind; loopback by default."),
    port: int | None = typer.Option(None, min=1, max=65535),
    workers: int | None = typer.Option(None, min=1, max=64, help="Server processes."),
    batch_wait_ms: float | None = typer.Option(
        None, min=0.0, help="Under concurrent load, batch arriving requests for this long at most."
    ),
    compiled: bool | None = typer.Option(
        None, help="Tree ensembles by ONNX Runtime where exact (serve.compiled; default on)."
    ),
    allow_public_without_auth: bool = typer.Option(
        False, help="Bind beyond loopback with auth 'none' (behind your own gateway)."
    ),
    tls_certfile: Path | None = typer.Option(None, help="TLS certificate (PEM)."),
    tls_keyfile: Path | None = typer.Option(None, help="TLS private key (PEM)."),
    project: Path = typer.Option(Path(), "--project", "-p", help="Project folder."),
) -> None:
    """Serve a model over the Open Inference Protocol v2 and MLflow-style /invocations,
    following its alias: when the alias moves, the new version is swapped in without
    downtime."""
    from keelson.serve.threads import pin_environment

    pin_environment()
    from keelson.net import is_loopback
    from keelson.serve.run import run
    from keelson.spec import load_spec
    from keelson.store.store import locate

    folder = find_project(project)
    spec = load_spec(folder)
    settings = _settings(
        spec.serve,
        host=host,
        port=port,
        workers=workers,
        tls_certfile=str(tls_certfile) if tls_certfile else None,
        tls_keyfile=str(tls_keyfile) if tls_keyfile else None,
        allow_public_without_auth=allow_public_without_auth or None,
        batching={"max_wait_ms": batch_wait_ms} if batch_wait_ms is not None else None,
        compiled=compiled,
    )
    public = not is_loopback(settings.host)
    if public and settings.auth == "none" and not settings.allow_public_without_auth:
        raise fail(
            f"refusing to bind {settings.host} without authentication. Create API keys "
            "(`keelson keys create NAME --scope predict`) and keep serve.auth at auto or keys, "
            "or pass --allow-public-without-auth behind your own authenticating gateway."
        )
    model = ref or settings.model or _default_ref(spec.registry.name, spec.registry.alias)
    run(locate(folder, spec.store), settings, model, _log_url(folder, settings))


def _log_url(folder: Path, settings: Serve) -> str | None:
    log = settings.prediction_log
    if not log.enabled:
        return None
    if log.path is None:
        return str(folder.resolve() / ".keelson" / "predictions")
    return log.path if "://" in log.path else str((folder / log.path).resolve())


def _settings(configured: Serve, **overrides: Any) -> Serve:
    """The spec's serve section with the options given on the command line (validated)."""
    settings = configured.model_dump()
    for key, value in overrides.items():
        if isinstance(value, dict):
            settings[key] = settings[key] | value
        elif value is not None:
            settings[key] = value
    return Serve.model_validate(settings)


def _default_ref(name: str, alias: str | None) -> str:
    return f"{name}@{alias}" if alias else name
