"""Current state, folded from events.

`State.apply` mutates one State in place, because copying the maps for every event would make a
rebuild from 1,000,000 events quadratic. Decisions only read a State; the service applies the
events they return. The same fold serves three purposes: rebuilding projections, `state --at`,
and the property test that projections equal a fold from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from functools import singledispatchmethod
from ipaddress import IPv4Address, IPv4Network
from types import MappingProxyType

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


class LeaseTable(MutableMapping):
    """Leases keyed by (network, endpoint), indexed by network address and by endpoint.

    Every allocate looks up the held addresses of one network, and every release the leases of
    one endpoint. The indexes return both without a scan of all leases. Every change goes
    through `__setitem__` or `__delitem__`, which keep the indexes in step.
    """

    __slots__ = ("_leases", "_by_address", "_by_endpoint")

    def __init__(self, leases: Mapping[tuple[str, str], Lease] | Iterable = ()) -> None:
        self._leases: dict[tuple[str, str], Lease] = {}
        self._by_address: dict[str, dict[IPv4Address, Lease]] = {}
        self._by_endpoint: dict[str, dict[str, Lease]] = {}
        self.update(leases)

    def __getitem__(self, key: tuple[str, str]) -> Lease:
        return self._leases[key]

    def __setitem__(self, key: tuple[str, str], lease: Lease) -> None:
        if key != (lease.network, lease.endpoint):
            raise ValueError(f"lease of {lease.endpoint!r} on {lease.network!r} stored under {key!r}")
        if key in self._leases:
            del self[key]
        self._leases[key] = lease
        self._by_address.setdefault(lease.network, {})[lease.address] = lease
        self._by_endpoint.setdefault(lease.endpoint, {})[lease.network] = lease

    def __delitem__(self, key: tuple[str, str]) -> None:
        lease = self._leases.pop(key)
        on_network = self._by_address[lease.network]
        del on_network[lease.address]
        if not on_network:
            del self._by_address[lease.network]
        of_endpoint = self._by_endpoint[lease.endpoint]
        del of_endpoint[lease.network]
        if not of_endpoint:
            del self._by_endpoint[lease.endpoint]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._leases)

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, key: object) -> bool:
        return key in self._leases

    def get(self, key, default=None):
        return self._leases.get(key, default)

    def values(self):
        return self._leases.values()

    def items(self):
        return self._leases.items()

    def __repr__(self) -> str:
        return f"LeaseTable({self._leases!r})"

    def on_network(self, network: str) -> Mapping[IPv4Address, Lease]:
        """Return a read-only view of the network's leases keyed by address."""
        return MappingProxyType(self._by_address.get(network, {}))

    def of_endpoint(self, endpoint: str) -> Mapping[str, Lease]:
        """Return a read-only view of the endpoint's leases keyed by network."""
        return MappingProxyType(self._by_endpoint.get(endpoint, {}))

    def copy(self) -> LeaseTable:
        """Return a table that can change without changing this one."""
        other = LeaseTable()
        other._leases = dict(self._leases)
        other._by_address = {network: dict(held) for network, held in self._by_address.items()}
        other._by_endpoint = {endpoint: dict(held) for endpoint, held in self._by_endpoint.items()}
        return other


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
    leases: LeaseTable = field(default_factory=LeaseTable)
    bindings: dict[BindingKey, Binding] = field(default_factory=dict)
    # The last host port handed out dynamically, per protocol.
    port_cursors: dict[Protocol, int] = field(default_factory=dict)
    # Host-wide settings that differ from their defaults, as text.
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.leases, LeaseTable):
            self.leases = LeaseTable(self.leases)

    def leases_on(self, network: str) -> Mapping[IPv4Address, Lease]:
        """Return a read-only view of one network's leases keyed by address."""
        return self.leases.on_network(network)

    def leases_of(self, endpoint: str) -> list[Lease]:
        """Return the endpoint's leases, ordered by network name."""
        held = self.leases.of_endpoint(endpoint)
        return [held[network] for network in sorted(held)]

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
