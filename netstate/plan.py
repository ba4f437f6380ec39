"""Pure planning: which kernel actions follow from recorded events or from a whole state."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Interface

from netstate.actions import (
    Action,
    EnsureBridge,
    EnsureSysctl,
    EnsureVeth,
    FlushConntrack,
    RemoveBridge,
    RemoveVeth,
    SyncFirewall,
    SyncProxy,
)
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

IP_FORWARD = "net/ipv4/ip_forward"
# Events after which the firewall, the proxy and the sysctls are synced with the whole state.
FORWARDING_EVENTS = (NetworkCreated, NetworkRemoved, IccChanged, PortMapped, PortUnmapped, SettingChanged)


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
    """Return every action that makes the kernel match `state`: bridges, veths, forwarding."""
    actions: list[Action] = [ensure_bridge(n) for n in sorted(state.networks.values(), key=lambda n: n.name)]
    for lease in sorted(state.leases.values(), key=lambda l: (l.network, l.endpoint)):
        if lease.netns:
            actions.append(ensure_veth(state.networks[lease.network], lease))
    return actions + plan_forwarding(state)


def touches_forwarding(events: Iterable[Event]) -> bool:
    """Return whether `events` change what the firewall, the proxy or the sysctls must hold."""
    return any(isinstance(event, FORWARDING_EVENTS) for event in events)


def plan_forwarding(state: State, required: frozenset[BindingKey] | None = None) -> list[Action]:
    """Return the actions that make sysctls, proxy and firewall match the whole of `state`.

    `required` names the bindings whose proxy listener must open for the sync to succeed,
    usually those a command just mapped; None requires every binding.

    IMPORTANT: the proxy comes before the firewall, so a host port another program holds fails
    the command before any DNAT rule for it exists. The bridges must exist already, since
    route_localnet is a sysctl of each bridge. Apply these actions while holding
    `Forwarding.locked()`, with `state` read under that lock, or a sync from an older state can
    remove the rules of a newer one.
    """
    # Imported here so that commands which never plan forwarding do not load the rule builders.
    from netstate.firewall.rules import desired_ruleset

    return [*plan_sysctls(state), SyncProxy(proxy_bindings(state), required), SyncFirewall(desired_ruleset(state))]


def plan_sysctls(state: State) -> list[EnsureSysctl]:
    """Return the sysctls that `state` needs: ip_forward, and route_localnet of each bridge."""
    from netstate.domain.ports import userland_proxy_enabled

    networks = sorted(state.networks.values(), key=lambda n: n.name)
    proxy = userland_proxy_enabled(state)
    # ip_forward is never switched back off: other software on the host may rely on it too.
    actions = [EnsureSysctl(IP_FORWARD, "1")] if networks else []
    for network in networks:
        # Localhost clients DNATed out through the bridge need route_localnet without the proxy.
        actions.append(EnsureSysctl(route_localnet_key(network.bridge), "0" if proxy else "1"))
    return actions


def proxy_bindings(state: State) -> tuple[Binding, ...]:
    """Return the bindings the userland proxy must serve: all of them, or none when it is off."""
    from netstate.domain.ports import userland_proxy_enabled

    if not userland_proxy_enabled(state):
        return ()
    return tuple(sorted(state.bindings.values(), key=lambda b: b.key))


def mapped_keys(events: Iterable[Event]) -> frozenset[BindingKey]:
    """Return the host ports that `events` map."""
    return frozenset(
        BindingKey(event.protocol, event.host_ip, event.host_port) for event in events if isinstance(event, PortMapped)
    )


def route_localnet_key(bridge: str) -> str:
    """Return the sysctl key of a bridge's route_localnet."""
    return f"net/ipv4/conf/{bridge}/route_localnet"


def plan_conntrack(events: Iterable[Event]) -> list[Action]:
    """Return the deletion of conntrack entries for UDP host ports that `events` map or unmap.

    Entries are deleted on map too: datagrams sent while no mapping existed leave an entry
    without DNAT that would otherwise keep the new mapping from being used.
    """
    ports = sorted({
        event.host_port
        for event in events
        if isinstance(event, (PortMapped, PortUnmapped)) and event.protocol is Protocol.UDP
    })
    return [FlushConntrack(Protocol.UDP, tuple(ports))] if ports else []
