"""Queries over the audit views: lease lookups, filtered history, and the log up to a time.

Each function runs inside the caller's read transaction. The SQL is plain SQLAlchemy Core over
the views' columns; the SQLite-specific parts (JSON extraction) stay inside the views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address

from sqlalchemy import Connection, Select, and_, func, or_, select, union

from netstate.audit.targets import WILDCARD, AddressTarget, PortTarget
from netstate.audit.times import stored_form
from netstate.domain.events import Protocol
from netstate.domain.state import State
from netstate.store.eventlog import Actor, read_events
from netstate.store.schema import events
from netstate.store.views import address_leases, changes, port_leases

# Larger than any seq, to close the window of a lease that is still held.
_SEQ_MAX = 2**63 - 1
_LEASE_EVENT_TYPES = ("AddressAllocated", "AddressReleased", "PortMapped", "PortUnmapped")


@dataclass(frozen=True, slots=True)
class Change:
    """One event as the `changes` view shows it: the stored row with a one-line summary."""

    seq: int
    recorded_at: datetime
    type: str
    schema_version: int
    network: str
    endpoint: str | None
    summary: str | None
    payload: dict
    actor: Actor

    def to_dict(self) -> dict:
        """Return the JSON form that `history --json` and `events --json` print."""
        return {
            "seq": self.seq,
            "recorded_at": stored_form(self.recorded_at),
            "type": self.type,
            "schema_version": self.schema_version,
            "network": self.network,
            "endpoint": self.endpoint,
            "summary": self.summary,
            "payload": self.payload,
            "actor": {"user": self.actor.user, "pid": self.actor.pid, "command": self.actor.command},
        }


@dataclass(frozen=True, slots=True)
class AddressLease:
    """An address held by an endpoint from its allocation to its release (None: still held)."""

    network: str
    address: IPv4Address
    endpoint: str
    allocated_at: datetime
    allocated_by: str
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None
    alloc_seq: int
    release_seq: int | None

    @property
    def started_at(self) -> datetime:
        return self.allocated_at

    @property
    def ended_at(self) -> datetime | None:
        return self.released_at

    def subject(self) -> str:
        """Return what was held, as `who` prints it."""
        return f"{self.address} on {self.network}"

    def to_dict(self) -> dict:
        """Return the JSON form that `who --json` prints."""
        return {
            "kind": "address",
            "network": self.network,
            "address": str(self.address),
            "endpoint": self.endpoint,
            "from": stored_form(self.allocated_at),
            "to": _optional_time(self.released_at),
            "allocated_by": self.allocated_by,
            "released_by": self.released_by,
            "release_reason": self.release_reason,
            "alloc_seq": self.alloc_seq,
            "release_seq": self.release_seq,
        }


@dataclass(frozen=True, slots=True)
class PortLease:
    """A host port published to an endpoint from its mapping to its unmapping (None: still)."""

    protocol: Protocol
    host_ip: IPv4Address
    host_port: int
    network: str
    endpoint: str
    container_ip: IPv4Address
    container_port: int
    mapped_at: datetime
    mapped_by: str
    unmapped_at: datetime | None
    unmapped_by: str | None
    unmap_reason: str | None
    map_seq: int
    unmap_seq: int | None

    @property
    def started_at(self) -> datetime:
        return self.mapped_at

    @property
    def ended_at(self) -> datetime | None:
        return self.unmapped_at

    def subject(self) -> str:
        """Return what was held, as `who` prints it."""
        return (
            f"{self.host_ip}:{self.host_port}/{self.protocol.value} "
            f"-> {self.container_ip}:{self.container_port} on {self.network}"
        )

    def to_dict(self) -> dict:
        """Return the JSON form that `who --json` prints."""
        return {
            "kind": "port",
            "protocol": self.protocol.value,
            "host_ip": str(self.host_ip),
            "host_port": self.host_port,
            "network": self.network,
            "endpoint": self.endpoint,
            "container_ip": str(self.container_ip),
            "container_port": self.container_port,
            "from": stored_form(self.mapped_at),
            "to": _optional_time(self.unmapped_at),
            "mapped_by": self.mapped_by,
            "unmapped_by": self.unmapped_by,
            "unmap_reason": self.unmap_reason,
            "map_seq": self.map_seq,
            "unmap_seq": self.unmap_seq,
        }


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """The conditions of `history`; every given one must hold."""

    endpoint: str | None = None
    network: str | None = None
    address: AddressTarget | None = None
    port: PortTarget | None = None
    since: datetime | None = None
    until: datetime | None = None


# Holders


def address_holders(
    connection: Connection, target: AddressTarget, at: datetime, network: str | None = None
) -> list[AddressLease]:
    """Return the leases of the address that were open at `at`, by network."""
    rows = connection.execute(address_holders_query(target, at, network))
    return sorted((_address_lease(row) for row in rows), key=lambda lease: (lease.network, lease.alloc_seq))


def address_holders_query(target: AddressTarget, at: datetime, network: str | None) -> Select:
    """Build the query of `address_holders`.

    IMPORTANT: it has no ORDER BY, because with ORDER BY network SQLite (which has no table
    statistics here) walks the index that yields that order and reads every allocation,
    instead of looking the address up in its index.
    """
    moment = stored_form(at)
    return _address_leases(target, network).where(
        address_leases.c.allocated_at <= moment,
        or_(address_leases.c.released_at.is_(None), address_leases.c.released_at > moment),
    )


def last_address_lease(
    connection: Connection, target: AddressTarget, at: datetime, network: str | None = None
) -> AddressLease | None:
    """Return the lease of the address that ended last at or before `at`, if any."""
    row = connection.execute(last_address_lease_query(target, at, network)).first()
    return None if row is None else _address_lease(row)


def last_address_lease_query(target: AddressTarget, at: datetime, network: str | None) -> Select:
    """Build the query of `last_address_lease`."""
    query = _address_leases(target, network).where(address_leases.c.released_at <= stored_form(at))
    return query.order_by(address_leases.c.release_seq.desc()).limit(1)


def port_holders(
    connection: Connection, target: PortTarget, at: datetime, network: str | None = None
) -> list[PortLease]:
    """Return the bindings of the host port that were open at `at`."""
    rows = connection.execute(port_holders_query(target, at, network))
    found = [_port_lease(row) for row in rows]
    return sorted(found, key=lambda lease: (lease.protocol.value, lease.host_ip, lease.map_seq))


def port_holders_query(target: PortTarget, at: datetime, network: str | None) -> Select:
    """Build the query of `port_holders`, without ORDER BY as `address_holders_query` explains."""
    moment = stored_form(at)
    return _port_leases(target, network).where(
        port_leases.c.mapped_at <= moment,
        or_(port_leases.c.unmapped_at.is_(None), port_leases.c.unmapped_at > moment),
    )


def last_port_lease(
    connection: Connection, target: PortTarget, at: datetime, network: str | None = None
) -> PortLease | None:
    """Return the binding of the host port that ended last at or before `at`, if any."""
    row = connection.execute(last_port_lease_query(target, at, network)).first()
    return None if row is None else _port_lease(row)


def last_port_lease_query(target: PortTarget, at: datetime, network: str | None) -> Select:
    """Build the query of `last_port_lease`."""
    query = _port_leases(target, network).where(port_leases.c.unmapped_at <= stored_form(at))
    return query.order_by(port_leases.c.unmap_seq.desc()).limit(1)


def _address_leases(target: AddressTarget, network: str | None) -> Select:
    query = select(address_leases).where(address_leases.c.address == str(target.address))
    if network is not None:
        query = query.where(address_leases.c.network == network)
    return query


def _port_leases(target: PortTarget, network: str | None) -> Select:
    query = select(port_leases).where(port_leases.c.host_port == target.port)
    if target.protocol is not None:
        query = query.where(port_leases.c.protocol == target.protocol.value)
    if target.host_ip is not None:
        covering = {str(target.host_ip), str(WILDCARD)}
        query = query.where(port_leases.c.host_ip.in_(sorted(covering)))
    if network is not None:
        query = query.where(port_leases.c.network == network)
    return query


# History and the raw log


def history(connection: Connection, conditions: HistoryFilter) -> list[Change]:
    """Return the events that meet every condition, oldest first.

    An address matches the allocation and release of each of its leases and the ports mapped
    to it in between. A port matches the mapping and unmapping of each binding of it.
    """
    query = select(changes).order_by(changes.c.seq)
    if conditions.endpoint is not None:
        query = query.where(changes.c.endpoint == conditions.endpoint)
    if conditions.network is not None:
        query = query.where(changes.c.network == conditions.network)
    if conditions.since is not None:
        query = query.where(changes.c.recorded_at >= stored_form(conditions.since))
    if conditions.until is not None:
        query = query.where(changes.c.recorded_at <= stored_form(conditions.until))
    if conditions.address is not None:
        query = query.where(changes.c.seq.in_(address_event_seqs(conditions.address)))
    if conditions.port is not None:
        query = query.where(changes.c.seq.in_(port_event_seqs(conditions.port)))
    return [_change(row) for row in connection.execute(query)]


def address_event_seqs(target: AddressTarget) -> Select:
    """Build a query of the seqs of the lease events of each holder of the address.

    A lease's window runs from its allocation to its release, so the port mappings of the
    holder in between are included.
    """
    lease = _address_leases(target, None).subquery()
    window = and_(
        events.c.type.in_(_LEASE_EVENT_TYPES),
        events.c.network == lease.c.network,
        events.c.endpoint == lease.c.endpoint,
        events.c.seq >= lease.c.alloc_seq,
        events.c.seq <= func.coalesce(lease.c.release_seq, _SEQ_MAX),
    )
    return select(events.c.seq).join(lease, window)


def port_event_seqs(target: PortTarget):
    """Build a query of the seqs of the mapping and unmapping of each binding of the port."""
    bindings = _port_leases(target, None).subquery()
    return union(
        select(bindings.c.map_seq),
        select(bindings.c.unmap_seq).where(bindings.c.unmap_seq.is_not(None)),
    )


def changes_after(
    connection: Connection, after: int, since: datetime | None = None, limit: int | None = None
) -> list[Change]:
    """Return the events with seq > `after` (and recorded at or after `since`), oldest first."""
    query = select(changes).where(changes.c.seq > after).order_by(changes.c.seq)
    if since is not None:
        query = query.where(changes.c.recorded_at >= stored_form(since))
    if limit is not None:
        query = query.limit(limit)
    return [_change(row) for row in connection.execute(query)]


def fold_until(connection: Connection, at: datetime) -> tuple[State, int]:
    """Fold every event recorded at or before `at`; return the state and the last seq folded."""
    state = State()
    last = 0
    for recorded in read_events(connection, until=stored_form(at)):
        state.apply(recorded.event)
        last = recorded.seq
    return state, last


# Rows to records


def _change(row) -> Change:
    return Change(
        seq=row.seq,
        recorded_at=datetime.fromisoformat(row.recorded_at),
        type=row.type,
        schema_version=row.schema_version,
        network=row.network,
        endpoint=row.endpoint,
        summary=row.summary,
        payload=json.loads(row.payload),
        actor=Actor(user=row.actor_user, pid=row.actor_pid, command=row.actor_command),
    )


def _address_lease(row) -> AddressLease:
    return AddressLease(
        network=row.network,
        address=IPv4Address(row.address),
        endpoint=row.endpoint,
        allocated_at=datetime.fromisoformat(row.allocated_at),
        allocated_by=row.allocated_by,
        released_at=_optional_datetime(row.released_at),
        released_by=row.released_by,
        release_reason=row.release_reason,
        alloc_seq=row.alloc_seq,
        release_seq=row.release_seq,
    )


def _port_lease(row) -> PortLease:
    return PortLease(
        protocol=Protocol(row.protocol),
        host_ip=IPv4Address(row.host_ip),
        host_port=row.host_port,
        network=row.network,
        endpoint=row.endpoint,
        container_ip=IPv4Address(row.container_ip),
        container_port=row.container_port,
        mapped_at=datetime.fromisoformat(row.mapped_at),
        mapped_by=row.mapped_by,
        unmapped_at=_optional_datetime(row.unmapped_at),
        unmapped_by=row.unmapped_by,
        unmap_reason=row.unmap_reason,
        map_seq=row.map_seq,
        unmap_seq=row.unmap_seq,
    )


def _optional_datetime(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _optional_time(moment: datetime | None) -> str | None:
    return None if moment is None else stored_form(moment)
