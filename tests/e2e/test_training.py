"""Training guarantees over the whole run: the test set is used once at the end, the
same seed gives the same model, and the budget holds even with a slow candidate."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from keelson import runner
from keelson.run_context import RunContext
from keelson.spec import load_spec
from keelson.store.store import locate, open_store
from keelson.train import final as final_module
from keelson.train.workers import WorkerPool

pytestmark = pytest.mark.slow


def run_in_process(project: Path) -> runner.RunResult:
    spec = load_spec(project)
    store = open_store(locate(project, spec.store))
    try:
        ctx = RunContext(spec=spec, project_dir=project, store=store, console=Console(), quiet=True)
        return runner.run(ctx)
    finally:
        store.close()


def edit_spec(project: Path, **train: Any) -> None:
    path = project / "keelson.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["train"] |= train
    path.write_text(yaml.safe_dump(spec))


def test_the_test_split_reaches_nothing_before_the_end(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    seen: dict[str, Any] = {}
    real_split, real_load, real_test = runner.split, WorkerPool.load, final_module._test
    real_submit = WorkerPool.submit

    def split(*args: Any) -> Any:
        seen["splits"] = real_split(*args)
        return seen["splits"]

    def load(self: WorkerPool, problem: Any) -> None:
        seen["problem"] = problem
        real_load(self, problem)

    def submit(self: WorkerPool, key: Any, function: Any, *args: Any) -> None:
        events.append(f"job {function.__name__}")
        real_submit(self, key, function, *args)

    def test(*args: Any) -> None:
        events.append("test")
        real_test(*args)

    monkeypatch.setattr(runner, "split", split)
    monkeypatch.setattr(WorkerPool, "load", load)
    monkeypatch.setattr(WorkerPool, "submit", submit)
    monkeypatch.setattr(final_module, "_test", test)
    result = run_in_process(project)
    splits, problem = seen["splits"], seen["problem"]
    # everything the workers learn from is the training part, row for row
    assert problem.features.equals(splits.train.drop("churn"))
    assert max(max(f.max(), s.max()) for f, s in problem.folds) < splits.train.height
    # the test rows are scored once, after every fit
    assert events.count("test") == 1 and events[-1] == "test"
    assert events.index("test") > max(i for i, e in enumerate(events) if e.startswith("job"))
    assert result.test_metrics["roc_auc"]["low"] <= result.test_metrics["roc_auc"]["value"]


def test_the_same_seed_and_trials_give_the_same_model(project: Path) -> None:
    edit_spec(project, budget={"seconds": 120, "max_trials": 5}, seed=11)
    first = run_in_process(project)
    second = run_in_process(project)
    assert first.test_metrics == second.test_metrics
    assert first.family == second.family and first.threshold == second.threshold


def test_a_slow_candidate_does_not_break_the_budget(tmp_path: Path) -> None:
    from tests.conftest import write_project

    project = write_project(tmp_path / "big", rows=24000, seed=3)
    budget = 25.0
    edit_spec(
        project,
        candidates=["linear", "random_forest"],
        budget={"seconds": budget},
        cv_folds=5,
        learning_curve=False,
    )
    began = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "keelson"), "run", str(project), "--quiet"],
        capture_output=True,
        text=True,
        timeout=10 * budget,
    )
    wall = time.monotonic() - began
    assert done.returncode == 0, done.stderr + done.stdout
    assert wall / budget <= 1.05, f"wall {wall:.1f} s for a {budget:g} s budget"
    report = next((project / ".keelson" / "runs").glob("*/report.html")).read_text()
    assert "stopped" in report  # the forest was cut off at the deadline, not waited for
