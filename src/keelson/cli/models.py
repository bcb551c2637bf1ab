"""``keelson models``: the registry's versions and aliases."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from keelson.cli.common import console, find_project, friendly, open_project_store

app = typer.Typer(help="List and inspect registered model versions.", no_args_is_help=True)
PROJECT = typer.Option(Path(), "--project", "-p", help="Project folder.")


@app.command("list")
@friendly
def list_(name: str | None = typer.Argument(None), project: Path = PROJECT) -> None:
    """Every model version, with its aliases and headline test metrics."""
    from keelson.registry import versions as registry

    store = open_project_store(find_project(project))
    table = Table()
    for column in ("name", "version", "aliases", "family", "test roc_auc", "created"):
        table.add_column(column)
    for version in registry.list_versions(store, name):
        aliases = [
            a for a, v in registry.aliases_of(store, version.name).items() if v == version.version
        ]
        auc = version.metrics.get("roc_auc", {}).get("value")
        table.add_row(
            version.name,
            str(version.version),
            ", ".join(aliases),
            version.family,
            f"{auc:.4f}" if auc is not None else "",
            f"{version.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@app.command()
@friendly
def show(
    ref: str = typer.Argument(..., help="NAME@ALIAS or NAME@VERSION"), project: Path = PROJECT
) -> None:
    """One model version in full: signature, metrics, lineage (JSON)."""
    from keelson.registry import versions as registry

    store = open_project_store(find_project(project))
    version = registry.resolve(store, registry.ModelRef.parse(ref))
    document = {
        "name": version.name,
        "version": version.version,
        "family": version.family,
        "threshold": version.threshold,
        "aliases": registry.aliases_of(store, version.name),
        "signature": version.signature,
        "metrics": version.metrics,
        "lineage": version.lineage,
        "keelson_version": version.keelson_version,
        "created_at": version.created_at.isoformat(),
    }
    console.print_json(json.dumps(document, default=str))
