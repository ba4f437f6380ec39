"""Statements run on the driver must behave as `Connection.execute` would."""

import pytest
from sqlalchemy import bindparam, insert, select

from netstate.errors import StoreError
from netstate.store.engine import open_database
from netstate.store.eventlog import EventStore
from netstate.store.prepared import Prepared, scalar
from netstate.store.schema import leases, networks


@pytest.fixture
def store(db_path):
    store = EventStore(open_database(db_path))
    yield store
    store.close()


LEASE = {"network": "web", "endpoint": "c1", "address": "192.0.2.2", "netns": None, "ifname": None, "host_ifname": None, "seq": 1}


def test_insert_and_select_match_core(store):
    statement = Prepared(insert(leases))
    with store.write() as connection:
        statement.run(connection, LEASE).close()
        statement.run(connection, {**LEASE, "endpoint": "c2", "address": "192.0.2.3"}).close()
    by_address = Prepared(select(leases.c.endpoint).where(leases.c.address == bindparam("b_address")))
    with store.read() as connection:
        assert scalar(by_address.run(connection, {"b_address": "192.0.2.3"})) == "c2"
        assert scalar(by_address.run(connection, {"b_address": "192.0.2.9"})) is None
        rows = connection.execute(select(leases.c.endpoint, leases.c.address).order_by(leases.c.endpoint)).all()
    assert [tuple(r) for r in rows] == [("c1", "192.0.2.2"), ("c2", "192.0.2.3")]


def test_rolled_back_with_the_transaction(store):
    statement = Prepared(insert(leases))
    with pytest.raises(RuntimeError), store.write() as connection:
        statement.run(connection, LEASE).close()
        raise RuntimeError("abort")
    with store.read() as connection:
        assert connection.execute(select(leases)).all() == []


def test_constraint_violation_is_a_store_error(store):
    statement = Prepared(insert(leases))
    with pytest.raises(StoreError, match="UNIQUE constraint failed: leases.network, leases.address"):
        with store.write() as connection:
            statement.run(connection, LEASE).close()
            statement.run(connection, {**LEASE, "endpoint": "c2"}).close()


def test_types_that_need_conversion_rejected(store):
    statement = Prepared(insert(networks))
    row = {"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "bridge": "nsweb0", "icc": True, "last_address": None, "seq": 1}
    with pytest.raises(TypeError, match="'icc' of type BOOLEAN needs conversion on sqlite"):
        with store.write() as connection:
            statement.run(connection, row)
