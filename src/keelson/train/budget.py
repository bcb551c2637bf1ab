"""One wall-clock deadline for the whole run, and how much of it the search may use.

The search stops starting trials, and stops running ones, early enough for what
comes after it: the final refit (estimated from the best trials' fold fit times),
scoring the test set and writing the report (a fixed reserve).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from keelson.spec import Train
from keelson.train.candidates import Config


class _Timed(Protocol):
    fit_seconds: float  # mean fit time of one fold
    folds: int
    seconds: float  # the whole trial, wall clock
    config: Config


def process_start() -> float:
    """When this process started, on the ``time.monotonic`` clock: imports count too."""
    import psutil

    age = time.time() - psutil.Process().create_time()
    return time.monotonic() - max(age, 0.0)


@dataclass
class Deadline:
    """``budget`` seconds from ``started`` (a ``time.monotonic`` instant; default: now)."""

    budget: float
    started: float = field(default_factory=time.monotonic)

    @property
    def at(self) -> float:
        return self.started + self.budget

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def reserve(self) -> float:
        """Seconds kept for testing, registering and the report: 6 s plus 5 % of the budget
        (at most 30 % of it). Measured on 2 busy cores: those steps take 3 to 6 s."""
        return min(6.0 + 0.05 * self.budget, 0.3 * self.budget)

    def search_until(
        self, best: Sequence[_Timed], workers: int, spec: Train | None = None
    ) -> float:
        """When the search must be over, given the trials likely to be refitted and, with
        ``spec``, the checks it asks for after the search."""
        refit = _refit_seconds(best, workers)
        checks = checks_seconds(spec, best[0]) if spec is not None and best else 0.0
        saving = sum(save_seconds(t.config) for t in best)
        return self.at - self.reserve() - refit - checks - saving


CURVE_FITS = 3 * (0.1 + 0.25 + 0.5)  # the learning curve's fits, in full-size fold fits


def checks_seconds(spec: Train, best: _Timed, selection_done: bool = False) -> float:
    """Seconds of work after the search: feature selection (importance, then CV without
    the weak columns: two trials) and the learning curve (three folds at a tenth, a
    quarter and half of their rows; the best trial itself is its full-size point)."""
    selection = 2 * (best.seconds + 0.5) if spec.feature_selection and not selection_done else 0
    curve = CURVE_FITS * best.fit_seconds + 0.5 if spec.learning_curve else 0.0
    return selection + curve


def fits_in_time(durations: Sequence[float], until: float) -> bool:
    """Whether a trial as long as the median of ``durations`` (none: unknown, so yes)
    ends before ``until``."""
    return not durations or time.monotonic() + statistics.median(durations) <= until


def workers_and_threads(spec: Train) -> tuple[int, int]:
    """Trials at once (default: one per core) and the threads each learner may use."""
    cores = os.cpu_count() or 1
    workers = spec.workers or cores
    return workers, max(1, cores // workers)


def _refit_seconds(best: Sequence[_Timed], workers: int) -> float:
    """A refit on all rows costs about one fold's fit scaled by k/(k-1); members in parallel."""
    if not best:
        return 0.0
    each = [t.fit_seconds * t.folds / max(t.folds - 1, 1) for t in best]
    rounds = math.ceil(len(each) / max(workers, 1))
    return 1.2 * statistics.mean(each) * rounds


# Seconds to save one tree or boosting round with skops (safe, but slow for forests:
# skops.dumps took 1.2-1.6 ms per random-forest tree, 100 trees fitted on 750 to 30,000
# rows, and 1 ms per boosting round, on 2 cores; with a margin of 2.5 and 2).
_SAVE_PER_TREE = {"random_forest": 0.004, "extra_trees": 0.004, "hist_gradient_boosting": 0.002}


def save_seconds(config: Config) -> float:
    """About how long registering a fitted ``config`` takes; forests are the costly ones."""
    per_tree = _SAVE_PER_TREE.get(config.family, 0.001)
    trees = int(config.params.get("n_estimators", 300))
    bagged = 5 if config.imbalance == "balanced_bagging" else 1
    return per_tree * trees * bagged
