"""``keelson data``: dataset versions, lineage, diffs, profiles and proposed contracts."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from keelson.cli.common import console, find_project, friendly, open_project_store

app = typer.Typer(
    help="Dataset versions, lineage, diffs, profiles, contracts.", no_args_is_help=True
)
PROJECT = typer.Option(Path(), "--project", "-p", help="Project folder.")


@app.command("log")
@friendly
def log(project: Path = PROJECT, limit: int = typer.Option(20, min=1)) -> None:
    """Dataset versions, newest first."""
    from keelson.data.versions import list_versions
    from keelson.spec import load_spec

    folder = find_project(project)
    store = open_project_store(folder)
    table = Table()
    for column in ("version", "created", "rows", "columns", "run"):
        table.add_column(column)
    for version in list_versions(store, load_spec(folder).name, limit):
        table.add_row(
            version.id,
            f"{version.created_at:%Y-%m-%d %H:%M}",
            str(version.rows),
            str(version.columns),
            (version.run_id or "")[:12],
        )
    console.print(table)


@app.command()
@friendly
def show(
    ref: str = typer.Argument("latest", help="Version id, prefix, or latest."),
    project: Path = PROJECT,
) -> None:
    """One dataset version: schema and lineage (JSON)."""
    from keelson.data.versions import get_version, lineage
    from keelson.spec import load_spec

    folder = find_project(project)
    store = open_project_store(folder)
    version = get_version(store, ref, project=load_spec(folder).name)
    document = {
        "version": version.id,
        "content_hash": version.content_hash,
        "rows": version.rows,
        "columns": version.columns,
        "schema": version.schema,
        "lineage": lineage(store, version.id),
        "created_at": version.created_at.isoformat(),
    }
    console.print_json(json.dumps(document, default=str))


@app.command()
@friendly
def diff(
    old: str = typer.Argument(..., help="Older version (id or prefix)."),
    new: str = typer.Argument("latest", help="Newer version (id, prefix or latest)."),
    key: list[str] = typer.Option([], "--key", "-k", help="Key column(s) for a row diff by key."),
    project: Path = PROJECT,
) -> None:
    """Schema and row differences between two dataset versions (JSON)."""
    from keelson.data.versions import diff as version_diff

    store = open_project_store(find_project(project))
    console.print_json(
        json.dumps(version_diff(store, old, new, key or None).summary(), default=str)
    )


@app.command()
@friendly
def profile(
    ref: str = typer.Argument("latest", help="Dataset version (id, prefix or latest)."),
    out: Path = typer.Option(Path("profile"), help="Writes OUT.html and OUT.json."),
    project: Path = PROJECT,
) -> None:
    """Profile a dataset version: HTML with plots and the JSON monitoring reference."""
    from keelson.data.profile import profile_table
    from keelson.data.versions import get_version, load_version
    from keelson.report.profile_report import write_profile_report
    from keelson.spec import load_spec

    folder = find_project(project)
    store = open_project_store(folder)
    version = get_version(store, ref, project=load_spec(folder).name)
    html, document = out.with_suffix(".html"), out.with_suffix(".json")
    write_profile_report(profile_table(load_version(store, version.id)), html, document, version.id)
    console.print(f"Profile of {version.id}: {html} and {document}", highlight=False)


@app.command("validate")
@friendly
def validate_file(
    source: str = typer.Argument(..., help="A CSV or Parquet file source named in keelson.yaml."),
    out: Path = typer.Option(Path("validated"), help="Folder for the kept and quarantine files."),
    project: Path = PROJECT,
) -> None:
    """Validate a source larger than memory, streaming: kept and quarantined rows to Parquet."""
    from keelson.data.contracts import enforce
    from keelson.data.streaming import validate_streaming
    from keelson.errors import KeelsonError
    from keelson.spec import FileSource, load_spec

    folder = find_project(project)
    spec = load_spec(folder)
    chosen = spec.sources.get(source)
    if not isinstance(chosen, FileSource) or chosen.kind not in {"csv", "parquet"}:
        raise KeelsonError(
            f"'{source}' is not a CSV or Parquet file source.",
            hint=f"Sources: {sorted(spec.sources)}.",
        )
    path = chosen.path if "://" in chosen.path else str(folder / chosen.path)
    contract = spec.contracts.get(source)
    result = validate_streaming(path, chosen.kind, contract, out, source=source, options=chosen)
    console.print_json(json.dumps(result.summary(), default=str))
    enforce(result.outline(), contract)


@app.command("infer-contract")
@friendly
def infer_contract(
    source: str = typer.Argument(..., help="A source named in keelson.yaml."),
    project: Path = PROJECT,
) -> None:
    """Propose a contract for a source from its data (YAML to paste under `contracts:`)."""
    from keelson.data.infer_contract import contract_yaml
    from keelson.data.infer_contract import infer_contract as propose
    from keelson.data.sources import read_source
    from keelson.errors import KeelsonError
    from keelson.spec import load_spec

    folder = find_project(project)
    spec = load_spec(folder)
    if source not in spec.sources:
        raise KeelsonError(f"no source '{source}'.", hint=f"Sources: {sorted(spec.sources)}.")
    read = read_source(source, spec.sources[source], folder)
    print(contract_yaml(source, propose(read.frame)))


@friendly
def explain(
    step: str = typer.Argument("dataset", help="The cached step to explain."),
    project: Path = PROJECT,
) -> None:
    """Why the last run ran a step again or reused it: which input, parameter or code changed."""
    from sqlalchemy import select

    from keelson.cache import StepCache
    from keelson.spec import load_spec
    from keelson.store.tables import Param, Run

    folder = find_project(project)
    store = open_project_store(folder)
    name = load_spec(folder).name
    with store.session() as session:
        recorded = session.scalar(
            select(Param.value)
            .join(Run, Run.id == Param.run_id)
            .where(Run.project == name, Param.key == f"explain.{step}")
            .order_by(Run.started_at.desc())
            .limit(1)
        )
    console.print(recorded or str(StepCache(store, name).explain(step)), highlight=False)
