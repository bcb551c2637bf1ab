"""Progress display for long work (rich); silent with ``--quiet``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def search_progress(
    budget_seconds: float, quiet: bool, console: Console
) -> Iterator[Callable[[Any, Any], None]]:
    """A bar filling over the search budget; yields the per-trial callback."""
    if quiet:
        yield lambda _trial, _result: None
        return
    started = time.monotonic()
    columns = (
        TextColumn("search"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting", total=budget_seconds)

        def on_trial(trial: Any, result: Any) -> None:
            done = [t.score for t in result.trials if t.state == "complete" and t.score is not None]
            best = f"best {result.metric} {result.best.score:.4f}" if done else "no trial yet"
            progress.update(
                task,
                completed=min(time.monotonic() - started, budget_seconds),
                description=f"trial {trial.trial + 1} ({trial.family}) · {best}",
            )

        yield on_trial
