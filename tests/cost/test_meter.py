from __future__ import annotations

import numpy as np

from keelson.cost.meter import meter


def test_meter_sees_cpu_and_memory_of_the_block() -> None:
    with meter() as usage:
        block = np.ones((64, 2**20 // 8 * 8 // 8), dtype=np.float64)  # ~64 MB
        total = float(sum(np.sqrt(block).sum() for _ in range(3)))
    assert total > 0
    assert usage.wall_s > 0 and usage.cpu_s > 0
    assert usage.peak_mb > 64
