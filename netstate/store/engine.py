"""SQLite engine set-up: pragmas, transaction modes and migration on first use.

Alembic costs about 0.8 s to import, so it is loaded only when the database is not at
SCHEMA_HEAD. The check itself is one SELECT.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from netstate.errors import StoreError
from netstate.store.schema import SCHEMA_HEAD

# How long a writer waits for another writer's transaction before giving up, in milliseconds.
BUSY_TIMEOUT_MS = 60_000


def create_sqlite_engine(path: Path, *, read_only: bool = False) -> Engine:
    """Create an engine for the database at `path` with netstate's pragmas.

    Every connection uses WAL with synchronous=FULL, so a committed event survives power loss,
    and a busy timeout, so concurrent writers queue instead of failing with "database is
    locked". Transactions begin DEFERRED unless the connection sets the execution option
    `sqlite_begin="IMMEDIATE"`, which takes the write lock before the first read.
    """
    if read_only:
        url = f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true"
    else:
        url = f"sqlite+pysqlite:///{path}"
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN instead of the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not read_only:
            _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        # Straight to the driver: BEGIN returns no rows, and SQLAlchemy's statement machinery
        # would cost more than the statement on every command.
        connection.connection.driver_connection.execute(f"BEGIN {mode}")

    return engine


def _switch_to_wal(cursor) -> None:
    """Put the database in WAL mode, waiting while other processes switch it at the same time.

    Switching needs an exclusive lock, and SQLite can report "database is locked" at once
    instead of waiting, so concurrent first opens of a new database retry here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_database(path: Path) -> Engine:
    """Open (creating if needed) the database at `path`, migrated to SCHEMA_HEAD."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        engine = create_sqlite_engine(path)
        if schema_revision(engine) != SCHEMA_HEAD:
            with _migration_lock(path):
                if schema_revision(engine) != SCHEMA_HEAD:
                    upgrade(engine)
    except OSError as err:
        raise StoreError(f"cannot open database {str(path)!r}: {err.strerror}") from err
    except SQLAlchemyError as err:
        raise StoreError(f"cannot open database {str(path)!r}: {_reason(err)}") from err
    return engine


def schema_revision(engine: Engine) -> str | None:
    """Return the Alembic revision of the database, or None when it has no schema yet."""
    with engine.connect() as connection:
        try:
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
        except OperationalError:
            return None
    return None if row is None else row[0]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to `revision` on one connection."""
    from alembic import command

    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def downgrade(engine: Engine, revision: str) -> None:
    """Revert the migrations down to `revision` ("base" removes every table)."""
    from alembic import command

    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


def alembic_config():
    """Build the Alembic configuration pointing at the installed migrations folder."""
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


@contextmanager
def _migration_lock(path: Path) -> Iterator[None]:
    # Serialises first-use migration between processes that open a new database together.
    fd = os.open(f"{path}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _reason(err: SQLAlchemyError) -> str:
    original = getattr(err, "orig", None)
    return str(original) if original is not None else str(err)
