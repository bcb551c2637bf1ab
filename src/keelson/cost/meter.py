"""Metering a piece of work: wall seconds, CPU seconds and peak resident memory.

CPU time is the process's user + system time (all threads, plus finished
children); peak memory is sampled from a background thread, so it is the peak
during this piece of work, not since the process started.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil


@dataclass
class Usage:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mb: float = 0.0


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class _PeakSampler:
    process: psutil.Process
    interval: float = 0.05
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def meter() -> Iterator[Usage]:
    """Measure the block; the yielded Usage is filled in when the block ends."""
    process = psutil.Process(os.getpid())
    usage = Usage()
    sampler = _PeakSampler(process)
    sampler.sample()
    thread = threading.Thread(target=sampler.run, name="keelson-meter", daemon=True)
    thread.start()
    wall, cpu = time.perf_counter(), _cpu_seconds(process)
    try:
        yield usage
    finally:
        sampler.stop()
        thread.join()
        sampler.sample()
        usage.wall_s = time.perf_counter() - wall
        usage.cpu_s = _cpu_seconds(process) - cpu
        usage.peak_mb = sampler.peak / 2**20
