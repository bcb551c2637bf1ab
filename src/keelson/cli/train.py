"""``keelson run``: the whole flow for one project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from keelson.cli.common import console, find_project, friendly

PROJECT = typer.Argument(Path(), help="Project folder (holding keelson.yaml) or the spec file.")


@friendly
def run(
    project: Path = PROJECT,
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output; only the summary."
    ),
    budget: float | None = typer.Option(None, help="Override train.budget.seconds."),
) -> None:
    """Read, validate, integrate, version, train, evaluate, register and report."""
    from keelson.spec import load_spec

    folder = find_project(project)
    spec = load_spec(folder)
    if spec.execution.engine != "dask":
        from keelson.train.workers import start_fork_server

        start_fork_server()  # the trials' processes import the learners while this one does
    from keelson import runner
    from keelson.run_context import RunContext
    from keelson.store.store import locate, open_store
    from keelson.train.budget import process_start

    if budget is not None:
        spec = spec.model_copy(
            update={
                "train": spec.train.model_copy(
                    update={"budget": spec.train.budget.model_copy(update={"seconds": budget})}
                )
            }
        )
    store = open_store(locate(folder, spec.store))
    try:
        ctx = RunContext(
            spec=spec,
            project_dir=folder,
            store=store,
            console=console,
            quiet=quiet,
            started=process_start(),  # the budget covers imports and reading the spec too
        )
        result = runner.run(ctx)
    finally:
        store.close()
    _summary(result)


def _summary(result: Any) -> None:
    if result.test_metrics:
        title = "Test metrics (held-out, bootstrap 95 % CI)"
        rows = [
            (name, f"{m['value']:.4f}", f"[{m['low']:.4f}, {m['high']:.4f}]")
            for name, m in result.test_metrics.items()
        ]
    else:
        title = "Cross-validation metrics (no held-out test set)"
        rows = [(name, f"{value:.4f}", "") for name, value in result.cv_metrics.items()]
    metrics = Table(title=title, title_justify="left")
    for column in ("metric", "value", "95 % CI"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")
    for row in rows:
        metrics.add_row(*row)
    steps = Table(title="Steps", title_justify="left")
    for column in ("step", "wall s", "CPU s", "peak MB"):
        steps.add_column(column, justify="left" if column == "step" else "right")
    for step in result.steps:
        steps.add_row(
            step["name"], f"{step['wall_s']:.1f}", f"{step['cpu_s']:.1f}", f"{step['peak_mb']:.0f}"
        )
    console.print(metrics, steps)
    alias = f" (alias {result.alias})" if result.alias else ""
    threshold = f", threshold {result.threshold:.4f}" if result.threshold is not None else ""
    console.print(
        f"Registered [bold]{result.model_name}[/] version [bold]{result.model_version}[/]{alias}: "
        f"{result.task} {result.family}{threshold}, dataset {result.dataset_version}",
        highlight=False,
    )
    console.print(
        f"Wall time {result.wall_seconds:.1f} s of a {result.budget_seconds:g} s budget "
        f"({result.wall_seconds / result.budget_seconds:.2f}).",
        highlight=False,
    )
    console.print(f"Report: {result.report_path}", highlight=False, soft_wrap=True)
