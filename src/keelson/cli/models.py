"""``keelson models``: the registry's versions and aliases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
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


@app.command("alias")
@friendly
def alias_(
    ref: str = typer.Argument(..., help="NAME@VERSION to point the alias at."),
    alias: str = typer.Argument(..., help="The alias, e.g. production."),
    project: Path = PROJECT,
) -> None:
    """Point an alias at a version; servers following it swap to it without downtime."""
    from keelson.registry import versions as registry

    store = open_project_store(find_project(project))
    version = registry.resolve(store, registry.ModelRef.parse(ref))
    registry.set_alias(store, version.name, alias, version.version)
    console.print(f"{version.name}@{alias} -> version {version.version}")


@app.command()
@friendly
def rollback(
    name: str = typer.Argument(..., help="The model name."),
    alias: str = typer.Option("production", help="The alias to move back."),
    project: Path = PROJECT,
) -> None:
    """Move an alias back to the version it pointed to before its last move."""
    from keelson.registry import versions as registry

    store = open_project_store(find_project(project))
    left, restored = registry.rollback(store, name, alias)
    console.print(f"{name}@{alias}: version {left} -> version {restored}")


@app.command()
@friendly
def compare(
    a: str = typer.Argument(..., help="The reference model: NAME@ALIAS or NAME@VERSION."),
    b: str = typer.Argument(..., help="The challenger."),
    resamples: int = typer.Option(2000, min=200, help="Bootstrap resamples."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    project: Path = PROJECT,
) -> None:
    """Both models on A's held-out test rows, each metric with a paired test and a verdict."""
    from keelson.errors import KeelsonError
    from keelson.registry import versions as registry
    from keelson.train.compare import compare as paired
    from keelson.train.crossval import predict_scores
    from keelson.train.holdout import holdout_of, same_holdout
    from keelson.train.metrics import METRICS

    store = open_project_store(find_project(project))
    versions = [registry.resolve(store, registry.ModelRef.parse(ref)) for ref in (a, b)]
    if not same_holdout(*versions):
        raise KeelsonError(
            "the two models were not trained on the same dataset version, split and target, "
            "so A's test rows may be in B's training data.",
            where=f"{a} vs {b}",
            hint="Retrain one of them on the other's dataset version and split.",
        )
    holdout = holdout_of(store, versions[0])
    task, n_classes = holdout.task, len(holdout.task.classes)
    models = [registry.load(store, ref) for ref in (a, b)]
    frames = [holdout.features.select(m.signature.names) for m in models]
    scores = [
        predict_scores(m.pipeline, f, task.kind, n_classes)
        for m, f in zip(models, frames, strict=True)
    ]
    labels_a = labels_b = None
    if task.is_classification:
        labels_a, labels_b = (
            np.asarray(m.pipeline.predict(f)) for m, f in zip(models, frames, strict=True)
        )
    metrics = {name: (d.fn, d.higher_is_better) for name, d in METRICS[task.kind].items()}
    result = paired(
        task.kind, holdout.labels, scores[0], scores[1], labels_a, labels_b, metrics, 0, resamples
    )
    names = [f"{v.name} v{v.version}" for v in versions]
    if as_json:
        console.print_json(json.dumps(result.to_dict() | {"a": names[0], "b": names[1]}))
        return
    _print_comparison(result, names, holdout.features.height)


def _print_comparison(result: Any, names: list[str], rows: int) -> None:
    table = Table(title=f"A = {names[0]}, B = {names[1]} on {rows} held-out rows")
    for column in ("metric", "A", "B", "B − A", "95 % CI", "p", "test"):
        table.add_column(column, justify="left" if column in ("metric", "test") else "right")
    for diff in result.differences:
        table.add_row(
            diff.metric,
            f"{diff.value_a:.4f}",
            f"{diff.value_b:.4f}",
            f"{diff.delta:+.4f}",
            f"[{diff.low:+.4f}, {diff.high:+.4f}]",
            f"{diff.p_value:.3g}",
            diff.method,
        )
    console.print(table)
    for line in result.lines(names[0], names[1]):
        console.print(f"• {line}", highlight=False)
