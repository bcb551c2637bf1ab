"""``keelson worker``: join a running ``keelson run``'s shared search and run its trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keelson.cli.common import console, find_project, friendly


@friendly
def worker(
    project: Path = typer.Option(
        Path(), "--project", help="Project folder (holding keelson.yaml)."
    ),
    run: str | None = typer.Option(
        None, "--run", help="The run to join; default: the project's newest shared run."
    ),
    wait: float = typer.Option(
        0.0, "--wait", min=0.0, help="Seconds to wait for a shared run to start."
    ),
    threads: int = typer.Option(1, "--threads", min=1, help="OpenMP/BLAS threads per trial."),
) -> None:
    """Run trials of a `keelson run` with `train.shared: true`, until its search ends."""
    from keelson.spec import load_spec
    from keelson.store.store import locate, open_store
    from keelson.train import shared_study

    folder = find_project(project)
    spec = load_spec(folder)
    store = open_store(locate(folder, spec.store))
    try:
        joined = shared_study.join(store, spec, run, wait, threads)
        console.print(
            f"Joined run {joined.run_id} as {joined.name}: dataset {joined.facts.dataset_version}, "
            f"{len(joined.problem.labels)} training rows.",
            highlight=False,
        )
        finished: list[Any] = []
        reason = shared_study.work(joined, lambda record: _line(record, joined, finished))
    finally:
        store.close()
    console.print(f"Stopped: {reason}; {len(finished)} trial(s) run here.", highlight=False)


def _line(record: Any, joined: Any, finished: list[Any]) -> None:
    finished.append(record)
    metric = joined.problem.metric
    score = "" if record.score is None else f"{metric} {record.score:.4f}"
    error = f"  {record.error}" if record.error else ""
    console.print(
        f"trial {record.trial:>4}  {record.family:<22} {record.state:<8} {score:<18}"
        f"{record.seconds:6.1f} s{error}",
        highlight=False,
    )
