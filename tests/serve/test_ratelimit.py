"""Rate limits over real HTTP: 429 with Retry-After past the burst, refilled by the clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from keelson.registry.model import LoadedModel
from keelson.security.keys import KeyRing, create_key
from keelson.serve import create_app
from keelson.serve.auth import ApiKeyAuth, route_scope
from keelson.serve.ratelimit import RateLimit, TokenBuckets

from .conftest import serving

METADATA = "/v2/models/toy"


class FakeClock:
    """A monotonic clock the test moves by hand: refills without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyRing, dict[str, str]]:
    from keelson.store.store import locate, open_store

    store = open_store(locate(tmp_path_factory.mktemp("ratelimit")))
    plaintext = {
        "default": create_key(store, "default", "read")[1],
        "other": create_key(store, "other", "read")[1],
        "slow": create_key(store, "slow", "read", rate=0.5, burst=1)[1],
        "bursty": create_key(store, "bursty", "read", burst=5)[1],
    }
    ring = KeyRing.load(store)
    store.close()
    return ring, plaintext


@contextmanager
def limited(
    model: LoadedModel, ring: KeyRing | None, clock: FakeClock, **options: Any
) -> Iterator[httpx.Client]:
    """The real app behind RateLimit (and ApiKeyAuth when ``ring``), on a real server."""
    app = RateLimit(create_app(model), clock=clock, **options)
    outer = ApiKeyAuth(app, ring) if ring is not None else app
    with serving(outer) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def statuses(client: httpx.Client, count: int, key: str | None = None) -> list[int]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return [client.get(METADATA, headers=headers).status_code for _ in range(count)]


def test_past_the_burst_is_429_with_retry_after_until_the_bucket_refills(
    model: LoadedModel, keys: tuple[KeyRing, dict[str, str]]
) -> None:
    ring, plaintext = keys
    clock = FakeClock()
    with limited(model, ring, clock, rate=1.0, burst=3) as client:
        assert statuses(client, 3, plaintext["default"]) == [200, 200, 200]
        refused = client.get(METADATA, headers={"Authorization": f"Bearer {plaintext['default']}"})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        message = refused.json()["error"]
        assert "the API key 'default'" in message and "retry in 1 s" in message
        assert statuses(client, 1, plaintext["other"]) == [200]  # a bucket per key
        clock.advance(1.0)
        assert statuses(client, 2, plaintext["default"]) == [200, 429]
        clock.advance(10.0)  # refills to the burst, no further
        assert statuses(client, 4, plaintext["default"]) == [200, 200, 200, 429]


def test_a_keys_own_rate_and_burst_override_the_servers(
    model: LoadedModel, keys: tuple[KeyRing, dict[str, str]]
) -> None:
    ring, plaintext = keys
    clock = FakeClock()
    with limited(model, ring, clock, rate=100.0, burst=2) as client:
        assert statuses(client, 2, plaintext["slow"]) == [200, 429]
        refused = client.get(METADATA, headers={"Authorization": f"Bearer {plaintext['slow']}"})
        assert refused.headers["retry-after"] == "2"  # one token at 0.5/s
        assert "0.5 requests/second with bursts of 1" in refused.json()["error"]
        clock.advance(2.0)
        assert statuses(client, 1, plaintext["slow"]) == [200]
        assert statuses(client, 6, plaintext["bursty"]) == [200] * 5 + [429]  # server's rate


def test_without_auth_callers_are_told_apart_by_address(model: LoadedModel) -> None:
    clock = FakeClock()
    with limited(model, None, clock, rate=0.3, burst=2) as client:
        assert statuses(client, 2) == [200, 200]
        refused = client.get(METADATA)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "4"  # 3.33 s, rounded up
        assert "host 127.0.0.1" in refused.json()["error"]


def test_exempt_routes_are_never_limited(
    model: LoadedModel, keys: tuple[KeyRing, dict[str, str]]
) -> None:
    ring, plaintext = keys
    clock = FakeClock()
    rejected: list[str] = []
    options = {"exempt": lambda scope: route_scope(scope) is None, "on_reject": rejected.append}
    with limited(model, ring, clock, rate=1.0, burst=1, **options) as client:
        assert [client.get("/v2/health/ready").status_code for _ in range(5)] == [200] * 5
        assert statuses(client, 2, plaintext["default"]) == [200, 429]
    assert rejected == ["rate_limited"]


def test_a_rate_of_none_limits_only_keys_with_their_own(
    model: LoadedModel, keys: tuple[KeyRing, dict[str, str]]
) -> None:
    ring, plaintext = keys
    with limited(model, ring, FakeClock(), rate=None) as client:
        assert statuses(client, 10, plaintext["default"]) == [200] * 10
        assert statuses(client, 2, plaintext["slow"]) == [200, 429]


def test_idle_buckets_are_dropped_and_their_number_is_bounded() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock, max_buckets=3)
    for caller in ("a", "b", "c", "d"):
        assert buckets.take(caller, rate=1.0, burst=2) == 0.0
    assert len(buckets) == 3  # "a", the least recently used, made room
    clock.advance(1.0)
    assert buckets.take("d", rate=1.0, burst=2) == 0.0
    clock.advance(1.0)  # b and c have refilled (nothing to remember), d has not
    assert buckets.take("e", rate=1.0, burst=2) == 0.0
    assert len(buckets) == 2
    assert buckets.take("e", rate=1.0, burst=2) == 0.0
    assert buckets.take("e", rate=1.0, burst=2) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0.0}, "'rate' parameter of RateLimit must be a positive, finite number"),
        ({"rate": float("inf")}, "'rate'"),
        ({"rate": 1.0, "burst": 0}, "'burst' parameter of RateLimit must be a positive int"),
        ({"rate": 1.0, "burst": 1.5}, "'burst'"),
        ({"rate": 1.0, "max_buckets": 0}, "'max_buckets'"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimit(never_called, **options)


async def never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("a misconfigured RateLimit must not be built")
