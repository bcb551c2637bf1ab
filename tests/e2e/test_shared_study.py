"""One search shared by `keelson run` and two `keelson worker` processes on PostgreSQL.

The workers start first and wait for the run; the run keeps one trial process of its
own. The study lives in the store's database (schema ``keelson_search``).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from sqlalchemy import select
from tests.conftest import write_project

from keelson.spec import load_spec
from keelson.store.store import Store, locate, open_store
from keelson.store.tables import Param, Run, Step
from keelson.train import shared_study

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
KEELSON = Path(sys.executable).with_name("keelson")
SHARED = "  budget: {seconds: 150}\n  workers: 1\n  shared: true\n  learning_curve: false\n"


@pytest.fixture
def project(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEELSON_STORE_URL", postgres_url)
    monkeypatch.delenv("KEELSON_ARTIFACTS", raising=False)
    folder = write_project(tmp_path / "churn")
    spec = folder / "keelson.yaml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text.replace("  budget: {seconds: 60, max_trials: 4}\n", SHARED), "utf-8")
    return folder


def keelson(project: Path, *args: str) -> subprocess.Popen[bytes]:
    log = (project / f"{args[0]}-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen([str(KEELSON), *args], stdout=log, stderr=subprocess.STDOUT)


def name_of(process: subprocess.Popen[bytes]) -> str:
    return f"{socket.gethostname()}:{process.pid}"


@contextmanager
def shared_run(project: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[Any]]]:
    """Two workers waiting, then the run; yields (run, workers) and waits for them all."""
    workers = [keelson(project, "worker", "--project", str(project), "--wait", "180")]
    workers.append(keelson(project, "worker", "--project", str(project), "--wait", "180"))
    run = keelson(project, "run", str(project), "--quiet")
    try:
        yield run, workers
        assert run.wait(timeout=300) == 0, logs(project)
        for worker in workers:
            worker.wait(timeout=60)
    finally:
        for process in [run, *workers]:
            if process.poll() is None:
                process.kill()
                process.wait()


def logs(project: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(project.glob("*.log")))


def project_store(project: Path) -> Store:
    return open_store(locate(project, load_spec(project).store))


def the_study(store: Store, timeout: float = 180.0) -> Any:
    """The run's study, once the run has announced it."""
    until = time.monotonic() + timeout
    while True:
        with store.session() as session:
            name = session.scalars(
                select(Param.value).where(Param.key == shared_study.STUDY_PARAM)
            ).first()
        if name is not None:
            storage = shared_study.study_storage(store, create=False)
            return optuna.load_study(study_name=name, storage=storage)
        assert time.monotonic() < until, "the run never announced its study"
        time.sleep(0.2)


def search_detail(store: Store) -> dict[str, Any]:
    with store.session() as session:
        run = session.scalars(select(Run)).one()
        assert run.status == "succeeded", run.error
        step = session.scalars(select(Step).where(Step.name == "search")).one()
        return dict(step.detail)


def test_workers_run_trials_that_the_run_uses(project: Path) -> None:
    with shared_run(project) as (_, workers):
        pass
    store = project_store(project)
    study = the_study(store)
    by_worker = {
        t.number: t.user_attrs["worker"]
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and "worker" in t.user_attrs
    }
    assert set(by_worker.values()) == {name_of(w) for w in workers}, logs(project)
    used = search_detail(store)["from_workers"]
    assert used and set(used) <= set(by_worker)
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == used[0])
    blob = store.artifacts.get(trial.user_attrs["oof_sha256"])
    oof = np.load(io.BytesIO(blob), allow_pickle=False)
    assert oof.shape == (900,)
    assert len(trial.user_attrs["fold_scores"]) == 2 * 2  # 900 rows: the 2 folds drawn twice
    # The worker stops by itself with the run's search: whichever it notices first, the
    # run closing the study or the search deadline it shares with the run.
    reasons = ("the run closed the search", "the search deadline passed")
    assert any(f"Stopped: {reason}" in logs(project) for reason in reasons), logs(project)
    store.close()


def test_the_trial_of_a_killed_worker_is_retried_by_another_process(project: Path) -> None:
    with shared_run(project) as (_, workers):
        store = project_store(project)
        study = the_study(store)
        victim, survivor = workers
        killed = kill_mid_trial(victim, study)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert trials[killed].state == optuna.trial.TrialState.FAIL
    [retry] = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert retry.params == trials[killed].params
    assert retry.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert retry.user_attrs.get("worker") in (name_of(survivor), None), logs(project)
    search_detail(store)  # the run succeeded
    store.close()


def kill_mid_trial(worker: subprocess.Popen[bytes], study: Any) -> int:
    """SIGKILL ``worker`` while it runs a trial; return that trial's number. The worker is
    frozen (SIGSTOP) while its trials are read, so it cannot finish one in between."""
    name = name_of(worker)
    until = time.monotonic() + 120
    while time.monotonic() < until:
        os.kill(worker.pid, signal.SIGSTOP)
        running = [
            t.number
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.user_attrs.get("started_by") == name
        ]
        if running:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            return running[0]
        os.kill(worker.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the worker never ran a trial")
