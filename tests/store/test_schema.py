"""The SQLite schema: migrations, the append-only trigger and the connection settings."""

import sqlite3

import pytest
from sqlalchemy import text

from netstate.store import engine as store_engine
from netstate.store.schema import SCHEMA_HEAD

TABLES = {"alembic_version", "events", "networks", "leases", "bindings", "port_cursors", "settings", "checkpoints"}


def tables(path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return {name for (name,) in rows}


def triggers(path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}


def test_schema_head_is_the_migrations_head():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(store_engine.alembic_config())
    assert script.get_heads() == [SCHEMA_HEAD]


def test_upgrade_from_empty_and_downgrade_to_base(db_path):
    engine = store_engine.create_sqlite_engine(db_path)
    assert store_engine.schema_revision(engine) is None

    store_engine.upgrade(engine)
    assert store_engine.schema_revision(engine) == SCHEMA_HEAD
    assert tables(db_path) == TABLES
    assert triggers(db_path) == {"events_no_update", "events_no_delete"}

    store_engine.downgrade(engine, "base")
    assert store_engine.schema_revision(engine) is None
    assert tables(db_path) == {"alembic_version"}
    assert triggers(db_path) == set()

    store_engine.upgrade(engine)
    assert tables(db_path) == TABLES
    engine.dispose()


def test_open_database_migrates_on_first_use(tmp_path):
    path = tmp_path / "sub" / "dir" / "netstate.db"
    engine = store_engine.open_database(path)
    assert store_engine.schema_revision(engine) == SCHEMA_HEAD
    engine.dispose()


def test_open_database_error_names_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    from netstate.errors import StoreError

    with pytest.raises(StoreError, match=f"cannot open database '{blocker}/netstate.db'"):
        store_engine.open_database(blocker / "netstate.db")


@pytest.fixture
def migrated(db_path):
    engine = store_engine.open_database(db_path)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO events (recorded_at, type, schema_version, network, endpoint, payload, "
            "actor_user, actor_pid, actor_command) VALUES ('2026-01-01T00:00:00.000000+00:00', "
            "'NetworkRemoved', 1, 'web', NULL, '{}', 'root', 1, 'test')"
        ))
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    ("statement", "match"),
    [
        ("UPDATE events SET network = 'db'", "UPDATE rejected"),
        ("DELETE FROM events", "DELETE rejected"),
    ],
)
def test_events_are_append_only(migrated, db_path, statement, match):
    # Through a plain sqlite3 connection, so nothing in netstate can be what stops it.
    with sqlite3.connect(db_path) as connection:
        with pytest.raises(sqlite3.IntegrityError, match=match):
            connection.execute(statement)
        assert connection.execute("SELECT network FROM events").fetchall() == [("web",)]


def test_connection_pragmas(migrated):
    with migrated.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == store_engine.BUSY_TIMEOUT_MS
        assert store_engine.BUSY_TIMEOUT_MS >= 10_000


def test_write_transaction_takes_the_lock_at_begin(migrated, db_path):
    from netstate.store.eventlog import EventStore

    store = EventStore(migrated)
    with store.write():
        other = sqlite3.connect(db_path, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
