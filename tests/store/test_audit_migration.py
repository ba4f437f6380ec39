"""The migration that adds the audit views: upgrade, downgrade, documented columns, index use."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from netstate.audit import queries
from netstate.audit.targets import parse_target
from netstate.store.engine import alembic_config, create_sqlite_engine, downgrade, open_database, schema_revision, upgrade
from netstate.store.schema import SCHEMA_HEAD
from netstate.store.views import address_leases, changes, port_leases
from tests.audit_script import build_history
from tests.conftest import REPO

VIEWS = ("address_leases", "port_leases", "network_history", "subnet_rejections", "changes")
INDEXES = ("events_pairing", "events_allocated_address", "events_mapped_port")


def schema_objects(path, kind: str) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))
        return {name for (name,) in rows}


def documented_columns() -> dict[str, list[str]]:
    """Return the column tables of docs/audit.md, keyed by the view named in the heading."""
    doc = (REPO / "docs" / "audit.md").read_text()
    found: dict[str, list[str]] = {}
    for view, table in re.findall(r"^### (\w+)\n(.*?)(?=^### |^## )", doc, re.S | re.M):
        found[view] = re.findall(r"^\| (\w+) \| (?:text|integer|real) \|", table, re.M)
    return found


@pytest.fixture(scope="module")
def history_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("plans") / "netstate.db"
    build_history(path).netstate.close()
    return path


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "netstate.db"
    open_database(path).dispose()
    return path


def test_schema_head_is_migrations_head():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD


def test_upgrade_creates_views_and_indexes(db):
    assert set(VIEWS) <= schema_objects(db, "view")
    assert set(INDEXES) <= schema_objects(db, "index")


def test_downgrade_removes_views_and_keeps_events(tmp_path):
    path = tmp_path / "netstate.db"
    build_history(path).netstate.close()
    engine = create_sqlite_engine(path)

    downgrade(engine, "0001")

    assert schema_revision(engine) == "0001"
    assert schema_objects(path, "view") == set()
    assert not set(INDEXES) & schema_objects(path, "index")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM events")).scalar() == 29

    upgrade(engine)

    assert schema_revision(engine) == SCHEMA_HEAD
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM address_leases")).scalar() == 8
    engine.dispose()


def test_views_have_documented_columns(db):
    documented = documented_columns()

    with sqlite3.connect(db) as connection:
        for view in VIEWS:
            actual = [row[1] for row in connection.execute(f"PRAGMA table_info({view})")]
            assert actual == documented.get(view), f"docs/audit.md columns of {view}"


@pytest.mark.parametrize("table", [address_leases, port_leases, changes])
def test_view_tables_match_views(db, table):
    with sqlite3.connect(db) as connection:
        actual = [row[1] for row in connection.execute(f"PRAGMA table_info({table.name})")]

    assert actual == [column.name for column in table.columns]


AT = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
ADDRESS = parse_target("10.44.0.7")
PORT = parse_target("192.0.2.10:8080/tcp")


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (lambda: queries.address_holders_query(ADDRESS, AT, None), "events_allocated_address"),
        (lambda: queries.address_holders_query(ADDRESS, AT, "web"), "events_allocated_address"),
        (lambda: queries.last_address_lease_query(ADDRESS, AT, None), "events_allocated_address"),
        (lambda: queries.port_holders_query(PORT, AT, None), "events_mapped_port"),
        (lambda: queries.last_port_lease_query(PORT, AT, None), "events_mapped_port"),
        (lambda: queries.address_event_seqs(ADDRESS), "events_pairing"),
        (lambda: queries.port_event_seqs(PORT), "events_mapped_port"),
    ],
)
def test_lookups_use_indexes(history_db, query, index):
    engine = create_sqlite_engine(history_db)
    statement = query().compile(engine, compile_kwargs={"literal_binds": True})

    with engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}").all()
    engine.dispose()

    details = [row[3] for row in plan]
    assert any(index in detail for detail in details), details
    assert not any(detail.startswith("SCAN") for detail in details), details
    assert not any(detail.endswith("(type=?)") for detail in details), details
