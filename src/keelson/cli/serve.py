"""``keelson serve``: the REST server for one model version."""

from __future__ import annotations

from pathlib import Path

import typer

from keelson.cli.common import fail, find_project, friendly, open_project_store


@friendly
def serve(
    ref: str = typer.Argument(
        ..., help="NAME@ALIAS or NAME@VERSION, e.g. bank-marketing@production"
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind; loopback by default."),
    port: int = typer.Option(8080, min=1, max=65535),
    project: Path = typer.Option(Path(), "--project", "-p", help="Project folder."),
) -> None:
    """Serve a model over the Open Inference Protocol v2 and MLflow-style /invocations."""
    from keelson.serve.threads import pin_environment, single_threaded

    pin_environment()
    from keelson.registry import versions as registry
    from keelson.serve.app import is_loopback, run_server

    if not is_loopback(host):
        raise fail(
            f"refusing to bind {host}: serving beyond loopback needs authentication, "
            "which this version does not provide yet. Use --host 127.0.0.1 behind a proxy."
        )
    store = open_project_store(find_project(project))
    try:
        model = registry.load(store, ref)
    finally:
        store.close()
    single_threaded(model.pipeline)
    run_server(model, host=host, port=port)
