"""Audit queries over the event log: history, who held what when, state at a past time.

Times are accepted as text (see `netstate.audit.times.ACCEPTED_FORMS`, counted back from the
service's clock) or as datetimes; a naive datetime is local time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from netstate.domain.names import check_endpoint, check_network_name
from netstate.errors import InvalidInput

if TYPE_CHECKING:
    from netstate.audit.queries import AddressLease, Change, PortLease
    from netstate.audit.targets import AddressTarget, PortTarget
    from netstate.domain.state import State

# The netstate.audit modules are imported inside the methods, so that commands which never
# query the past (allocate, release) do not pay for loading them.

# Bounds of the poll interval of `follow_events`, in seconds.
MIN_POLL_INTERVAL = 0.01
MAX_POLL_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class WhoAnswer:
    """The holders of an address or host port at one time, and the last holder before it."""

    target: AddressTarget | PortTarget
    at: datetime
    holders: list[AddressLease] | list[PortLease]
    # The lease that ended last at or before `at`, which explains an empty `holders`.
    previous: AddressLease | PortLease | None


@dataclass(frozen=True, slots=True)
class PastState:
    """The state folded from every event recorded at or before `at`."""

    at: datetime
    # The seq of the last event folded; 0 when no event was recorded by then.
    seq: int
    state: State


class AuditQueries:
    """Read-only queries over the log, mixed into Netstate."""

    def history(
        self,
        *,
        endpoint: str | None = None,
        address: str | None = None,
        port: str | None = None,
        network: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
    ) -> list[Change]:
        """Return the events matching every given filter, oldest first.

        Args:
            endpoint: only events of this endpoint.
            address: the allocation and release of every lease of this container address,
                and the ports mapped to it while it was held.
            port: PORT, PORT/PROTO or HOST_IP:PORT/PROTO; the mapping and unmapping of every
                binding of that host port. A host address also matches bindings on 0.0.0.0.
            network: only events of this network.
            since, until: only events recorded in this closed interval.

        Raises:
            InvalidInput: a malformed name, address, port or time, or `since` after `until`.
        """
        from netstate.audit import queries
        from netstate.audit.targets import AddressTarget, parse_port
        from netstate.domain.subnets import parse_address

        conditions = queries.HistoryFilter(
            endpoint=check_endpoint(endpoint) if endpoint is not None else None,
            network=check_network_name(network) if network is not None else None,
            address=AddressTarget(parse_address(address)) if address is not None else None,
            port=parse_port(port) if port is not None else None,
            since=self._moment(since) if since is not None else None,
            until=self._moment(until) if until is not None else None,
        )
        if conditions.since is not None and conditions.until is not None and conditions.since > conditions.until:
            msg = f"--since {since} is after --until {until}, so no event can match; swap them"
            raise InvalidInput(msg)
        with self.store.read() as connection:
            return queries.history(connection, conditions)

    def who(self, target: str, *, at: str | datetime = "now", network: str | None = None) -> WhoAnswer:
        """Return who held a container address or a host port at a time.

        Args:
            target: an IPv4 address, or a port as PORT, PORT/PROTO or HOST_IP:PORT/PROTO.
            at: the time; a lease counts from its allocation (inclusive) to its release
                (exclusive).
            network: look only at this network.

        Raises:
            InvalidInput: a malformed target, time or network name.
        """
        from netstate.audit import queries
        from netstate.audit.targets import AddressTarget, parse_target

        parsed = parse_target(target)
        moment = self._moment(at)
        if network is not None:
            check_network_name(network)
        with self.store.read() as connection:
            if isinstance(parsed, AddressTarget):
                holders = queries.address_holders(connection, parsed, moment, network)
                previous = queries.last_address_lease(connection, parsed, moment, network)
            else:
                holders = queries.port_holders(connection, parsed, moment, network)
                previous = queries.last_port_lease(connection, parsed, moment, network)
        return WhoAnswer(target=parsed, at=moment, holders=holders, previous=previous)

    def state_at(self, at: str | datetime = "now") -> PastState:
        """Return networks, leases and bindings as they stood at `at`, folded from the log."""
        from netstate.audit import queries

        moment = self._moment(at)
        with self.store.read() as connection:
            state, seq = queries.fold_until(connection, moment)
        return PastState(at=moment, seq=seq, state=state)

    def events(
        self, *, after: int = 0, since: str | datetime | None = None, limit: int | None = None
    ) -> list[Change]:
        """Return the raw log: events with seq > `after`, recorded at or after `since`."""
        from netstate.audit import queries

        _check_after(after)
        if limit is not None and limit < 1:
            raise InvalidInput(f"invalid limit {limit}: expected 1 or more")
        moment = self._moment(since) if since is not None else None
        with self.store.read() as connection:
            return queries.changes_after(connection, after, moment, limit)

    def follow_events(
        self,
        stop: threading.Event,
        *,
        after: int = 0,
        since: str | datetime | None = None,
        interval: float = 0.5,
        batch: int = 1000,
    ) -> Iterator[Change]:
        """Yield the events after `after`, then each new one as it is appended, until `stop` is set.

        The log is polled every `interval` seconds while no new event arrives; `stop.set()`
        from a signal handler or another thread ends the wait at once.
        """
        from netstate.audit import queries

        _check_after(after)
        if not MIN_POLL_INTERVAL <= interval <= MAX_POLL_INTERVAL:
            msg = (
                f"invalid poll interval {interval}s: expected {MIN_POLL_INTERVAL} to "
                f"{MAX_POLL_INTERVAL} seconds"
            )
            raise InvalidInput(msg)
        moment = self._moment(since) if since is not None else None
        last = after
        while not stop.is_set():
            with self.store.read() as connection:
                found = queries.changes_after(connection, last, moment, batch)
            for change in found:
                yield change
                last = change.seq
                if stop.is_set():
                    return
            if len(found) < batch:
                stop.wait(interval)

    def _moment(self, value: str | datetime) -> datetime:
        from netstate.audit.times import parse_time, to_utc

        if isinstance(value, datetime):
            return to_utc(value)
        return parse_time(value, self.clock())


def _check_after(after: int) -> None:
    if after < 0:
        raise InvalidInput(f"invalid sequence number {after}: expected 0 or more")
