"""Decisions on networks and addresses: (state, request, observations) -> events, or an error.

A decision never mutates the state it reads and never returns a partial result: it either
returns every event the request causes or raises a NetstateError. Port decisions live in
`netstate.domain.ports`.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from netstate.domain import addresses, subnets
from netstate.domain.events import (
    AddressAllocated,
    AddressReleased,
    Event,
    IccChanged,
    NetworkCreated,
    NetworkRemoved,
    PortMapped,
    PortUnmapped,
)
from netstate.domain.names import check_endpoint, check_ifname, check_network_name
from netstate.domain.state import BindingKey, State, fold
from netstate.errors import (
    BridgeConflict,
    Conflict,
    NetworkExists,
    NetworkInUse,
    UnknownEndpoint,
    UnknownNetwork,
)

DEFAULT_NETWORK = "default"
DEFAULT_BRIDGE = "netstate0"
DEFAULT_IFNAME = "eth0"
# Prefix of the host side of every veth netstate creates. IMPORTANT: reconciliation finds
# netstate's veths by it, so changing it orphans the links of existing installations.
VETH_PREFIX = "nsv"


@dataclass(frozen=True, slots=True)
class ObservedLink:
    """A link found in the kernel under a name netstate wants to use."""

    name: str
    kind: str
    addresses: tuple[IPv4Interface, ...] = ()


@dataclass(frozen=True, slots=True)
class CreateNetwork:
    """Request to record a network; subnet None means choose one automatically."""

    name: str
    bridge: str
    subnet: IPv4Network | None = None
    gateway: IPv4Address | None = None
    icc: bool = True


@dataclass(frozen=True, slots=True)
class Allocate:
    """Request for an address, and a veth into `netns` when it is given."""

    endpoint: str
    network: str
    address: IPv4Address | None = None
    netns: str | None = None
    ifname: str | None = None


def veth_name(network: str, endpoint: str) -> str:
    """Return the host-side veth name for an endpoint on a network.

    The name derives from both names, so a retry after a crash finds the link it created.
    Ten hex digits of SHA-256 make an accidental clash between two leases unlikely, and the
    allocate decision rejects one if it happens.
    """
    digest = hashlib.sha256(f"{network}\0{endpoint}".encode()).hexdigest()
    return f"{VETH_PREFIX}{digest[:10]}"


def create_network(
    state: State,
    request: CreateNetwork,
    facts: subnets.HostFacts,
    bridge_link: ObservedLink | None,
) -> list[Event]:
    """Decide a network creation; `bridge_link` is the link already named like the bridge."""
    check_network_name(request.name)
    check_ifname(request.bridge)
    if request.name in state.networks:
        raise NetworkExists(f"network {request.name!r} already exists; pick another name")
    for other in state.networks.values():
        if other.bridge == request.bridge:
            msg = f"bridge {request.bridge!r} already belongs to network {other.name!r}; pick another --bridge"
            raise NetworkExists(msg)

    recorded = {name: network.subnet for name, network in state.networks.items()}
    rejected: tuple = ()
    if request.subnet is None:
        subnet, gateway, rejected = subnets.choose_subnet(facts, recorded)
    else:
        subnet = request.subnet
        subnets.check_size(subnet)
        gateway = request.gateway or subnet.network_address + 1
        subnets.check_gateway(subnet, gateway)
        subnets.check_no_overlap(subnet, recorded)

    if bridge_link is not None:
        check_adoptable(bridge_link, IPv4Interface(f"{gateway}/{subnet.prefixlen}"))
    event = NetworkCreated(
        network=request.name,
        subnet=subnet,
        gateway=gateway,
        bridge=request.bridge,
        icc=request.icc,
        auto_subnet=request.subnet is None,
        rejected=rejected,
    )
    return [event]


def check_adoptable(link: ObservedLink, wanted: IPv4Interface) -> None:
    """Raise BridgeConflict unless `link` is a bridge carrying exactly the `wanted` address."""
    if link.kind != "bridge":
        kind = link.kind or "a link of no kind"
        msg = f"link {link.name!r} exists and is {kind}, not a bridge; pick another --bridge"
        raise BridgeConflict(msg)
    if link.addresses != (wanted,):
        found = ", ".join(str(a) for a in link.addresses) or "no IPv4 address"
        msg = (
            f"bridge {link.name!r} exists with {found}, but the network needs exactly {wanted}; "
            "fix or delete the bridge, or pick another --bridge"
        )
        raise BridgeConflict(msg)


def remove_network(state: State, name: str) -> list[Event]:
    """Decide the removal of a network that holds no address."""
    if name not in state.networks:
        raise UnknownNetwork(f"network {name!r} not found; `netstate network ls` lists them")
    holders = sorted(lease.endpoint for lease in state.leases_on(name).values())
    if holders:
        shown = ", ".join(holders[:5]) + (", ..." if len(holders) > 5 else "")
        msg = (
            f"network {name!r} still has {len(holders)} address(es) held ({shown}); "
            "release them first"
        )
        raise NetworkInUse(msg)
    return [NetworkRemoved(network=name)]


def set_icc(state: State, name: str, icc: bool) -> list[Event]:
    """Decide a switch of inter-container traffic; no event when it is already so."""
    network = require_network(state, name)
    if network.icc == icc:
        return []
    return [IccChanged(network=name, icc=icc)]


def allocate(state: State, request: Allocate) -> list[Event]:
    """Decide an allocation; an endpoint that already holds an address gets no new event."""
    check_endpoint(request.endpoint)
    if request.ifname is not None:
        check_ifname(request.ifname)
    network = require_network(state, request.network)

    existing = state.leases.get((request.network, request.endpoint))
    if existing is not None:
        _check_same_lease(existing, request)
        return []

    held = state.leases_on(request.network)
    if request.address is not None:
        addresses.check_requested(network, request.address, held)
        address = request.address
    else:
        address = addresses.next_address(network, held)

    host_ifname = ifname = None
    if request.netns is not None:
        host_ifname = veth_name(request.network, request.endpoint)
        ifname = request.ifname or DEFAULT_IFNAME
        _check_links_free(state, request, host_ifname, ifname)
    event = AddressAllocated(
        network=request.network,
        endpoint=request.endpoint,
        address=address,
        netns=request.netns,
        ifname=ifname,
        host_ifname=host_ifname,
        requested=request.address is not None,
    )
    return [event]


def _check_same_lease(existing, request: Allocate) -> None:
    where = f"endpoint {request.endpoint!r} already holds {existing.address} on {request.network!r}"
    if request.address is not None and request.address != existing.address:
        raise Conflict(f"{where}, not {request.address}; release it first")
    if request.netns is not None and request.netns != existing.netns:
        attached = existing.netns or "no namespace"
        raise Conflict(f"{where}, attached to {attached}; release it first")
    if request.ifname is not None and request.ifname != existing.ifname:
        raise Conflict(f"{where} as interface {existing.ifname}; release it first")


def _check_links_free(state: State, request: Allocate, host_ifname: str, ifname: str) -> None:
    for lease in state.leases.values():
        if lease.host_ifname == host_ifname:
            msg = (
                f"veth name {host_ifname} of endpoint {request.endpoint!r} clashes with "
                f"endpoint {lease.endpoint!r} on {lease.network!r}; use another endpoint name"
            )
            raise Conflict(msg)
        if lease.netns == request.netns and lease.ifname == ifname:
            msg = (
                f"interface {ifname} in {request.netns} is already used by endpoint "
                f"{lease.endpoint!r} on {lease.network!r}; pass another --ifname"
            )
            raise Conflict(msg)


def release(state: State, endpoint: str, network: str | None = None, reason: str = "released") -> list[Event]:
    """Decide a release: every port published for the lease is unmapped, then the address."""
    check_endpoint(endpoint)
    if network is not None:
        require_network(state, network)
        leases = [lease for lease in state.leases_of(endpoint) if lease.network == network]
    else:
        leases = state.leases_of(endpoint)
    if not leases:
        where = f" on network {network!r}" if network is not None else ""
        raise UnknownEndpoint(f"endpoint {endpoint!r} holds no address{where}; `netstate ls` lists the endpoints")

    events: list[Event] = []
    for lease in leases:
        for binding in state.bindings_of(endpoint):
            if binding.network == lease.network:
                events.append(unmap_event(binding, reason="released"))
        events.append(
            AddressReleased(
                network=lease.network, endpoint=endpoint, address=lease.address, reason=reason
            )
        )
    return events


def undo(state: State, events: list[Event], reason: str) -> list[Event]:
    """Decide how to take back `events` after their kernel effects failed.

    `state` is read after `events` were committed, so other processes may have acted since.
    An allocation is taken back only while the endpoint still holds that address, and a network
    only while no endpoint holds an address on it. Whatever is still in use stays recorded.
    """
    state = copy.deepcopy(state)
    taken_back: list[Event] = []
    for event in reversed(events):
        step: list[Event] = []
        if isinstance(event, AddressAllocated):
            lease = state.leases.get((event.network, event.endpoint))
            if lease is not None and lease.address == event.address:
                step = release(state, event.endpoint, event.network, reason=reason)
        elif isinstance(event, PortMapped):
            key = BindingKey(event.protocol, event.host_ip, event.host_port)
            binding = state.bindings.get(key)
            if binding is not None and binding.endpoint == event.endpoint:
                step = [unmap_event(binding, reason=reason)]
        elif isinstance(event, NetworkCreated):
            network = state.networks.get(event.network)
            if network is not None and network.bridge == event.bridge and not state.leases_on(event.network):
                step = [NetworkRemoved(network=event.network, reason=reason)]
        fold(step, state)
        taken_back += step
    return taken_back


def unmap_event(binding, reason: str) -> PortUnmapped:
    """Return the event that withdraws `binding`."""
    return PortUnmapped(
        network=binding.network,
        endpoint=binding.endpoint,
        protocol=binding.key.protocol,
        host_ip=binding.key.host_ip,
        host_port=binding.key.host_port,
        container_ip=binding.container_ip,
        container_port=binding.container_port,
        reason=reason,
    )


def require_network(state: State, name: str):
    """Return the named network or raise UnknownNetwork."""
    network = state.networks.get(name)
    if network is None:
        raise UnknownNetwork(f"network {name!r} not found; `netstate network ls` lists them")
    return network
