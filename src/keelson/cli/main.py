"""The ``keelson`` command: one thin module per command group."""

from __future__ import annotations

import typer

from keelson import __version__
from keelson.cli import admin, data, keys, models, package, serve, train, worker

app = typer.Typer(
    name="keelson",
    help="One tool and one spec for the whole life of a tabular model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(train.run)
app.command()(serve.serve)
app.command()(package.package)
app.command()(worker.worker)
app.command()(admin.init)
app.command()(data.explain)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(admin.db, name="db")
app.add_typer(admin.spec, name="spec")
app.add_typer(keys.app, name="keys")


def _version(value: bool) -> None:
    if value:
        print(f"keelson {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """One tool and one spec for the whole life of a tabular model."""
