"""What every runner shares: the task the harness hands over, and how results go back.

A runner runs in its tool's own venv (``python <runner>.py TASK.json``), so this module
needs only the standard library and NumPy.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Task:
    """One fit: the training table (with the target), the test features, and the rules."""

    train: Path
    test: Path
    out: Path
    workdir: Path
    target: str
    positive: str | int
    time_column: str | None
    budget: float
    seed: int
    preset: str | None

    @classmethod
    def read(cls, path: Path) -> Task:
        raw = json.loads(path.read_text(encoding="utf-8"))
        paths = {k: Path(raw[k]) for k in ("train", "test", "out", "workdir")}
        return cls(**{**raw, **paths})


def task_from_argv() -> Task:
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {Path(sys.argv[0]).name} TASK.json")
    return Task.read(Path(sys.argv[1]))


def write_result(task: Task, proba: Any, info: dict[str, Any]) -> None:
    """P(positive) per test row as ``.npy``; timings and details beside it as JSON."""
    values = np.asarray(proba, dtype=np.float64).reshape(-1)
    np.save(task.out, values)
    task.out.with_suffix(".json").write_text(json.dumps(info, default=str), encoding="utf-8")


class Clock:
    """Seconds since the runner started, and since the last lap."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds
