"""API keys of the data plane: created and revoked in the store, verified from memory.

A key reads ``kls_<id>_<secret>``: ``id`` is 8 public hex digits that find the key,
``secret`` is 43 url-safe characters from :mod:`secrets`. The store keeps only the
SHA-256 of the secret (a fast hash suits a high-entropy random secret), so the
plaintext is shown once, at creation. Scopes nest: ``admin`` ⊃ ``predict`` ⊃ ``read``.

A server verifies keys against a :class:`KeyRing`, an in-memory snapshot of the live
keys: the request path never touches the database, and if the database goes away
:meth:`KeyRing.refresh` keeps the last good snapshot, so serving goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError as DatabaseIntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from keelson.errors import KeelsonError, NotFoundError
from keelson.store.store import Store
from keelson.store.tables import ApiKey, utcnow

ScopeName = Literal["read", "predict", "admin"]
SCOPES: tuple[ScopeName, ...] = get_args(ScopeName)  # weakest first; each implies the ones before
PREFIX = "kls"
_SECRET_BYTES = 32  # token_urlsafe(32): 43 characters, 256 bits
_TOKEN = re.compile(rf"{PREFIX}_(?P<id>[0-9a-f]{{8}})_(?P<secret>[A-Za-z0-9_-]{{32,128}})")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ID_ATTEMPTS = 5
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who a verified request comes from: the key's id, name, scopes and rate limit."""

    key_id: str
    name: str
    scopes: frozenset[str]
    rate: float | None = None  # requests/second; None: the server's default
    burst: int | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: everything but its secret."""

    id: str
    name: str
    scope: ScopeName
    rate: float | None
    burst: int | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def live(self) -> bool:
        return self.revoked_at is None


def implied_scopes(scope: str) -> frozenset[str]:
    """``predict`` -> {read, predict}: the scope itself and every weaker one."""
    check_scope(scope)
    return frozenset(SCOPES[: SCOPES.index(scope) + 1])


def check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise KeelsonError(
            f"the scope must be one of {', '.join(SCOPES)}. Got {scope!r} instead.",
            hint="read: metadata and metrics; predict: read and inference; admin: everything.",
        )


def create_key(
    store: Store,
    name: str,
    scope: str,
    rate: float | None = None,
    burst: int | None = None,
) -> tuple[KeyInfo, str]:
    """Record a new key and return it with its plaintext, which is never stored or shown again."""
    _check_new_key(name, scope, rate, burst)
    for _ in range(_ID_ATTEMPTS):  # 8 hex digits: a clash is rare, but the id is the lookup key
        key_id, secret = secrets.token_hex(4), secrets.token_urlsafe(_SECRET_BYTES)
        row = ApiKey(
            id=key_id,
            name=name,
            secret_sha256=_sha256(secret).hex(),
            scope=scope,
            rate=rate,
            burst=burst,
        )
        try:
            with store.session() as session:
                _refuse_live_name(session, name)
                session.add(row)
        except DatabaseIntegrityError:
            with store.session() as session:
                _refuse_live_name(session, name)  # lost a race for the name: say so
            continue
        return _info(row), f"{PREFIX}_{key_id}_{secret}"
    raise KeelsonError("could not draw an unused key id; try again.")


def list_keys(store: Store, *, include_revoked: bool = True) -> list[KeyInfo]:
    """Every key, oldest first; revoked ones only when ``include_revoked``."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    with store.session() as session:
        return [_info(row) for row in session.scalars(query)]


def revoke_key(store: Store, name_or_id: str) -> KeyInfo:
    """Revoke the live key with this name or id; servers drop it at their next refresh."""
    with store.session() as session:
        rows = session.scalars(
            select(ApiKey).where(
                ApiKey.revoked_at.is_(None), or_(ApiKey.name == name_or_id, ApiKey.id == name_or_id)
            )
        ).all()
        if not rows:
            raise NotFoundError(
                f"no live API key is named or has the id '{name_or_id}'.",
                hint="`keelson keys list` shows the keys.",
            )
        if len(rows) > 1:
            raise KeelsonError(
                f"'{name_or_id}' is the name of one key and the id of another.",
                hint=f"Pass the id instead: one of {', '.join(sorted(r.id for r in rows))}.",
            )
        rows[0].revoked_at = utcnow()
        return _info(rows[0])


class KeyRing:
    """An in-memory snapshot of the live keys, verified without touching the database."""

    def __init__(self, keys: Mapping[str, tuple[bytes, Principal]] | None = None) -> None:
        self._keys: Mapping[str, tuple[bytes, Principal]] = dict(keys or {})
        self.loaded_at: datetime | None = None

    @classmethod
    def load(cls, store: Store) -> KeyRing:
        """Read the live keys now; a database error propagates (nothing to fall back on)."""
        ring = cls()
        ring._keys = _snapshot(store)
        ring.loaded_at = utcnow()
        return ring

    def refresh(self, store: Store) -> bool:
        """Reload from the store; on a database error keep the old snapshot and return False."""
        try:
            keys = _snapshot(store)
        except SQLAlchemyError as exc:
            log.warning(
                "keelson: cannot refresh API keys (%s); still using the %d keys loaded at %s.",
                type(exc).__name__,
                len(self._keys),
                self.loaded_at,
            )
            return False
        self._keys, self.loaded_at = keys, utcnow()  # one reference swap: readers see old or new
        return True

    def verify(self, token: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown or revoked key."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        entry = self._keys.get(match["id"])
        if entry is None:
            return None
        digest, principal = entry
        if not hmac.compare_digest(digest, _sha256(match["secret"])):
            return None
        return principal

    def __len__(self) -> int:
        return len(self._keys)


async def keep_fresh(keyring: KeyRing, store: Store, every_s: float = 30.0) -> None:
    """Refresh ``keyring`` every ``every_s`` seconds until cancelled (run it as a task)."""
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(keyring.refresh, store)


def _snapshot(store: Store) -> dict[str, tuple[bytes, Principal]]:
    with store.session() as session:
        rows = session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None))).all()
    return {row.id: (bytes.fromhex(row.secret_sha256), _principal(row)) for row in rows}


def _principal(row: ApiKey) -> Principal:
    return Principal(row.id, row.name, implied_scopes(row.scope), row.rate, row.burst)


def _info(row: ApiKey) -> KeyInfo:
    scope: ScopeName = row.scope  # type: ignore[assignment]
    return KeyInfo(row.id, row.name, scope, row.rate, row.burst, row.created_at, row.revoked_at)


def _sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def _refuse_live_name(session: Session, name: str) -> None:
    taken = session.scalar(
        select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
    )
    if taken is not None:
        raise KeelsonError(
            f"a live API key is already named '{name}' (id {taken}).",
            hint=f"Pick another name, or revoke it first: `keelson keys revoke {name}`.",
        )


def _check_new_key(name: str, scope: str, rate: float | None, burst: int | None) -> None:
    if not _NAME.match(name):
        raise KeelsonError(
            f"the key name must be 1-100 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit. Got {name!r} instead."
        )
    check_scope(scope)
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise KeelsonError(f"the rate must be a positive number of requests/second. Got {rate}.")
    if burst is not None and (isinstance(burst, bool) or burst < 1):
        raise KeelsonError(f"the burst must be a positive whole number of requests. Got {burst}.")
