"""Rate-limit buckets shared by the worker processes of one server (a SQLite file)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import httpx
import pytest

from keelson.registry.model import LoadedModel
from keelson.serve import create_app
from keelson.serve.app import Deployment
from keelson.serve.ratelimit import SharedTokenBuckets
from keelson.serve.run import _scratch
from keelson.spec import RateLimit as RateLimitSpec
from keelson.spec import Serve

from .conftest import serving
from .test_ratelimit import FakeClock


def test_two_handles_on_one_file_share_a_bucket(tmp_path: Path) -> None:
    clock = FakeClock()
    first = SharedTokenBuckets(tmp_path / "buckets.sqlite", clock)
    second = SharedTokenBuckets(tmp_path / "buckets.sqlite", clock)

    granted = [b.take("key:a", rate=2.0, burst=3) for b in (first, second, first, second)]

    assert granted[:3] == [0.0, 0.0, 0.0]  # the burst, spent through either handle
    assert granted[3] == pytest.approx(0.5)  # one token at 2/s
    assert second.take("key:b", rate=2.0, burst=3) == 0.0  # buckets are per caller
    clock.advance(0.5)
    assert first.take("key:a", rate=2.0, burst=3) == 0.0  # refilled for everyone
    assert second.take("key:a", rate=2.0, burst=3) == pytest.approx(0.5)


def test_refilled_buckets_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SharedTokenBuckets, "PRUNE_EVERY", 3)
    clock = FakeClock()
    buckets = SharedTokenBuckets(tmp_path / "buckets.sqlite", clock)
    buckets.take("key:a", rate=1.0, burst=2)
    clock.advance(10.0)  # a is full again: nothing to remember
    buckets.take("key:b", rate=1.0, burst=2)
    buckets.take("key:b", rate=1.0, burst=2)  # the third take prunes

    callers = buckets._db.execute("SELECT caller FROM buckets").fetchall()
    assert callers == [("key:b",)]


def _take_many(path: str, takes: int, granted: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    buckets = SharedTokenBuckets(path)
    granted.put(sum(buckets.take("key:shared", rate=0.001, burst=6) == 0.0 for _ in range(takes)))


def test_processes_taking_at_once_are_granted_the_burst_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    granted: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    path = str(tmp_path / "buckets.sqlite")
    workers = [context.Process(target=_take_many, args=(path, 20, granted)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert sum(granted.get(timeout=10) for _ in workers) == 6  # not 6 per process


def test_apps_built_as_two_workers_grant_one_burst(model: LoadedModel, tmp_path: Path) -> None:
    """Two apps of one deployment, as ``keelson serve --workers 2`` builds them, each on
    its own server: requests alternating between them get one burst in all."""
    settings = Serve(rate_limit=RateLimitSpec(per_second=0.01, burst=4))
    shared = str(tmp_path / "rate-limits.sqlite")
    deployment = Deployment(models={"primary": model}, settings=settings, shared_buckets=shared)
    with (
        serving(create_app(deployment=deployment)) as first,
        serving(create_app(deployment=deployment)) as second,
    ):
        statuses = [httpx.get(url + "/v2/models/toy").status_code for url in [first, second] * 6]

    assert sorted(statuses) == [200] * 4 + [429] * 8, statuses


def test_only_several_workers_get_a_shared_file() -> None:
    with _scratch(1) as none, _scratch(2) as folder:
        assert none is None
        assert folder is not None and Path(folder).is_dir()
    assert not Path(folder).exists()  # removed when the server stops
