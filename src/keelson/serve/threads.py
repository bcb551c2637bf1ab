"""One intra-op thread per serving process: scale with processes, not threads.

On small machines, OpenMP/BLAS threads make a one-row prediction many times more
expensive (DESIGN.md). The variables only take effect if set before the numeric
libraries load, so ``pin_environment`` runs first thing in ``keelson serve``.
"""

from __future__ import annotations

import os
from typing import Any

from keelson.serve.parts import parts

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_environment() -> None:
    """Default every intra-op thread pool to one thread (an explicit setting wins)."""
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, "1")


def single_threaded(estimator: Any) -> None:
    """Set ``n_jobs`` to 1 on every fitted part (pipeline steps, wrappers, blend members)."""
    for part in parts(estimator):
        if hasattr(part, "n_jobs"):
            part.n_jobs = 1
