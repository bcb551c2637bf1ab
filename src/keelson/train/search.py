"""Hyper-parameter and model-family search: Optuna TPE in an ask/tell loop keelson owns.

The budget is wall-clock seconds for the whole search. Each family first runs
with its defaults; later trials are chosen by TPE over a conditional space
(family → its parameters, class weighting). A trial is scored by stratified
K-fold cross-validation on the training rows, with the preprocessing fitted
inside each fold. A trial is not started when its family's typical duration no
longer fits, and is abandoned between folds once the deadline has passed.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from keelson.features.preprocess import ColumnKinds
from keelson.spec import Train
from keelson.train.candidates import FAMILIES, make_pipeline
from keelson.train.evaluate import HIGHER_IS_BETTER, RANKING


@dataclass
class TrialRecord:
    trial: int
    family: str
    params: dict[str, Any]
    weighted: bool
    score: float | None = None
    seconds: float = 0.0
    started_s: float = 0.0  # when it started, seconds after the search began
    state: str = "running"  # complete | failed | pruned

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "family": self.family,
            "params": self.params | {"class_weight": "balanced" if self.weighted else "none"},
            "score": self.score,
            "seconds": round(self.seconds, 3),
            "started_s": round(self.started_s, 3),
            "state": self.state,
        }


@dataclass
class SearchResult:
    metric: str
    trials: list[TrialRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> TrialRecord:
        done = [t for t in self.trials if t.state == "complete" and t.score is not None]
        if not done:
            raise RuntimeError("the search completed no trial")
        sign = 1.0 if HIGHER_IS_BETTER[self.metric] else -1.0
        return max(done, key=lambda t: sign * (t.score or 0.0))


@dataclass
class _Problem:
    features: pl.DataFrame
    labels: np.ndarray
    kinds: ColumnKinds
    spec: Train
    deadline: float


def _weight_choices(spec: Train) -> list[bool]:
    return {"auto": [False, True], "balanced": [True], "none": [False]}[spec.class_weight]


def _enqueue_defaults(study: Any, spec: Train) -> None:
    weights = _weight_choices(spec)
    for name in spec.candidates:
        family = FAMILIES[name]
        prefix = {"logistic": "logistic", "hist_gradient_boosting": "hgb", "lightgbm": "lgbm"}[name]
        params = {f"{prefix}.{key}": value for key, value in family.defaults.items()}
        study.enqueue_trial({"family": name, "weighted": weights[-1], **params})


def _cross_validate(problem: _Problem, record: TrialRecord, must_finish: bool) -> float | None:
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(problem.spec.cv_folds, shuffle=True, random_state=problem.spec.seed)
    scorer = RANKING[problem.spec.metric]
    scores = []
    for fit_rows, score_rows in folds.split(np.zeros(problem.labels.size), problem.labels):
        if not must_finish and time.monotonic() > problem.deadline:
            return None
        pipeline = make_pipeline(
            record.family, record.params, problem.kinds, record.weighted, problem.spec.seed
        )
        pipeline.fit(problem.features[fit_rows], problem.labels[fit_rows])
        probabilities = pipeline.predict_proba(problem.features[score_rows])[:, 1]
        scores.append(scorer(problem.labels[score_rows], probabilities))
    return float(np.mean(scores))


def _fits_in_time(result: SearchResult, family: str, deadline: float) -> bool:
    seconds = [t.seconds for t in result.trials if t.family == family and t.state == "complete"]
    return not seconds or time.monotonic() + statistics.median(seconds) <= deadline


def search(
    features: pl.DataFrame,
    labels: np.ndarray,
    spec: Train,
    on_trial: Callable[[TrialRecord, SearchResult], None] | None = None,
) -> SearchResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    started = time.monotonic()
    problem = _Problem(
        features, labels, ColumnKinds.of(features), spec, started + spec.budget.seconds
    )
    sampler = optuna.samplers.TPESampler(
        seed=spec.seed, multivariate=True, group=True, n_startup_trials=6
    )
    study = optuna.create_study(
        direction="maximize" if HIGHER_IS_BETTER[spec.metric] else "minimize", sampler=sampler
    )
    _enqueue_defaults(study, spec)
    result = SearchResult(spec.metric)
    skipped = 0
    while time.monotonic() < problem.deadline and skipped < 20:
        if spec.budget.max_trials and len(result.trials) >= spec.budget.max_trials:
            break
        trial = study.ask()
        family = trial.suggest_categorical("family", spec.candidates)
        weighted = trial.suggest_categorical("weighted", _weight_choices(spec))
        record = TrialRecord(trial.number, family, FAMILIES[family].space(trial), weighted)
        if not _fits_in_time(result, family, problem.deadline):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            skipped += 1
            continue
        record.started_s = time.monotonic() - started
        _run_trial(problem, record, result)
        study.tell(trial, record.score, state=_optuna_state(record.state))
        result.trials.append(record)
        if on_trial:
            on_trial(record, result)
    result.seconds = time.monotonic() - started
    return result


def _run_trial(problem: _Problem, record: TrialRecord, result: SearchResult) -> None:
    began = time.monotonic()
    must_finish = not any(t.state == "complete" for t in result.trials)
    try:
        record.score = _cross_validate(problem, record, must_finish)
        record.state = "complete" if record.score is not None else "pruned"
    except (ValueError, ArithmeticError) as exc:  # a configuration the data cannot support
        record.state, record.params = "failed", record.params | {"error": str(exc)[:200]}
    record.seconds = time.monotonic() - began


def _optuna_state(state: str) -> Any:
    import optuna

    states = optuna.trial.TrialState
    return {"complete": states.COMPLETE, "pruned": states.PRUNED}.get(state, states.FAIL)
