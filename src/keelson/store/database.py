"""The metadata database: engine, schema version checks and migrations under a lock.

Migrations run only when asked (``keelson db upgrade``) or on a brand-new empty
store; a store at an older schema is refused with the command to run.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from keelson.errors import StoreError

_PG_LOCK_KEY = 0x6B65656C  # "keel": the advisory lock that serialises migrations


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_store_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("keelson.store") / "migrations"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    with contextlib.closing(create_engine("sqlite://").connect()) as connection:
        head = ScriptDirectory.from_config(_alembic_config(connection)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _migration_lock(engine: Engine, connection: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
            connection.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with Path(f"{database}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate the store to the newest schema; returns (from, to) revisions."""
    before = current_revision(engine)
    with engine.connect() as connection, _migration_lock(engine, connection):
        command.upgrade(_alembic_config(connection), "head")
        connection.commit()
    return before, head_revision()


def ensure_schema(engine: Engine) -> None:
    """Create the schema in an empty store; refuse a store that needs a migration."""
    if not inspect(engine).get_table_names():
        upgrade(engine)
        return
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise StoreError(
            f"the store's schema is at revision {current}, this keelson needs {head}.",
            where=engine.url.render_as_string(hide_password=True),
            hint="Run `keelson db upgrade` (back up the store first).",
        )
