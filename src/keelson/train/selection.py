"""Feature selection: drop the columns whose permutation importance does not pay.

On the training part only: the best configuration's permutation importance on
held-out fold rows names the columns that do not help (importance <= 0); the
configuration is cross-validated again without them, and the smaller model is
kept when its CV score is no worse (within a relative tolerance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from keelson.train.crossval import Outcome, Problem, cross_validate, fold_importance
from keelson.train.metrics import metric
from keelson.train.search import TrialRecord
from keelson.train.workers import JobFailed, Pool

TOLERANCE = 0.001  # relative: without the columns, the CV score may be this much worse


@dataclass(frozen=True)
class Selection:
    metric: str
    dropped: list[str]
    score_before: float
    score_after: float | None
    applied: bool
    note: str
    trial: TrialRecord | None = None  # the best configuration without the dropped columns

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "dropped": self.dropped,
            "score_before": self.score_before,
            "score_after": self.score_after,
            "applied": self.applied,
            "note": self.note,
        }


def select_features(problem: Problem, pool: Pool, best: TrialRecord, until: float) -> Selection:
    before = float(best.score or 0.0)
    importance = _run(pool, "importance", until, fold_importance, best.config)
    if not isinstance(importance, dict):
        return Selection(problem.metric, [], before, None, False, "no time left to measure")
    dropped = sorted(column for column, value in importance.items() if value <= 0.0)
    if not dropped:
        return Selection(problem.metric, [], before, None, False, "every column pays")
    config = replace(best.config, drop=tuple(dropped))
    outcome = _run(pool, "without", until, cross_validate, config)
    if not isinstance(outcome, Outcome) or outcome.score is None:
        return Selection(problem.metric, dropped, before, None, False, "no time left to check")
    sign = metric(problem.task, problem.metric).sign()
    applied = sign * (outcome.score - before) >= -TOLERANCE * max(abs(before), 1e-12)
    note = "kept the smaller model" if applied else "the columns help after all"
    trial = _record(best, config, outcome)
    return Selection(problem.metric, dropped, before, outcome.score, applied, note, trial)


def _run(pool: Pool, key: str, until: float, function: Any, *args: Any) -> Any:
    pool.submit(key, function, *args)
    while time.monotonic() < until:
        for _, value in pool.wait(until - time.monotonic()):
            return None if isinstance(value, JobFailed) else value
    pool.stop_busy()
    return None


def _record(best: TrialRecord, config: Any, outcome: Outcome) -> TrialRecord:
    return TrialRecord(
        trial=best.trial,
        config=config,
        score=outcome.score,
        state=outcome.state,
        fold_scores=outcome.fold_scores,
        train_score=best.train_score,
        fold_train_scores=outcome.train_scores,
        fit_seconds=sum(outcome.fit_seconds) / max(len(outcome.fit_seconds), 1),
        folds=len(outcome.fit_seconds),
        oof=outcome.oof,
    )
