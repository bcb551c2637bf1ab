"""The fitted parts of a saved model, wherever they sit: pipeline steps, wrappers'
``estimator_`` (calibration, threshold) and blends' ``members_`` (an ensemble)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def replace_parts(estimator: Any, replace: Callable[[Any], Any]) -> None:
    """Apply ``replace`` to every fitted part below ``estimator``, in place, outermost first
    (what it returns takes the part's place and is walked in turn)."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        for position, (name, step) in enumerate(steps):
            steps[position] = (name, replace(step))
            replace_parts(steps[position][1], replace)
    inner = getattr(estimator, "estimator_", None)
    if inner is not None:
        estimator.estimator_ = replace(inner)
        replace_parts(estimator.estimator_, replace)
    members = getattr(estimator, "members_", None)
    if isinstance(members, list):
        for position, member in enumerate(members):
            members[position] = replace(member)
            replace_parts(members[position], replace)


def parts(estimator: Any) -> list[Any]:
    """``estimator`` and every fitted part below it."""
    found = [estimator]

    def keep(part: Any) -> Any:
        found.append(part)
        return part

    replace_parts(estimator, keep)
    return found
