"""Per-key rate limits: a token bucket per caller, answering 429 with ``Retry-After``.

A caller is its API key when :class:`~keelson.serve.auth.ApiKeyAuth` ran first (so put
this middleware inside it), else its client address. A key's own ``rate``/``burst``
override the server's. Buckets live in memory, one event loop, no locks: an idle
bucket refills and is dropped, and at most ``max_buckets`` are kept (least recently
used first out). Limits are per process: with N workers a caller gets up to N times
the rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from keelson.serve.auth import principal_of
from keelson.serve.errors import error_response

DEFAULT_MAX_BUCKETS = 10_000


def caller_key(scope: Scope) -> str:
    """``key:<id>`` for an authenticated request, else ``host:<client address>``."""
    principal = principal_of(scope)
    if principal is not None:
        return f"key:{principal.key_id}"
    client = scope.get("client")
    return f"host:{client[0] if client else 'unknown'}"


@dataclass
class _Bucket:
    tokens: float
    stamp: float  # clock reading when ``tokens`` was last brought up to date
    full_after: float  # seconds to refill from empty: idle this long, the bucket is full


class TokenBuckets:
    """Token buckets by caller, bounded in memory; ``clock`` is monotonic seconds."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
    ) -> None:
        _check("max_buckets", max_buckets, integer=True)
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently used first

    def take(self, key: str, rate: float, burst: int) -> float:
        """Spend one token: 0.0 if there was one, else the seconds until there will be."""
        now = self.clock()
        self._drop_full(now)
        bucket = self._buckets.pop(key, None) or _Bucket(float(burst), now, burst / rate)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp, bucket.full_after = now, burst / rate
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _drop_full(self, now: float) -> None:
        """Forget the least recently used buckets that have refilled: they hold no state."""
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.stamp < oldest.full_after:
                return
            self._buckets.popitem(last=False)


class RateLimit:
    """Pure ASGI middleware: ``rate`` requests/second per caller, bursts of up to ``burst``.

    ``rate=None`` limits only the keys that carry their own rate. ``burst`` defaults to
    one second's worth (at least 1). ``exempt(scope)`` skips requests (e.g. health
    probes); ``on_reject("rate_limited")`` is called for each 429.
    """

    def __init__(
        self,
        app: ASGIApp,
        rate: float | None,
        burst: int | None = None,
        key: Callable[[Scope], str] = caller_key,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
        exempt: Callable[[Scope], bool] | None = None,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        if rate is not None:
            _check("rate", rate)
        if burst is not None:
            _check("burst", burst, integer=True)
        self.app = app
        self.rate = rate
        self.burst = burst
        self.key = key
        self.buckets = TokenBuckets(clock, max_buckets)
        self.exempt = exempt
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt is not None and self.exempt(scope)):
            await self.app(scope, receive, send)
            return
        rate, burst = self._limits(scope)
        if rate is None:
            await self.app(scope, receive, send)
            return
        caller = self.key(scope)
        wait = self.buckets.take(caller, rate, burst)
        if wait == 0.0:
            await self.app(scope, receive, send)
            return
        if self.on_reject is not None:
            self.on_reject("rate_limited")
        retry_after = max(1, math.ceil(wait))
        response = error_response(
            429,
            _message(scope, caller, rate, burst, retry_after),
            {"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)

    def _limits(self, scope: Scope) -> tuple[float | None, int]:
        """The caller's (rate, burst): its key's own where set, else the server's."""
        principal = principal_of(scope)
        rate = principal.rate if principal and principal.rate is not None else self.rate
        burst = principal.burst if principal and principal.burst is not None else self.burst
        if burst is None:
            burst = max(1, math.ceil(rate or 1.0))
        return rate, burst


def _message(scope: Scope, caller: str, rate: float, burst: int, retry_after: int) -> str:
    principal = principal_of(scope)
    who = f"the API key '{principal.name}'" if principal else caller.replace(":", " ", 1)
    return (
        f"rate limit exceeded for {who}: {rate:g} requests/second with bursts of {burst}; "
        f"retry in {retry_after} s (the Retry-After header)."
    )


def _check(name: str, value: float, *, integer: bool = False) -> None:
    wrong_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if wrong_type or not math.isfinite(value) or value <= 0:
        kind = "positive int" if integer else "positive, finite number"
        raise ValueError(
            f"The '{name}' parameter of RateLimit must be a {kind}. Got {value!r} instead."
        )
