"""A search several processes share: a run's Optuna study, kept in the project's store.

With ``train.shared: true``, ``keelson run`` creates its study in an Optuna
``RDBStorage`` on the store's database (PostgreSQL: in a schema of its own,
``keelson_search``, since Optuna keeps its own ``alembic_version`` table; SQLite: in
``search.db`` beside the store's file), named after the run. The study records what a
worker needs to rebuild exactly the same :class:`Problem`: the dataset version, the
spec's digest, the deadline as a UNIX time, the imbalance choices and a digest of the
labels and folds.

``keelson worker`` joins it and loops ask → cross-validate → tell until the run closes
the study or the search deadline passes. It stores each finished trial's out-of-fold
predictions as an artifact, and their SHA-256, the fold scores and the train score in
the trial's user attrs; the run merges those trials into its result before it chooses
the ensemble. While a trial runs its worker sends heartbeats: a trial whose worker died
is failed after ``GRACE_SECONDS`` and retried (``RetryHeartbeatStaleTrialCallback``,
the successor of ``RetryFailedTrialCallback``) by the next process that asks.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import optuna
from sqlalchemy import select, text

from keelson import __version__
from keelson.errors import NotFoundError, SpecError, StoreError
from keelson.spec import ProjectSpec, Train
from keelson.store.store import Store
from keelson.store.tables import Param, Run
from keelson.train.budget import Deadline, fits_in_time
from keelson.train.candidates import Config
from keelson.train.crossval import Outcome, Problem, cross_validate
from keelson.train.search import TrialRecord, config_of, prune_bars, record_outcome, tpe_sampler
from keelson.train.workers import JobFailed

if TYPE_CHECKING:
    from keelson.run_context import RunContext

FORMAT = 1  # of the study's user attrs
SCHEMA = "keelson_search"  # PostgreSQL schema of Optuna's tables
STUDY_PARAM = "search.shared_study"  # the run's param naming its study, once workers may join
HEARTBEAT_SECONDS = 2
GRACE_SECONDS = 10  # a running trial without a heartbeat for this long is failed and retried
MAX_RETRY = 2
_PRELOAD = ("keelson.runner", "lightgbm", "sklearn.ensemble", "sklearn.linear_model", "imblearn")
_MAX_SKIPPED = 20  # proposals in a row too slow for the time left: the worker stops

_STATES = {"pruned": optuna.trial.TrialState.PRUNED, "failed": optuna.trial.TrialState.FAIL}
_STARTED = (
    optuna.trial.TrialState.RUNNING,
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)


@dataclass(frozen=True)
class StudyFacts:
    """What a worker needs to rebuild the run's Problem and keep to the run's clock."""

    run_id: str
    dataset_version: str
    spec_sha256: str
    budget_seconds: float
    deadline_unix: float  # when the run's whole budget ends
    problem_sha256: str
    imbalance: list[str] = field(default_factory=list)
    began_unix: float = field(default_factory=time.time)  # when the search began

    def to_attrs(self) -> dict[str, Any]:
        return {"format": FORMAT, "keelson_version": __version__, **asdict(self)}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], where: str) -> StudyFacts:
        if attrs.get("format") != FORMAT:
            raise StoreError(
                f"the shared study has format {attrs.get('format')}; this keelson "
                f"({__version__}) reads format {FORMAT}.",
                where=where,
                hint=f"Run the worker with keelson {attrs.get('keelson_version')}, as the run.",
            )
        return cls(**{f.name: attrs[f.name] for f in fields(cls)})

    def deadline(self) -> Deadline:
        """The run's deadline on this process's monotonic clock."""
        ends = time.monotonic() + (self.deadline_unix - time.time())
        return Deadline(self.budget_seconds, started=ends - self.budget_seconds)


def study_name(run_id: str) -> str:
    return f"keelson-{run_id}"


def problem_digest(problem: Problem) -> str:
    """SHA-256 of the labels, the folds and the feature schema: the same split, or not."""
    schema = [problem.task, problem.metric, problem.features.height, problem.features.columns]
    digest = hashlib.sha256(
        json.dumps([*schema, [str(t) for t in problem.features.dtypes]]).encode()
    )
    digest.update(np.ascontiguousarray(problem.labels).tobytes())
    for fit_rows, score_rows in problem.folds:
        digest.update(np.asarray(fit_rows, dtype=np.int64).tobytes())
        digest.update(np.asarray(score_rows, dtype=np.int64).tobytes())
    return digest.hexdigest()


def study_storage(store: Store, *, create: bool) -> Any:
    """Optuna's storage on the store's database, with heartbeats and retries of the trials
    of dead workers. ``create``: make its schema and tables (the run does; workers do not)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    url, engine_kwargs = _search_database(store, create)
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=MAX_RETRY
        ),
        skip_table_creation=not create,
    )


def _search_database(store: Store, create: bool) -> tuple[str, dict[str, Any]]:
    url = store.engine.url
    backend = url.get_backend_name()
    if backend == "postgresql":
        if create:
            with store.engine.begin() as connection:
                connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        options = {"options": f"-c search_path={SCHEMA}"}
        return url.render_as_string(hide_password=False), {
            "pool_pre_ping": True,
            "connect_args": options,
        }
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database)).with_name("search.db")
        return f"sqlite:///{path}", {"connect_args": {"timeout": 30}}
    raise StoreError(
        f"a shared search needs a PostgreSQL (or SQLite) store, not {backend}.",
        where="train.shared",
        hint="Point KEELSON_STORE_URL or store.url at PostgreSQL, or set train.shared: false.",
    )


# --- the run's side -----------------------------------------------------------------------


class SharedStudy:
    """The run's side: create the study workers join, then take back what they finished."""

    def __init__(self, store: Store, facts: StudyFacts) -> None:
        self.store = store
        self.facts = facts

    @classmethod
    def for_run(
        cls, ctx: RunContext, dataset: str, problem: Problem, deadline: Deadline
    ) -> SharedStudy:
        facts = StudyFacts(
            run_id=ctx.run_id,
            dataset_version=dataset,
            spec_sha256=ctx.spec.digest(),
            budget_seconds=deadline.budget,
            deadline_unix=time.time() + deadline.remaining(),
            problem_sha256=problem_digest(problem),
        )
        return cls(ctx.store, facts)

    def create(
        self, direction: Literal["maximize", "minimize"], sampler: Any, imbalance: list[str]
    ) -> Any:
        """The run's study, described for workers and announced on the run."""
        name = study_name(self.facts.run_id)
        study = optuna.create_study(
            storage=study_storage(self.store, create=True),
            study_name=name,
            direction=direction,
            sampler=sampler,
        )
        self.facts = replace(self.facts, imbalance=list(imbalance), began_unix=time.time())
        for key, value in self.facts.to_attrs().items():
            study.set_user_attr(key, value)
        with self.store.session() as session:
            session.merge(Param(run_id=self.facts.run_id, key=STUDY_PARAM, value=name))
        return study

    def close(self, study: Any, keep: int) -> list[TrialRecord]:
        """Tell workers the search is over; return the trials they finished, the best
        ``keep`` complete ones with their out-of-fold predictions."""
        study.set_user_attr("closed", True)
        records = finished_trials(study)
        trials = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
        for record in _best_first(study, records)[:keep]:
            sha256 = trials[record.trial].user_attrs["oof_sha256"]
            record.oof = np.load(io.BytesIO(self.store.artifacts.get(sha256)), allow_pickle=False)
        return records


def finished_trials(study: Any) -> list[TrialRecord]:
    """The trials ``keelson worker`` processes finished (their user attrs say which one)."""
    states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL,
    )
    trials = study.get_trials(deepcopy=False, states=states)
    return [_record_of(t) for t in trials if "worker" in t.user_attrs]


def _best_first(study: Any, records: list[TrialRecord]) -> list[TrialRecord]:
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    done = [r for r in records if r.state == "complete" and r.score is not None]
    return sorted(done, key=lambda r: (-sign * (r.score or 0.0), r.trial))


def _attrs(record: TrialRecord) -> dict[str, Any]:
    """The trial's user attrs: who ran it, its scores, and the rest of its record."""
    return {
        "worker": record.worker,
        "fold_scores": [float(s) for s in record.fold_scores],
        "train_score": record.train_score,
        "record": {
            "family": record.config.family,
            "params": record.config.params,
            "imbalance": record.config.imbalance,
            "state": record.state,
            "score": record.score,
            "fit_seconds": record.fit_seconds,
            "folds": record.folds,
            "seconds": record.seconds,
            "started_s": record.started_s,
            "error": record.error,
        },
    }


def _record_of(trial: Any) -> TrialRecord:
    attrs = trial.user_attrs
    rest = attrs["record"]
    return TrialRecord(
        trial=trial.number,
        config=Config(rest["family"], rest["params"], rest["imbalance"]),
        score=rest["score"],
        seconds=rest["seconds"],
        started_s=rest["started_s"],
        state=rest["state"],
        fold_scores=attrs["fold_scores"],
        train_score=attrs["train_score"],
        fit_seconds=rest["fit_seconds"],
        folds=rest["folds"],
        error=rest["error"],
        worker=attrs["worker"],
    )


# --- the worker's side --------------------------------------------------------------------


@dataclass
class Worker:
    """A ``keelson worker``'s view of the shared search it joined."""

    name: str
    storage: Any
    study: Any
    facts: StudyFacts
    problem: Problem
    spec: Train
    store: Store
    skipped: int = 0

    @property
    def run_id(self) -> str:
        return self.facts.run_id


def join(
    store: Store, spec: ProjectSpec, run_id: str | None, wait: float = 0.0, threads: int = 1
) -> Worker:
    """Join the shared search of run ``run_id`` (default: the newest running one of the
    project), waiting up to ``wait`` seconds for one to start."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for module in _PRELOAD:  # before waiting: a worker started first is ready when the run is
        importlib.import_module(module)
    run = _find_run(store, spec.name, run_id, wait)
    storage = study_storage(store, create=False)
    study = optuna.load_study(
        study_name=study_name(run), storage=storage, sampler=tpe_sampler(spec.train, None)
    )
    facts = StudyFacts.from_attrs(study.user_attrs, where=f"run {run}")
    _check_spec(spec, facts)
    problem = _rebuild(store, spec, facts)
    name = f"{socket.gethostname()}:{os.getpid()}"
    return Worker(name, storage, study, facts, replace(problem, threads=threads), spec.train, store)


def _find_run(store: Store, project: str, run_id: str | None, wait: float) -> str:
    until = time.monotonic() + wait
    while not (found := _shared_runs(store, project, run_id)):
        if time.monotonic() >= until:
            which = f"run {run_id} is not" if run_id else "no run is"
            raise NotFoundError(
                f"{which} running a shared search of project {project!r}.",
                where="keelson worker",
                hint="Start `keelson run` with `train.shared: true` on the same store (a worker "
                "waits for one with --wait SECONDS).",
            )
        time.sleep(0.5)
    return found[0]


def _shared_runs(store: Store, project: str, run_id: str | None) -> list[str]:
    query = (
        select(Run.id)
        .join(Param, Param.run_id == Run.id)
        .where(Run.project == project, Run.status == "running", Param.key == STUDY_PARAM)
        .order_by(Run.started_at.desc())
    )
    if run_id is not None:
        query = query.where(Run.id == run_id)
    with store.session() as session:
        return list(session.scalars(query))


def _check_spec(spec: ProjectSpec, facts: StudyFacts) -> None:
    """The worker's spec must be the run's (``keelson run --budget`` changes only that)."""
    budget = spec.train.budget.model_copy(update={"seconds": facts.budget_seconds})
    same = spec.model_copy(update={"train": spec.train.model_copy(update={"budget": budget})})
    if same.digest() != facts.spec_sha256:
        raise SpecError(
            f"differs from the spec run {facts.run_id} started with.",
            where="keelson.yaml",
            hint="Run the worker on the same keelson.yaml as `keelson run` (same commit).",
        )


def _rebuild(store: Store, spec: ProjectSpec, facts: StudyFacts) -> Problem:
    from keelson.data.versions import load_version
    from keelson.runner import training_problem
    from keelson.train.task import Task

    table = load_version(store, facts.dataset_version)
    _, problem, _ = training_problem(spec, table, Task.of(table, spec.target, spec.train))
    if problem_digest(problem) != facts.problem_sha256:
        raise StoreError(
            "the problem rebuilt from the dataset version differs from the run's "
            "(other labels, folds or columns).",
            where=f"dataset version {facts.dataset_version}",
            hint="Run the worker with the same keelson and library versions as the run.",
        )
    return problem


def work(worker: Worker, on_trial: Callable[[TrialRecord], None] | None = None) -> str:
    """Run the shared search's trials until the run closes it, stops, or its search
    deadline passes; returns why this worker stopped."""
    while True:
        best = _best_first(worker.study, finished_trials(worker.study))  # of every worker
        reason = _stop_reason(worker, best)
        if reason is not None:
            return reason
        record = _run_trial(worker, best)
        if record is not None and on_trial is not None:
            on_trial(record)


def _stop_reason(worker: Worker, best: list[TrialRecord]) -> str | None:
    if worker.study.user_attrs.get("closed"):
        return "the run closed the search"
    if not _running(worker.store, worker.run_id):
        return "the run is no longer running"
    if time.monotonic() >= _until(worker, best):
        return "the search deadline passed"
    if worker.skipped >= _MAX_SKIPPED:
        return "no proposal fits in the time left"
    limit = worker.spec.budget.max_trials
    if limit is not None and len(worker.study.get_trials(deepcopy=False, states=_STARTED)) >= limit:
        return f"the run's {limit} trials have started"
    return None


def _running(store: Store, run_id: str) -> bool:
    with store.session() as session:
        run = session.get(Run, run_id)
        return run is not None and run.status == "running"


def _until(worker: Worker, best: list[TrialRecord]) -> float:
    """When the run's search must be over, as far as the trials of workers tell."""
    return worker.facts.deadline().search_until(best[:3], 1, worker.spec)


def _fits_in_time(worker: Worker, best: list[TrialRecord], family: str) -> bool:
    seconds = [r.seconds for r in best if r.family == family]
    return fits_in_time(seconds, _until(worker, best))


def _run_trial(worker: Worker, best: list[TrialRecord]) -> TrialRecord | None:
    """Ask, cross-validate (sending heartbeats), tell. None: the proposal was skipped."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    study = worker.study
    optuna.storages.fail_stale_trials(study)  # a dead worker's trial is failed, then retried
    trial = study.ask()
    config = config_of(trial, list(worker.spec.candidates), worker.facts.imbalance)
    if not _fits_in_time(worker, best, config.family):
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        worker.skipped += 1
        return None
    worker.skipped = 0
    worker.storage.record_heartbeat(trial._trial_id)  # from now on, its death is noticed
    trial.set_user_attr("started_by", worker.name)
    began = time.monotonic()
    record = TrialRecord(trial.number, config, started_s=time.time() - worker.facts.began_unix)
    record.worker = worker.name
    bars = prune_bars(best, len(worker.problem.folds))
    with get_heartbeat_thread(trial._trial_id, worker.storage):
        record_outcome(record, _cross_validate(worker.problem, config, bars))
    record.seconds = time.monotonic() - began
    _tell(worker, trial, record)
    return record


def _cross_validate(
    problem: Problem, config: Config, bars: list[float] | None
) -> Outcome | JobFailed:
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(problem.threads):
            return cross_validate(problem, config, bars)
    except Exception as exc:  # a configuration the data cannot support, and the like
        return JobFailed(f"{type(exc).__name__}: {str(exc)[:300]}")


def _tell(worker: Worker, trial: Any, record: TrialRecord) -> None:
    """Predictions to the artifact store, the record to the trial's user attrs, then tell."""
    if record.oof is not None:
        buffer = io.BytesIO()
        np.save(buffer, record.oof, allow_pickle=False)
        artifact = worker.store.put_artifact(
            buffer.getvalue(), kind="oof", fmt="npy", run_id=worker.run_id
        )
        trial.set_user_attr("oof_sha256", artifact.sha256)
        record.oof = None  # the run loads it back if it needs it
    for key, value in _attrs(record).items():
        trial.set_user_attr(key, value)
    if record.state == "complete":
        worker.study.tell(trial, record.score)
    else:
        worker.study.tell(trial, state=_STATES[record.state])
