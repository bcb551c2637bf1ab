"""Project administration: ``keelson init``, ``keelson db upgrade``, ``keelson spec schema``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from keelson.cli.common import console, fail, find_project, friendly

db = typer.Typer(help="The metadata store's schema.", no_args_is_help=True)
spec = typer.Typer(help="The keelson.yaml format.", no_args_is_help=True)

SCAFFOLD = """\
# keelson project. Every key: `keelson spec schema`.
name: {name}

sources:
  table:
    kind: csv                  # csv | parquet | json | jsonl | sql
    path: data/table.csv

contracts:
  table:
    max_quarantine_share: 0.05 # fail the run if more rows than this break a rule
    columns:
      label: {{type: str, nullable: false}}

target:
  column: label
  task: auto                   # auto | binary | multiclass | regression
  positive: "yes"              # binary only

split:
  method: auto                 # auto | stratified | random | time | group
  test: 0.2                    # the untouched test set; 0 keeps none

train:
  candidates: [linear, hist_gradient_boosting, lightgbm, random_forest, extra_trees]
  budget: {{seconds: 60}}      # wall clock for the whole run

registry:
  name: {name}
  alias: production
"""


@friendly
def init(directory: Path = typer.Argument(..., help="Folder to create the project in.")) -> None:
    """Scaffold a project: keelson.yaml, data/, and a .gitignore for the local store."""
    spec_file = directory / "keelson.yaml"
    if spec_file.exists():
        raise fail(f"{spec_file} already exists; not overwriting it.")
    name = "".join(
        c if c.isalnum() or c in "-_." else "-" for c in directory.resolve().name.lower()
    )
    (directory / "data").mkdir(parents=True, exist_ok=True)
    spec_file.write_text(SCAFFOLD.format(name=name.strip("-._") or "project"), encoding="utf-8")
    (directory / ".gitignore").write_text(".keelson/\n", encoding="utf-8")
    console.print(
        f"Created {spec_file}. Put your table in {directory / 'data'} "
        f"and run `keelson run {directory}`."
    )


@db.command()
@friendly
def upgrade(
    project: Path = typer.Option(Path(), "--project", "-p", help="Project folder."),
) -> None:
    """Migrate the metadata store to this keelson's schema (under a lock)."""
    from keelson.cli.common import open_project_store
    from keelson.store.database import upgrade as migrate

    store = open_project_store(find_project(project), check_schema=False)
    try:
        before, after = migrate(store.engine)
    finally:
        store.close()
    console.print(f"Store schema: {before or 'empty'} → {after}.")


@spec.command()
@friendly
def schema() -> None:
    """Print the JSON Schema of keelson.yaml (for editor completion)."""
    from keelson.spec import json_schema

    print(json.dumps(json_schema(), indent=2))


@spec.command()
@friendly
def check(project: Path = typer.Argument(Path(), help="Project folder or spec file.")) -> None:
    """Validate keelson.yaml without running anything."""
    from keelson.spec import load_spec

    loaded = load_spec(find_project(project) if project.is_dir() else project)
    console.print(f"{loaded.name}: spec is valid ({len(loaded.sources)} sources).")
