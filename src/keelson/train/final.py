"""After the search: the ensemble, calibration, threshold, refit and the one test.

Everything is decided on out-of-fold predictions of the training part: whether a
greedy ensemble beats the best trial, the probability calibration and the decision
threshold (binary). The chosen members are then refitted on the whole training part
(in the worker processes, while another worker draws the learning curve) and the
result is scored exactly once on the untouched test rows, with bootstrap intervals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from keelson.spec import Costs, Train
from keelson.train import crossval
from keelson.train.budget import Deadline, checks_seconds
from keelson.train.calibration import CalibrationChoice, apply, choose_calibration
from keelson.train.crossval import Problem, predict_scores
from keelson.train.ensemble import blend, select_ensemble
from keelson.train.evaluate import Interval, all_metrics, bootstrap, tune_threshold
from keelson.train.importance import permutation_importance
from keelson.train.metrics import metric
from keelson.train.search import SearchResult, TrialRecord
from keelson.train.selection import Selection, select_features
from keelson.train.workers import JobFailed, Pool

ENSEMBLE_TOLERANCE = 1e-4  # an ensemble must beat the best trial by more than this, out of fold


@dataclass(frozen=True)
class LabelledRows:
    features: pl.DataFrame
    labels: np.ndarray

    @property
    def empty(self) -> bool:
        return self.features.height == 0


@dataclass(frozen=True)
class Member:
    trial: TrialRecord
    weight: float

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.trial.trial, "family": self.trial.family, "weight": self.weight}


@dataclass
class FinalModel:
    pipeline: Any
    members: list[Member]
    ensemble: dict[str, Any] | None
    calibration: CalibrationChoice | None
    threshold: float | None
    cv_metrics: dict[str, float]
    test_labels: np.ndarray
    test_scores: np.ndarray
    test_metrics: dict[str, Interval]
    importance: list[dict[str, Any]] = field(default_factory=list)
    learning_curve: list[dict[str, Any]] = field(default_factory=list)
    selection: Selection | None = None


@dataclass(frozen=True)
class _Choice:
    members: list[Member]
    oof: np.ndarray
    covered: np.ndarray  # rows with an out-of-fold prediction
    ensemble: dict[str, Any] | None


def finish(
    problem: Problem,
    result: SearchResult,
    pool: Pool,
    deadline: Deadline,
    spec: Train,
    test: LabelledRows,
    ordered: bool,
) -> FinalModel:
    selection = None
    if spec.feature_selection:
        after = checks_seconds(spec, result.best, selection_done=True)
        until = deadline.search_until([result.best], pool.size) - after
        selection = select_features(problem, pool, result.best, until)
    if selection is not None and selection.applied and selection.trial is not None:
        choice = _single(problem, selection.trial)  # the smaller model, alone
    else:
        choice = _choose_members(problem, result, spec)
        if not _affordable(choice, deadline, pool.size):
            choice = _single(problem, result.best)
    fitted, curve = _refit(problem, pool, deadline, choice, spec, ordered)
    if len(fitted) < len(choice.members):  # an optional member did not finish in time
        choice = _single(problem, choice.members[0].trial)
    calibration, threshold, oof = _decide(problem, choice, spec)
    costs = spec.costs if spec.threshold_metric == "cost" else None
    pipeline = _assemble(
        problem, [fitted[m.trial.trial] for m in choice.members], choice, calibration, threshold
    )
    final = FinalModel(
        pipeline=pipeline,
        members=choice.members,
        ensemble=choice.ensemble,
        calibration=calibration,
        threshold=threshold,
        cv_metrics=all_metrics(
            problem.task, problem.labels[choice.covered], oof[choice.covered], threshold, costs
        ),
        test_labels=test.labels,
        test_scores=np.empty(0),
        test_metrics={},
        learning_curve=curve,
        selection=selection,
    )
    if not test.empty:
        _test(final, problem, test, spec, deadline, costs)
    return final


def _choose_members(problem: Problem, result: SearchResult, spec: Train) -> _Choice:
    kept = [t for t in result.complete() if t.oof is not None]
    single = _single(problem, result.best)
    if not spec.ensemble or len(kept) < 2:
        return single
    scorer = metric(problem.task, problem.metric)
    predictions = [t.oof for t in kept if t.oof is not None]
    ensemble = select_ensemble(
        predictions,
        problem.labels,
        scorer.fn,
        scorer.higher_is_better,
        mask=single.covered,
        folds=_fold_of_rows(problem),
    )
    summary = ensemble.to_dict() | {"used": ensemble.improves(ENSEMBLE_TOLERANCE)}
    summary["members"] = [
        {"trial": kept[i].trial, "family": kept[i].family, "weight": float(ensemble.weights[i])}
        for i in ensemble.members
    ]
    if not summary["used"]:
        return _Choice(single.members, single.oof, single.covered, summary)
    members = [Member(kept[i], float(ensemble.weights[i])) for i in ensemble.members]
    oof = blend(predictions, ensemble.weights)
    return _Choice(members, oof, single.covered, summary)


def _fold_of_rows(problem: Problem) -> np.ndarray:
    """The validation fold that scored each row (-1: none did)."""
    fold_of = np.full(problem.labels.shape[0], -1)
    for index, (_, score_rows) in enumerate(problem.folds):
        fold_of[score_rows] = index
    return fold_of


def _affordable(choice: _Choice, deadline: Deadline, workers: int) -> bool:
    """Whether the members can be refitted and saved before the reserve: a blend of large
    forests can take longer to save (skops) than it gains."""
    if len(choice.members) == 1:
        return True
    trials = [member.trial for member in choice.members]
    need = deadline.at - deadline.search_until(trials, workers) - deadline.reserve()
    return need <= deadline.remaining() - deadline.reserve()


def _single(problem: Problem, best: TrialRecord) -> _Choice:
    oof = best.oof if best.oof is not None else np.full(problem.labels.shape, np.nan)
    covered = ~np.isnan(oof if oof.ndim == 1 else oof[:, 0])
    return _Choice([Member(best, 1.0)], oof, covered, None)


def _refit(
    problem: Problem,
    pool: Pool,
    deadline: Deadline,
    choice: _Choice,
    spec: Train,
    ordered: bool,
) -> tuple[dict[int, Any], list[dict[str, Any]]]:
    """Fit the members on all training rows (the best one is waited for, whatever the
    clock says); an idle worker meanwhile draws the learning curve of the best member."""
    pending = {m.trial.trial: m for m in choice.members}
    for key, member in pending.items():
        if not pool.idle():
            break
        pool.submit(key, crossval.fit, member.trial.config)
    queued = [key for key in pending if key not in pool.busy()]
    stop_at = deadline.at - deadline.reserve()
    if spec.learning_curve and pool.idle() and not queued:
        best = choice.members[0].trial
        known = list(zip(best.fold_train_scores, best.fold_scores, strict=False))
        full = known if len(known) == len(problem.folds) else None  # else: fitted again
        pool.submit("curve", crossval.learning_points, best.config, stop_at - 1.0, ordered, full)
    fitted: dict[int, Any] = {}
    curve: list[dict[str, Any]] = []
    first = choice.members[0].trial.trial
    while pool.busy():
        must_wait = first not in fitted
        timeout = 1.0 if must_wait else stop_at - time.monotonic()
        for key, value in pool.wait(timeout):
            if key == "curve":
                curve = [] if isinstance(value, JobFailed) else value
            elif not isinstance(value, JobFailed):
                fitted[key] = value
            if queued and pool.idle():
                next_key = queued.pop(0)
                pool.submit(next_key, crossval.fit, pending[next_key].trial.config)
        if first in fitted and time.monotonic() >= stop_at:
            pool.stop_busy()
    if first not in fitted:  # the best member failed to refit: nothing to serve
        raise RuntimeError(f"refitting the best trial {first} failed")
    return fitted, curve


def _decide(
    problem: Problem, choice: _Choice, spec: Train
) -> tuple[CalibrationChoice | None, float | None, np.ndarray]:
    """Binary: the calibration and the decision threshold, learned out of fold."""
    if problem.task != "binary":
        return None, None, choice.oof
    rows = choice.covered
    calibration = None
    oof = choice.oof
    if spec.calibration != "none":
        calibration = choose_calibration(
            oof[rows], problem.labels[rows], spec.calibration, problem.seed
        )
        oof = np.where(rows, apply(calibration.calibration, np.nan_to_num(oof)), np.nan)
    threshold, _ = tune_threshold(
        problem.labels[rows], oof[rows], spec.threshold_metric, spec.costs
    )
    return calibration, threshold, oof


def _assemble(
    problem: Problem,
    fitted: list[Any],
    choice: _Choice,
    calibration: CalibrationChoice | None,
    threshold: float | None,
) -> Any:
    """One estimator to save and serve, built around the already-fitted members (each
    held once: wrappers keep unfitted templates as their parameters)."""
    from keelson.train.blend import blend_prefit
    from keelson.train.calibration import CalibratedClassifier, Calibration

    model = fitted[0]
    if len(fitted) > 1:
        model = blend_prefit(fitted, [m.weight for m in choice.members], problem.task)
    if problem.task != "binary":
        return model
    chosen = calibration.calibration if calibration is not None else Calibration()
    return CalibratedClassifier.prefit(model, chosen, threshold if threshold is not None else 0.5)


def _test(
    final: FinalModel,
    problem: Problem,
    test: LabelledRows,
    spec: Train,
    deadline: Deadline,
    costs: Costs | None,
) -> None:
    """Score the test rows once; importance too, if the clock allows."""
    scores = predict_scores(final.pipeline, test.features, problem.task, problem.n_classes)
    final.test_scores = scores
    final.test_metrics = bootstrap(
        problem.task, test.labels, scores, final.threshold, spec.bootstrap, spec.seed, costs
    )
    final.importance = permutation_importance(
        final.pipeline,
        test.features,
        test.labels,
        problem,
        repeats=3,
        until=deadline.at - 0.8 * deadline.reserve(),
    )
