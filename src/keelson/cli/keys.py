"""``keelson keys``: API keys for ``keelson serve`` (create, list, revoke)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich import box
from rich.table import Table

from keelson.cli.common import console, errors, find_project, friendly, open_project_store

app = typer.Typer(help="API keys for keelson serve: create, list, revoke.", no_args_is_help=True)
PROJECT = typer.Option(Path(), "--project", "-p", help="Project folder.")


@app.command()
@friendly
def create(
    name: str = typer.Argument(..., help="A name for the key, e.g. the client that uses it."),
    scope: Literal["read", "predict", "admin"] = typer.Option(
        "predict", help="read: metadata and metrics; predict: read + inference; admin: all."
    ),
    rate: float | None = typer.Option(
        None, min=0.001, help="Requests/second for this key (default: the server's)."
    ),
    burst: int | None = typer.Option(None, min=1, help="Requests allowed at once (bucket size)."),
    project: Path = PROJECT,
) -> None:
    """Create a key and print it once: only its hash is stored.

    The key alone goes to stdout, so KEY=$(keelson keys create ci) works; notes go to stderr.
    """
    from keelson.security.keys import create_key

    store = open_project_store(find_project(project))
    try:
        info, plaintext = create_key(store, name, scope, rate=rate, burst=burst)
    finally:
        store.close()
    errors.print(
        f"Created API key '{info.name}' (id {info.id}, scope {info.scope}). "
        "[yellow]Store it now: keelson keeps only its hash and cannot show it again.[/]",
        highlight=False,
        soft_wrap=True,
    )
    print(plaintext)


@app.command("list")
@friendly
def list_(
    show_all: bool = typer.Option(False, "--all", help="Include revoked keys."),
    project: Path = PROJECT,
) -> None:
    """The keys (never their secrets): id, name, scope, rate limit, dates."""
    from keelson.security.keys import list_keys

    store = open_project_store(find_project(project))
    try:
        keys = list_keys(store, include_revoked=show_all)
    finally:
        store.close()
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    columns = ["id", "name", "scope", "rate/s", "burst", "created"]
    for column in [*columns, "revoked"] if show_all else columns:
        table.add_column(column, no_wrap=column in ("id", "created", "revoked"))
    for key in keys:
        cells = [
            key.id,
            key.name,
            key.scope,
            "default" if key.rate is None else f"{key.rate:g}",
            "default" if key.burst is None else str(key.burst),
            f"{key.created_at:%Y-%m-%d %H:%M}",
        ]
        if show_all:
            cells.append(f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "")
        table.add_row(*cells)
    console.print(table)


@app.command()
@friendly
def revoke(
    name: str = typer.Argument(..., help="The key's name or id."),
    project: Path = PROJECT,
) -> None:
    """Revoke a key; running servers refuse it from their next key refresh."""
    from keelson.security.keys import revoke_key

    store = open_project_store(find_project(project))
    try:
        info = revoke_key(store, name)
    finally:
        store.close()
    console.print(f"Revoked API key '{info.name}' (id {info.id}).", highlight=False)
