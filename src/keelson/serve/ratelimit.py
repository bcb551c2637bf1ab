"""Per-key rate limits: a token bucket per caller, answering 429 with ``Retry-After``.

A caller is its API key when :class:`~keelson.serve.auth.ApiKeyAuth` ran first (so put
this middleware inside it), else its client address. A key's own ``rate``/``burst``
override the server's. One server process keeps its buckets in memory (one event loop,
no locks: an idle bucket refills and is dropped, at most ``max_buckets`` are kept, least
recently used first out); the worker processes of one server share theirs in a SQLite
file (:class:`SharedTokenBuckets`), so N workers still grant a caller its rate, not N
times it.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


class Buckets(Protocol):
    def take(self, key: str, rate: float, burst: int) -> float:
        """Spend one token: 0.0 if there was one, else the seconds until there will be."""
        ...


def spend(tokens: float, elapsed: float, rate: float, burst: int) -> tuple[float, float]:
    """A bucket holding ``tokens`` ``elapsed`` seconds ago, refilled and asked for one:
    (tokens left, 0.0) when granted, else (tokens, seconds until one is there)."""
    tokens = min(float(burst), tokens + elapsed * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


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
        bucket.tokens, wait = spend(bucket.tokens, now - bucket.stamp, rate, burst)
        bucket.stamp, bucket.full_after = now, burst / rate
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)

    def _drop_full(self, now: float) -> None:
        """Forget the least recently used buckets that have refilled: they hold no state."""
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.stamp < oldest.full_after:
                return
            self._buckets.popitem(last=False)


class SharedTokenBuckets:
    """Token buckets in a SQLite file that the worker processes of one server share.

    Each take is one short write transaction (WAL, no fsync: the buckets are worth
    nothing after a restart). ``clock`` must be the same in every process: Linux's
    monotonic clock is system-wide. Buckets that have refilled are deleted now and then.
    """

    PRUNE_EVERY = 1000  # takes

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._db = sqlite3.connect(  # built before the event loop's thread may start
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS buckets "
            "(caller TEXT PRIMARY KEY, tokens REAL NOT NULL, stamp REAL NOT NULL, "
            "full_at REAL NOT NULL)"
        )
        self._takes = 0

    def take(self, key: str, rate: float, burst: int) -> float:
        now = self.clock()
        self._db.execute("BEGIN IMMEDIATE")  # one writer at a time: read, refill, spend
        try:
            row = self._db.execute(
                "SELECT tokens, stamp FROM buckets WHERE caller = ?", (key,)
            ).fetchone()
            tokens, stamp = row if row is not None else (float(burst), now)
            tokens, wait = spend(tokens, now - stamp, rate, burst)
            full_at = now + (burst - tokens) / rate
            self._db.execute(
                "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?, ?)", (key, tokens, now, full_at)
            )
            self._takes += 1
            if self._takes % self.PRUNE_EVERY == 0:
                self._db.execute("DELETE FROM buckets WHERE full_at <= ?", (now,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return wait


class RateLimit:
    """Pure ASGI middleware: ``rate`` requests/second per caller, bursts of up to ``burst``.

    ``rate=None`` limits only the keys that carry their own rate. ``burst`` defaults to
    one second's worth (at least 1). ``buckets`` (default: in memory, ``clock`` and
    ``max_buckets``) may be shared by several processes. ``exempt(scope)`` skips requests
    (e.g. health probes); ``on_reject("rate_limited")`` is called for each 429.
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
        buckets: Buckets | None = None,
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
        self.buckets = buckets or TokenBuckets(clock, max_buckets)
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
