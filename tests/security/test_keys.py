"""API keys in a real store (SQLite and PostgreSQL): hashed at rest, scoped, revocable."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from keelson.errors import KeelsonError, NotFoundError
from keelson.security.keys import (
    KeyRing,
    create_key,
    implied_scopes,
    keep_fresh,
    list_keys,
    revoke_key,
)
from keelson.store.artifacts import ArtifactStore
from keelson.store.database import create_store_engine
from keelson.store.store import Store, StoreLocation, locate, open_store
from keelson.store.tables import ApiKey


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened = open_store(locate(tmp_path))
    else:
        url = request.getfixturevalue("postgres_url")
        opened = open_store(StoreLocation(url, str(tmp_path / "artifacts")))
    yield opened
    opened.close()


def secret_of(plaintext: str) -> str:
    return plaintext.split("_", 2)[2]


def test_a_key_has_the_documented_shape_and_verifies(store: Store) -> None:
    info, plaintext = create_key(store, "ci", "predict", rate=5.0, burst=10)
    prefix, key_id, secret = plaintext.split("_", 2)
    assert (prefix, key_id) == ("kls", info.id)
    assert len(key_id) == 8 and int(key_id, 16) >= 0 and len(secret) >= 32
    principal = KeyRing.load(store).verify(plaintext)
    assert principal is not None
    assert (principal.key_id, principal.name, principal.rate, principal.burst) == (
        info.id, "ci", 5.0, 10,
    )  # fmt: skip
    assert principal.scopes == {"read", "predict"}


def test_only_the_hash_of_the_secret_is_stored(store: Store) -> None:
    _, plaintext = create_key(store, "ci", "read")
    with store.session() as session:
        row = session.scalars(select(ApiKey)).one()
        values = [str(getattr(row, column.key)) for column in ApiKey.__table__.columns]
    assert row.secret_sha256 == hashlib.sha256(secret_of(plaintext).encode()).hexdigest()
    assert not any(secret_of(plaintext) in value for value in values)


def test_the_plaintext_is_nowhere_in_the_sqlite_files(tmp_path: Path) -> None:
    store = open_store(locate(tmp_path))
    _, plaintext = create_key(store, "ci", "admin")
    store.close()
    files = list((tmp_path / ".keelson").glob("keelson.db*"))  # the database, its WAL and shm
    content = b"".join(path.read_bytes() for path in files)
    digest = hashlib.sha256(secret_of(plaintext).encode()).hexdigest()
    assert digest.encode() in content  # we are reading the right bytes
    assert secret_of(plaintext).encode() not in content


def test_wrong_malformed_and_unknown_keys_do_not_verify(store: Store) -> None:
    _, plaintext = create_key(store, "ci", "read")
    ring = KeyRing.load(store)
    key_id = plaintext.split("_")[1]
    flipped = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    for token in [
        flipped,
        f"kls_{key_id}_" + "x" * 43,
        "kls_00000000_" + secret_of(plaintext),
        plaintext.replace("kls_", "KLS_"),
        plaintext + " ",
        "",
        "Bearer " + plaintext,
    ]:
        assert ring.verify(token) is None, token
    assert ring.verify(plaintext) is not None


def test_scopes_nest() -> None:
    assert implied_scopes("read") == {"read"}
    assert implied_scopes("predict") == {"read", "predict"}
    assert implied_scopes("admin") == {"read", "predict", "admin"}


def test_a_revoked_key_stops_verifying_after_a_refresh(store: Store) -> None:
    first, plaintext = create_key(store, "ci", "predict")
    ring = KeyRing.load(store)
    assert revoke_key(store, "ci").revoked_at is not None
    assert ring.verify(plaintext) is not None  # the snapshot is unchanged until refreshed
    assert ring.refresh(store) is True
    assert ring.verify(plaintext) is None
    again, replacement = create_key(store, "ci", "read")  # the name is free again
    assert again.id != first.id
    ring.refresh(store)
    assert ring.verify(replacement) is not None
    assert [(k.name, k.live) for k in list_keys(store)] == [("ci", False), ("ci", True)]
    assert [k.id for k in list_keys(store, include_revoked=False)] == [again.id]


def test_revoke_by_id_and_unknown_names(store: Store) -> None:
    info, _ = create_key(store, "ci", "read")
    with pytest.raises(NotFoundError, match=r"'nope'.*keelson keys list"):
        revoke_key(store, "nope")
    assert revoke_key(store, info.id).name == "ci"
    with pytest.raises(NotFoundError):
        revoke_key(store, "ci")


def test_a_name_that_is_also_another_keys_id_is_refused(store: Store) -> None:
    info, _ = create_key(store, "ci", "read")
    create_key(store, info.id, "read")
    with pytest.raises(KeelsonError, match="Pass the id instead"):
        revoke_key(store, info.id)


def test_a_live_name_cannot_be_taken_twice(store: Store) -> None:
    create_key(store, "ci", "read")
    with pytest.raises(KeelsonError, match=r"already named 'ci'.*keelson keys revoke ci"):
        create_key(store, "ci", "admin")
    assert len(list_keys(store)) == 1


def test_the_database_refuses_a_second_live_name(store: Store) -> None:
    """The partial unique index holds even if two creators race past the check."""
    from sqlalchemy.exc import IntegrityError

    create_key(store, "ci", "read")
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(ApiKey(id="0badc0de", name="ci", secret_sha256="0" * 64, scope="read"))


@pytest.mark.parametrize(
    ("name", "scope", "rate", "burst", "message"),
    [
        ("", "read", None, None, "key name"),
        ("has space", "read", None, None, "key name"),
        ("ci", "write", None, None, "read, predict, admin. Got 'write'"),
        ("ci", "read", 0.0, None, "rate must be a positive"),
        ("ci", "read", float("nan"), None, "rate must be a positive"),
        ("ci", "read", None, 0, "burst must be a positive"),
    ],
)
def test_bad_key_settings_are_refused(
    tmp_path: Path, name: str, scope: str, rate: float | None, burst: int | None, message: str
) -> None:
    store = open_store(locate(tmp_path))
    with pytest.raises(KeelsonError, match=message):
        create_key(store, name, scope, rate=rate, burst=burst)
    assert list_keys(store) == []


def test_refresh_keeps_the_snapshot_when_the_database_is_gone(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, plaintext = create_key(store, "ci", "predict")
    ring = KeyRing.load(store)
    gone = Store(
        create_store_engine("postgresql://nobody@127.0.0.1:1/none"), ArtifactStore(str(tmp_path))
    )
    assert ring.refresh(gone) is False
    assert "cannot refresh API keys" in caplog.text and "1 keys" in caplog.text
    assert ring.verify(plaintext) is not None and len(ring) == 1


def test_refresh_keeps_the_snapshot_when_the_table_is_gone(tmp_path: Path) -> None:
    store = open_store(locate(tmp_path))
    _, plaintext = create_key(store, "ci", "read")
    ring = KeyRing.load(store)
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE api_keys"))
    assert ring.refresh(store) is False
    assert ring.verify(plaintext) is not None


def test_keep_fresh_picks_up_a_revocation(store: Store) -> None:
    _, plaintext = create_key(store, "ci", "read")
    ring = KeyRing.load(store)
    revoke_key(store, "ci")

    async def until_revoked() -> None:
        task = asyncio.create_task(keep_fresh(ring, store, every_s=0.01))
        try:
            async with asyncio.timeout(20):
                while ring.verify(plaintext) is not None:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()

    asyncio.run(until_revoked())
    assert ring.verify(plaintext) is None


def test_an_id_clash_draws_another_id(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["deadbeef", "deadbeef", "cafef00d"])
    monkeypatch.setattr("keelson.security.keys.secrets.token_hex", lambda _n: next(ids))
    assert create_key(store, "one", "read")[0].id == "deadbeef"
    info, plaintext = create_key(store, "two", "read")
    assert info.id == "cafef00d" and plaintext.startswith("kls_cafef00d_")
