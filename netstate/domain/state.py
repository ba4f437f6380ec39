"""Current state, folded from events.

`State.apply` mutates one State in place, because copying the maps for every event would make a
rebuild from 1,000,000 events quadratic. Decisions only read a State; the service applies the
events they return. The same fold serves three purposes: rebuilding projections, `state --at`,
and the property test that projections equal a fold from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import singledispatchmethod
from ipaddress import IPv4Address, IPv4Network

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


@dataclass(frozen=True, slots=True)
class Network:
    """A network as recorded: its subnet, gateway, bridge and allocation cursor."""

    name: str
    subnet: IPv4Network
    gateway: IPv4Address
    bridge: str
    icc: bool = True
    # The last address handed out dynamically; the next search starts after it.
    last_address: IPv4Address | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """An address held by an endpoint on a network, with the link plumbed for it, if any."""

    network: str
    endpoint: str
    address: IPv4Address
    netns: str | None = None
    ifname: str | None = None
    host_ifname: str | None = None


@dataclass(frozen=True, slots=True, order=True)
class BindingKey:
    """What a published host port occupies: protocol, host address and port."""

    protocol: Protocol
    host_ip: IPv4Address
    host_port: int


@dataclass(frozen=True, slots=True)
class Binding:
    """A host port published to an endpoint's container address and port."""

    key: BindingKey
    network: str
    endpoint: str
    container_ip: IPv4Address
    container_port: int


@dataclass(slots=True)
class State:
    """Networks, address leases, port bindings and cursors at one point of the log."""

    networks: dict[str, Network] = field(default_factory=dict)
    leases: dict[tuple[str, str], Lease] = field(default_factory=dict)
    bindings: dict[BindingKey, Binding] = field(default_factory=dict)
    # The last host port handed out dynamically, per protocol.
    port_cursors: dict[Protocol, int] = field(default_factory=dict)
    # Host-wide settings that differ from their defaults, as text.
    settings: dict[str, str] = field(default_factory=dict)

    def leases_on(self, network: str) -> dict[IPv4Address, Lease]:
        """Return the leases of one network keyed by address."""
        return {lease.address: lease for lease in self.leases.values() if lease.network == network}

    def leases_of(self, endpoint: str) -> list[Lease]:
        """Return the endpoint's leases, ordered by network name."""
        found = [lease for lease in self.leases.values() if lease.endpoint == endpoint]
        return sorted(found, key=lambda lease: lease.network)

    def bindings_of(self, endpoint: str) -> list[Binding]:
        """Return the endpoint's port bindings in key order."""
        found = [b for b in self.bindings.values() if b.endpoint == endpoint]
        return sorted(found, key=lambda b: b.key)

    @singledispatchmethod
    def apply(self, event: Event) -> None:
        """Fold one event into this state."""
        raise TypeError(f"no fold rule for event type {type(event).__name__}")

    @apply.register
    def _(self, event: NetworkCreated) -> None:
        self.networks[event.network] = Network(
            name=event.network,
            subnet=event.subnet,
            gateway=event.gateway,
            bridge=event.bridge,
            icc=event.icc,
        )

    @apply.register
    def _(self, event: NetworkRemoved) -> None:
        self.networks.pop(event.network, None)

    @apply.register
    def _(self, event: IccChanged) -> None:
        self.networks[event.network] = replace(self.networks[event.network], icc=event.icc)

    @apply.register
    def _(self, event: AddressAllocated) -> None:
        self.leases[(event.network, event.endpoint)] = Lease(
            network=event.network,
            endpoint=event.endpoint,
            address=event.address,
            netns=event.netns,
            ifname=event.ifname,
            host_ifname=event.host_ifname,
        )
        if not event.requested:
            network = self.networks[event.network]
            self.networks[event.network] = replace(network, last_address=event.address)

    @apply.register
    def _(self, event: AddressReleased) -> None:
        self.leases.pop((event.network, event.endpoint), None)

    @apply.register
    def _(self, event: PortMapped) -> None:
        key = BindingKey(event.protocol, event.host_ip, event.host_port)
        self.bindings[key] = Binding(
            key=key,
            network=event.network,
            endpoint=event.endpoint,
            container_ip=event.container_ip,
            container_port=event.container_port,
        )
        if event.dynamic:
            self.port_cursors[event.protocol] = event.host_port

    @apply.register
    def _(self, event: PortUnmapped) -> None:
        self.bindings.pop(BindingKey(event.protocol, event.host_ip, event.host_port), None)

    @apply.register
    def _(self, event: SettingChanged) -> None:
        self.settings[event.key] = event.value


def fold(events: Iterable[Event], state: State | None = None) -> State:
    """Apply `events` in order to `state` (a new empty State by default) and return it."""
    state = State() if state is None else state
    for event in events:
        state.apply(event)
    return state
