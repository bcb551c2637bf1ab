"""How much of the deadline the search may use: what follows it is estimated, not guessed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from keelson.spec import Train
from keelson.train.budget import CURVE_FITS, Deadline, checks_seconds, save_seconds
from keelson.train.candidates import Config


@dataclass
class Timed:
    fit_seconds: float
    folds: int
    seconds: float
    config: Config


BEST = Timed(fit_seconds=2.0, folds=5, seconds=12.0, config=Config("linear", {"C": 1.0}))


def test_the_learning_curve_costs_its_smaller_fits_not_a_whole_trial() -> None:
    assert checks_seconds(Train(), BEST) == pytest.approx(CURVE_FITS * 2.0 + 0.5)
    assert BEST.seconds > CURVE_FITS * 2.0  # a trial took 12 s; the curve's fits take 5.1 s
    assert checks_seconds(Train(learning_curve=False), BEST) == 0.0


def test_feature_selection_costs_two_trials_until_it_is_done() -> None:
    spec = Train(feature_selection=True, learning_curve=False)
    assert checks_seconds(spec, BEST) == pytest.approx(2 * 12.5)
    assert checks_seconds(spec, BEST, selection_done=True) == 0.0


def test_the_search_ends_before_the_refit_the_checks_and_the_reserve() -> None:
    deadline = Deadline(300.0, started=0.0)
    refit = 1.2 * 2.0 * 5 / 4  # one fold's fit scaled to all rows, with a margin
    until = deadline.search_until([BEST], workers=2, spec=Train())
    after = refit + (CURVE_FITS * 2 + 0.5) + save_seconds(BEST.config)
    assert until == pytest.approx(300.0 - deadline.reserve() - after)
    assert deadline.search_until([], workers=2, spec=Train()) == 300.0 - deadline.reserve()
