"""Projections: current-state tables kept in step with the log.

`project` updates the tables for one event inside the append's transaction. `read_state` loads
them into a State, and `rebuild` recreates them from a fold of the whole log. The property test
checks that the two paths agree.
"""

from __future__ import annotations

from functools import singledispatch
from ipaddress import IPv4Address, IPv4Network

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from netstate.domain.events import (
    AddressAllocated,
    AddressReleased,
    Event,
    IccChanged,
    NetworkCreated,
    NetworkRemoved,
    PortMapped,
    PortUnmapped,
    Protocol,
    SettingChanged,
)
from netstate.domain.state import Binding, BindingKey, Lease, Network, State
from netstate.store.prepared import Prepared
from netstate.store.schema import (
    PROJECTIONS_CHECKPOINT,
    bindings,
    checkpoints,
    leases,
    networks,
    port_cursors,
    settings,
)

_TABLES = (networks, leases, bindings, port_cursors, settings)

# The statements every allocate and release runs, on the driver (see `netstate.store.prepared`).
_INSERT_LEASE = Prepared(insert(leases))
_DELETE_LEASE = Prepared(
    delete(leases).where(
        and_(leases.c.network == bindparam("b_network"), leases.c.endpoint == bindparam("b_endpoint"))
    )
)
_MOVE_CURSOR = Prepared(
    update(networks).where(networks.c.name == bindparam("b_network")).values(last_address=bindparam("b_address"))
)
_SET_CHECKPOINT = Prepared(
    sqlite_insert(checkpoints)
    .values(name=bindparam("b_name"), seq=bindparam("b_seq"))
    .on_conflict_do_update(index_elements=[checkpoints.c.name], set_={"seq": bindparam("b_seq")})
)


@singledispatch
def project(event: Event, connection: Connection, seq: int) -> None:
    """Update the projection tables for one event."""
    raise TypeError(f"no projection rule for event type {type(event).__name__}")


@project.register
def _(event: NetworkCreated, connection: Connection, seq: int) -> None:
    row = {
        "name": event.network,
        "subnet": str(event.subnet),
        "gateway": str(event.gateway),
        "bridge": event.bridge,
        "icc": event.icc,
        "last_address": None,
        "seq": seq,
    }
    connection.execute(insert(networks).values(row))


@project.register
def _(event: NetworkRemoved, connection: Connection, seq: int) -> None:
    connection.execute(delete(networks).where(networks.c.name == event.network))


@project.register
def _(event: IccChanged, connection: Connection, seq: int) -> None:
    query = update(networks).where(networks.c.name == event.network).values(icc=event.icc)
    connection.execute(query)


@project.register
def _(event: AddressAllocated, connection: Connection, seq: int) -> None:
    row = {
        "network": event.network,
        "endpoint": event.endpoint,
        "address": str(event.address),
        "netns": event.netns,
        "ifname": event.ifname,
        "host_ifname": event.host_ifname,
        "seq": seq,
    }
    _INSERT_LEASE.run(connection, row).close()
    if not event.requested:
        _MOVE_CURSOR.run(connection, {"b_network": event.network, "b_address": str(event.address)}).close()


@project.register
def _(event: AddressReleased, connection: Connection, seq: int) -> None:
    _DELETE_LEASE.run(connection, {"b_network": event.network, "b_endpoint": event.endpoint}).close()


@project.register
def _(event: PortMapped, connection: Connection, seq: int) -> None:
    row = {
        "protocol": event.protocol.value,
        "host_ip": str(event.host_ip),
        "host_port": event.host_port,
        "network": event.network,
        "endpoint": event.endpoint,
        "container_ip": str(event.container_ip),
        "container_port": event.container_port,
        "seq": seq,
    }
    connection.execute(insert(bindings).values(row))
    if event.dynamic:
        upsert = sqlite_insert(port_cursors).values(
            protocol=event.protocol.value, last_port=event.host_port
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[port_cursors.c.protocol], set_={"last_port": event.host_port}
        )
        connection.execute(upsert)


@project.register
def _(event: PortUnmapped, connection: Connection, seq: int) -> None:
    where = and_(
        bindings.c.protocol == event.protocol.value,
        bindings.c.host_ip == str(event.host_ip),
        bindings.c.host_port == event.host_port,
    )
    connection.execute(delete(bindings).where(where))


@project.register
def _(event: SettingChanged, connection: Connection, seq: int) -> None:
    upsert = sqlite_insert(settings).values(key=event.key, value=event.value)
    upsert = upsert.on_conflict_do_update(index_elements=[settings.c.key], set_={"value": event.value})
    connection.execute(upsert)


def set_checkpoint(connection: Connection, seq: int) -> None:
    """Record that the projections reflect every event up to `seq`."""
    _SET_CHECKPOINT.run(connection, {"b_name": PROJECTIONS_CHECKPOINT, "b_seq": seq}).close()


def checkpoint(connection: Connection) -> int:
    """Return the seq up to which the projections are up to date (0 when never written)."""
    query = select(checkpoints.c.seq).where(checkpoints.c.name == PROJECTIONS_CHECKPOINT)
    return connection.execute(query).scalar() or 0


def read_state(connection: Connection) -> State:
    """Load the projection tables into a State."""
    state = State()
    for row in connection.execute(select(networks)):
        state.networks[row.name] = Network(
            name=row.name,
            subnet=IPv4Network(row.subnet),
            gateway=IPv4Address(row.gateway),
            bridge=row.bridge,
            icc=bool(row.icc),
            last_address=None if row.last_address is None else IPv4Address(row.last_address),
        )
    for row in connection.execute(select(leases)):
        state.leases[(row.network, row.endpoint)] = Lease(
            network=row.network,
            endpoint=row.endpoint,
            address=IPv4Address(row.address),
            netns=row.netns,
            ifname=row.ifname,
            host_ifname=row.host_ifname,
        )
    for row in connection.execute(select(bindings)):
        key = BindingKey(Protocol(row.protocol), IPv4Address(row.host_ip), row.host_port)
        state.bindings[key] = Binding(
            key=key,
            network=row.network,
            endpoint=row.endpoint,
            container_ip=IPv4Address(row.container_ip),
            container_port=row.container_port,
        )
    for row in connection.execute(select(port_cursors)):
        state.port_cursors[Protocol(row.protocol)] = row.last_port
    for row in connection.execute(select(settings)):
        state.settings[row.key] = row.value
    return state


def write_state(connection: Connection, state: State, seq: int) -> None:
    """Replace the projection tables with `state`, which reflects the log up to `seq`.

    The per-row seq columns are set to `seq`, since a fold does not keep the seq that created
    each row.
    """
    for table in _TABLES:
        connection.execute(delete(table))
    network_rows = [
        {
            "name": n.name,
            "subnet": str(n.subnet),
            "gateway": str(n.gateway),
            "bridge": n.bridge,
            "icc": n.icc,
            "last_address": None if n.last_address is None else str(n.last_address),
            "seq": seq,
        }
        for n in state.networks.values()
    ]
    lease_rows = [
        {
            "network": lease.network,
            "endpoint": lease.endpoint,
            "address": str(lease.address),
            "netns": lease.netns,
            "ifname": lease.ifname,
            "host_ifname": lease.host_ifname,
            "seq": seq,
        }
        for lease in state.leases.values()
    ]
    binding_rows = [
        {
            "protocol": b.key.protocol.value,
            "host_ip": str(b.key.host_ip),
            "host_port": b.key.host_port,
            "network": b.network,
            "endpoint": b.endpoint,
            "container_ip": str(b.container_ip),
            "container_port": b.container_port,
            "seq": seq,
        }
        for b in state.bindings.values()
    ]
    cursor_rows = [{"protocol": p.value, "last_port": port} for p, port in state.port_cursors.items()]
    setting_rows = [{"key": key, "value": value} for key, value in state.settings.items()]
    tables = (
        (networks, network_rows),
        (leases, lease_rows),
        (bindings, binding_rows),
        (port_cursors, cursor_rows),
        (settings, setting_rows),
    )
    for table, rows in tables:
        if rows:
            connection.execute(insert(table), rows)
    set_checkpoint(connection, seq)
