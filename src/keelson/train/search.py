"""Model-family and hyper-parameter search: Optuna TPE in an ask/tell loop keelson owns.

The portfolio of known-good configurations runs first; then TPE (multivariate,
grouped, with a constant liar for trials in flight) proposes the family, its
parameters and the imbalance handling. Trials run in worker processes, several at
once; each is K-fold cross-validated, keeps its out-of-fold predictions, and is
pruned after a fold whose running mean is worse than the median of the finished
trials there. A trial is not started when its family's typical duration no longer
fits before the search deadline, and trials still running then are stopped.

With ``budget.max_trials`` the loop runs in synchronous batches (ask a batch, wait
for all of it, tell in order) so the same seed, data and trial count give the same
trials; with a time budget alone it keeps every worker busy.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keelson.errors import SpecError
from keelson.spec import Train
from keelson.train.budget import Deadline, fits_in_time
from keelson.train.candidates import FAMILIES, Config, portfolio
from keelson.train.crossval import Outcome, Problem, cross_validate
from keelson.train.metrics import metric
from keelson.train.workers import JobFailed, Pool

if TYPE_CHECKING:
    from keelson.train.shared_study import SharedStudy

HURRY = 0.4  # under this share of the budget left when the search starts: cheapest first
KEEP_PREDICTIONS = 12  # out-of-fold predictions kept for the ensemble, best trials first
_MIN_TRIALS_TO_PRUNE = 4
_SKIPS_IN_A_ROW = 20  # proposals in a row too slow for the time left: the search is over


@dataclass
class TrialRecord:
    trial: int
    config: Config
    score: float | None = None
    seconds: float = 0.0
    started_s: float = 0.0  # when it started, seconds after the search began
    state: str = "running"  # complete | failed | pruned | stopped | skipped
    fold_scores: list[float] = field(default_factory=list)
    train_score: float | None = None
    fold_train_scores: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0  # mean fit time of one fold
    folds: int = 0
    error: str | None = None
    oof: np.ndarray | None = field(default=None, repr=False)
    worker: str | None = None  # the `keelson worker` that ran it; None: this run's own pool

    @property
    def family(self) -> str:
        return self.config.family

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "family": self.config.family,
            "params": self.config.params,
            "imbalance": self.config.imbalance,
            "score": self.score,
            "train_score": self.train_score,
            "fold_scores": [round(s, 6) for s in self.fold_scores],
            "seconds": round(self.seconds, 3),
            "started_s": round(self.started_s, 3),
            "state": self.state,
            "error": self.error,
            "worker": self.worker,
        }


@dataclass
class SearchResult:
    task: str
    metric: str
    trials: list[TrialRecord] = field(default_factory=list)
    seconds: float = 0.0

    def complete(self) -> list[TrialRecord]:
        """Finished trials, best first."""
        sign = metric(self.task, self.metric).sign()  # type: ignore[arg-type]
        done = [t for t in self.trials if t.state == "complete" and t.score is not None]
        return sorted(done, key=lambda t: (-sign * (t.score or 0.0), t.trial))

    @property
    def best(self) -> TrialRecord:
        done = self.complete()
        if not done:
            failures = sorted({t.error for t in self.trials if t.error})[:3]
            raise SpecError(
                "the search finished no trial within the budget"
                + (f"; errors: {failures}" if failures else "")
                + ".",
                where="train.budget.seconds",
                hint="Raise the budget, or check the failed trials' errors.",
            )
        return done[0]


OnTrial = Callable[[TrialRecord, SearchResult], None]


def search(
    problem: Problem,
    pool: Pool,
    spec: Train,
    deadline: Deadline,
    imbalance: list[str],
    on_trial: OnTrial | None = None,
    shared: SharedStudy | None = None,
) -> SearchResult:
    """With ``shared``, the study lives in the store and ``keelson worker`` processes run
    trials too: those they finished are merged into the result at the end."""
    hurry = deadline.remaining() < HURRY * deadline.budget
    study = _study(problem, spec, imbalance, shared, hurry)
    loop = _Loop(problem, pool, spec, deadline, study, imbalance, on_trial)
    result = loop.run()
    if shared is not None:
        _merge(result, shared.close(study, KEEP_PREDICTIONS))
    return result


def _merge(result: SearchResult, others: list[TrialRecord]) -> None:
    known = {t.trial for t in result.trials}  # a retry run here may carry a dead worker's attrs
    merged = [*result.trials, *(t for t in others if t.trial not in known)]
    result.trials = sorted(merged, key=lambda t: t.trial)
    for record in result.complete()[KEEP_PREDICTIONS:]:
        record.oof = None


def config_of(trial: Any, candidates: list[str], imbalance: list[str]) -> Config:
    """The configuration an Optuna trial proposes (or replays, for an enqueued one)."""
    family = trial.suggest_categorical("family", candidates)
    choice = trial.suggest_categorical("imbalance", imbalance)
    return Config(family, FAMILIES[family].space(trial), choice)


def prune_bars(done: list[TrialRecord], folds: int) -> list[float] | None:
    """Per fold, the median running mean of the finished trials (none: too few yet)."""
    if len(done) < _MIN_TRIALS_TO_PRUNE:
        return None
    running = [np.cumsum(t.fold_scores) / np.arange(1, folds + 1) for t in done]
    return [float(np.median([r[i] for r in running])) for i in range(folds)]


def record_outcome(record: TrialRecord, outcome: Outcome | JobFailed) -> None:
    """Fill ``record`` from what cross-validation returned (or how it failed)."""
    if isinstance(outcome, JobFailed):
        record.state, record.error = "failed", outcome.error
        return
    record.state, record.score = outcome.state, outcome.score
    record.fold_scores, record.folds = outcome.fold_scores, len(outcome.fit_seconds)
    record.fit_seconds = float(np.mean(outcome.fit_seconds)) if outcome.fit_seconds else 0.0
    record.fold_train_scores = outcome.train_scores
    finite = [s for s in outcome.train_scores if np.isfinite(s)]
    record.train_score = float(np.mean(finite)) if finite else None
    if outcome.state == "complete":
        record.oof = outcome.oof


def imbalance_choices(spec: Train, task: str, labels: np.ndarray) -> list[str]:
    """What the search may choose to handle class imbalance with ("none" always)."""
    if task == "regression" or spec.imbalance == "none":
        return ["none"]
    if isinstance(spec.imbalance, list):
        return ["none", *dict.fromkeys(spec.imbalance)]
    rarest = np.bincount(labels.astype(int)).min() / labels.size
    if rarest >= 0.3:
        return ["none", "weights"]
    return ["none", "weights", "over", "under", "smote", "balanced_bagging"]


def tpe_sampler(spec: Train, seed: int | None) -> Any:
    """TPE, multivariate and grouped, with a constant liar for trials in flight; its random
    start covers the portfolio and four trials more."""
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        group=True,
        constant_liar=True,
        n_startup_trials=len(portfolio(list(spec.candidates))) + 4,
    )


def _study(
    problem: Problem,
    spec: Train,
    imbalance: list[str],
    shared: SharedStudy | None,
    hurry: bool = False,
) -> Any:
    """The study, with the portfolio enqueued first; in a ``hurry`` (little of the budget
    left, e.g. on a loaded machine) the cheapest family goes first, so that the one trial
    that must finish is quick."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = tpe_sampler(spec, spec.seed)
    sign = metric(problem.task, problem.metric).sign()
    direction: Literal["maximize", "minimize"] = "maximize" if sign > 0 else "minimize"
    if shared is not None:
        study = shared.create(direction, sampler, imbalance)
    else:
        study = optuna.create_study(direction=direction, sampler=sampler)
    configs = portfolio(list(spec.candidates))
    if hurry:
        configs.sort(key=lambda config: config.family != "linear")
    for config in configs:
        prefix = FAMILIES[config.family].prefix
        study.enqueue_trial(
            {
                "family": config.family,
                "imbalance": imbalance[0],
                **{f"{prefix}.{key}": value for key, value in config.params.items()},
            }
        )
    return study


@dataclass
class _Loop:
    problem: Problem
    pool: Pool
    spec: Train
    deadline: Deadline
    study: Any
    imbalance: list[str]
    on_trial: OnTrial | None
    result: SearchResult = field(init=False)
    running: dict[int, tuple[Any, TrialRecord]] = field(default_factory=dict)
    skipped: int = 0  # proposals skipped since a trial last started

    def __post_init__(self) -> None:
        self.result = SearchResult(self.problem.task, self.problem.metric)
        self.began = time.monotonic()
        self.synchronous = self.spec.budget.max_trials is not None

    def run(self) -> SearchResult:
        while True:
            if not (self.synchronous and self.running):
                self._start_trials()
            if not self.running:
                break
            self._collect()
            if time.monotonic() >= self._until() and self.result.complete():
                self._stop_running()
        self.result.seconds = time.monotonic() - self.began
        return self.result

    def _until(self) -> float:
        return self.deadline.search_until(self.result.complete()[:3], self.pool.size, self.spec)

    def _may_start(self) -> bool:
        if not self.result.complete() and not self.running:
            # a model is needed: one trial runs whatever the clock says
            return self.skipped < _SKIPS_IN_A_ROW
        if self.skipped >= _SKIPS_IN_A_ROW or time.monotonic() >= self._until():
            return False
        limit = self.spec.budget.max_trials
        return limit is None or len(self.result.trials) + len(self.running) < limit

    def _start_trials(self) -> None:
        import optuna

        while self.pool.idle() and self._may_start():
            trial = self.study.ask()
            config = config_of(trial, list(self.spec.candidates), self.imbalance)
            if not self._fits_in_time(config.family):
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                self.skipped += 1
                continue
            self.skipped = 0
            record = TrialRecord(trial.number, config, started_s=time.monotonic() - self.began)
            self.pool.submit(trial.number, cross_validate, config, self._prune_bars())
            self.running[trial.number] = (trial, record)

    def _fits_in_time(self, family: str) -> bool:
        seconds = [t.seconds for t in self.result.complete() if t.family == family]
        return fits_in_time(seconds, self._until())

    def _prune_bars(self) -> list[float] | None:
        return prune_bars(self.result.complete(), len(self.problem.folds))

    def _collect(self) -> None:
        """Wait for results until the search deadline; with nothing finished yet, poll:
        the first finished trial is waited for, whatever the clock says."""
        done = self.result.complete()
        timeout = self._until() - time.monotonic() if done else 1.0
        for key, outcome in self.pool.wait(max(timeout, 0.0)):
            trial, record = self.running.pop(key)
            self._record(record, outcome)
            self._tell(trial, record)

    def _record(self, record: TrialRecord, outcome: Outcome | JobFailed) -> None:
        record.seconds = time.monotonic() - self.began - record.started_s
        record_outcome(record, outcome)
        if record.state == "complete":
            self._forget_predictions()

    def _forget_predictions(self) -> None:
        for record in self.result.complete()[KEEP_PREDICTIONS:]:
            record.oof = None

    def _tell(self, trial: Any, record: TrialRecord) -> None:
        import optuna

        states = optuna.trial.TrialState
        if record.state == "complete":
            self.study.tell(trial, record.score)
        else:
            self.study.tell(trial, state=states.PRUNED if record.state != "failed" else states.FAIL)
        self.result.trials.append(record)
        self.result.trials.sort(key=lambda t: t.trial)
        if self.on_trial:
            self.on_trial(record, self.result)

    def _stop_running(self) -> None:
        for key in self.pool.stop_busy():
            trial, record = self.running.pop(key)
            record.state, record.error = "stopped", "stopped at the deadline"
            record.seconds = time.monotonic() - self.began - record.started_s
            self._tell(trial, record)
