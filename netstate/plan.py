"""Pure planning: which kernel actions follow from recorded events or from a whole state."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Interface

from netstate.actions import Action, EnsureBridge, EnsureVeth, RemoveBridge, RemoveVeth
from netstate.domain.events import (
    AddressAllocated,
    AddressReleased,
    Event,
    NetworkCreated,
    NetworkRemoved,
)
from netstate.domain.state import Lease, Network, State


def bridge_address(network: Network) -> IPv4Interface:
    """Return the gateway address with the subnet's prefix length, as the bridge carries it."""
    return IPv4Interface(f"{network.gateway}/{network.subnet.prefixlen}")


def ensure_bridge(network: Network) -> EnsureBridge:
    """Return the action that makes the network's bridge exist as recorded."""
    return EnsureBridge(network=network.name, name=network.bridge, address=bridge_address(network))


def ensure_veth(network: Network, lease: Lease) -> EnsureVeth:
    """Return the action that plumbs a lease's veth; the lease must name a namespace."""
    assert lease.netns and lease.ifname and lease.host_ifname, "lease has no link to plumb"
    return EnsureVeth(
        endpoint=lease.endpoint,
        host_ifname=lease.host_ifname,
        bridge=network.bridge,
        netns=lease.netns,
        ifname=lease.ifname,
        address=IPv4Interface(f"{lease.address}/{network.subnet.prefixlen}"),
        gateway=network.gateway,
    )


def plan_events(events: Iterable[Event], before: State) -> list[Action]:
    """Return the actions that bring the kernel from `before` to `before` plus `events`.

    `before` is folded forward as the events are planned; pass a copy if it must be kept.
    """
    actions: list[Action] = []
    state = before
    for event in events:
        if isinstance(event, NetworkRemoved):
            network = state.networks[event.network]
            actions.append(RemoveBridge(network=network.name, name=network.bridge))
        elif isinstance(event, AddressReleased):
            lease = state.leases.get((event.network, event.endpoint))
            if lease is not None and lease.host_ifname:
                actions.append(RemoveVeth(endpoint=lease.endpoint, host_ifname=lease.host_ifname))
        state.apply(event)
        if isinstance(event, NetworkCreated):
            actions.append(ensure_bridge(state.networks[event.network]))
        elif isinstance(event, AddressAllocated) and event.netns:
            network = state.networks[event.network]
            # The bridge first: the process that created the network may still be setting it
            # up, and ensuring it again costs one netlink round trip.
            bridge = ensure_bridge(network)
            if bridge not in actions:
                actions.append(bridge)
            actions.append(ensure_veth(network, state.leases[(event.network, event.endpoint)]))
    return actions


def plan_state(state: State) -> list[Action]:
    """Return every action that makes the kernel match `state`: bridges first, then veths."""
    actions: list[Action] = [ensure_bridge(n) for n in sorted(state.networks.values(), key=lambda n: n.name)]
    for lease in sorted(state.leases.values(), key=lambda l: (l.network, l.endpoint)):
        if lease.netns:
            actions.append(ensure_veth(state.networks[lease.network], lease))
    return actions
