"""The links kind: the bridge of every recorded network and the veth of every plumbed lease.

What counts as netstate's link is defined in `netstate.kernel.marks`. A link without that mark
is never reported as stale and never removed, whatever its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from netstate.actions import EnsureBridge, EnsureVeth, RemoveStaleLink
from netstate.domain.state import State
from netstate.kernel.marks import is_owned, is_staging_name, owner_alias
from netstate.plan import ensure_bridge, ensure_veth
from netstate.reconcile import Drift, Findings, Notice


@dataclass(frozen=True, slots=True)
class LinkFacts:
    """One link of the managed namespace as the kernel reports it."""

    name: str
    kind: str
    index: int
    up: bool
    alias: str | None = None
    # Name of the bridge the link is attached to, if any.
    master: str | None = None
    addresses: tuple[IPv4Interface, ...] = ()
    # For a veth: the index of its peer inside the peer's namespace.
    peer_index: int | None = None


@dataclass(frozen=True, slots=True)
class PeerFacts:
    """The interface a lease names inside a container namespace, with its lo and default routes."""

    # Why the namespace could not be read; the other fields are then meaningless.
    error: str | None = None
    # Index of the interface, None when the namespace has no interface of that name.
    index: int | None = None
    # For a veth: the index of its peer in the managed namespace.
    peer_index: int | None = None
    up: bool = False
    loopback_up: bool = False
    addresses: tuple[IPv4Interface, ...] = ()
    # Gateways of the default routes in the main table; None for a route without a gateway.
    gateways: tuple[IPv4Address | None, ...] = ()


@dataclass(frozen=True, slots=True)
class DesiredLinks:
    """The links a State needs, as the ensure actions that create them."""

    bridges: tuple[EnsureBridge, ...]
    veths: tuple[EnsureVeth, ...]
    # Host-side names of every lease's veth. A veth under one of these names is never stale,
    # even when its namespace is gone, since a process may still hold that namespace.
    recorded: frozenset[str]


@dataclass(frozen=True, slots=True)
class ObservedLinks:
    """The kernel's side: links of the managed namespace and the peers of recorded veths."""

    links: Mapping[str, LinkFacts]
    # By host-side name, for each recorded veth whose host side exists and namespace is alive.
    peers: Mapping[str, PeerFacts]
    # Namespace paths of recorded veths that no longer exist.
    gone: frozenset[str]


class LinksKind:
    """Bridges and veths."""

    name = "links"

    def desired(self, state: State) -> DesiredLinks:
        networks = sorted(state.networks.values(), key=lambda n: n.name)
        leases = sorted(state.leases.values(), key=lambda l: (l.network, l.endpoint))
        plumbed = [lease for lease in leases if lease.netns and lease.host_ifname]
        return DesiredLinks(
            bridges=tuple(ensure_bridge(network) for network in networks),
            veths=tuple(ensure_veth(state.networks[l.network], l) for l in plumbed),
            recorded=frozenset(lease.host_ifname for lease in plumbed),
        )

    def observe(self, kernel, desired: DesiredLinks) -> ObservedLinks:
        driver = kernel.links
        links = driver.scan_links()
        gone = frozenset(v.netns for v in desired.veths if not driver.netns_exists(v.netns))
        peers = {}
        for veth in desired.veths:
            host = links.get(veth.host_ifname)
            if veth.netns in gone or host is None or host.kind != "veth":
                continue
            peers[veth.host_ifname] = driver.scan_peer(veth.netns, veth.ifname)
        return ObservedLinks(links=links, peers=peers, gone=gone)

    def diff(self, desired: DesiredLinks, observed: ObservedLinks) -> Findings:
        findings = Findings(checked={"bridge": len(desired.bridges), "veth": len(desired.veths)})
        # Stale links first, so that their repair frees names and addresses for the others.
        findings.drifts += stale_links(desired, observed.links)
        for bridge in desired.bridges:
            findings.drifts += bridge_drift(bridge, observed.links.get(bridge.name))
        for veth in desired.veths:
            if veth.netns in observed.gone:
                findings.notices.append(gone_notice(veth))
                continue
            host = observed.links.get(veth.host_ifname)
            findings.drifts += veth_drift(veth, host, observed.peers.get(veth.host_ifname))
        return findings


def stale_links(desired: DesiredLinks, links: Mapping[str, LinkFacts]) -> list[Drift]:
    """Return a drift for each netstate link that the record no longer needs."""
    recorded_bridges = {bridge.name for bridge in desired.bridges}
    drifts = []
    for link in sorted(links.values(), key=lambda l: l.name):
        if not is_owned(link.name, link.kind, link.alias):
            continue
        if link.kind == "bridge" and link.name in recorded_bridges:
            continue
        if link.kind == "veth" and link.name in desired.recorded:
            continue
        if is_staging_name(link.name):
            reason = "left half-created by an interrupted netstate process"
        elif link.alias:
            reason = f"marked {link.alias!r} but not in the record"
        else:
            reason = "named like a netstate veth but not in the record"
        drifts.append(
            Drift(
                kind=link.kind,
                object=link.name,
                problem="stale",
                expected="absent",
                found="present",
                message=f"{link.kind} {link.name} is {reason}",
                repair=(RemoveStaleLink(name=link.name, kind=link.kind),),
            )
        )
    return drifts


def bridge_drift(bridge: EnsureBridge, link: LinkFacts | None) -> list[Drift]:
    """Return the drift of one recorded network's bridge."""
    subject = f"bridge {bridge.name} of network {bridge.network}"

    def drift(problem: str, expected: str, found: str, message: str) -> Drift:
        return Drift("bridge", bridge.name, problem, expected, found, message, (bridge,))

    if link is None:
        return [drift("missing", f"bridge up with {bridge.address}", "absent", f"{subject} is missing")]
    if link.kind != "bridge":
        found = f"a {link.kind} link" if link.kind else "a link of no kind"
        msg = f"{subject} is {found}, not a bridge; delete or rename that link, then run `netstate restore`"
        return [Drift("bridge", bridge.name, "conflict", "bridge", found, msg)]
    drifts = []
    if link.addresses != (bridge.address,):
        found = ", ".join(str(a) for a in link.addresses) or "no IPv4 address"
        drifts.append(drift("address", str(bridge.address), found, f"{subject} carries {found} instead of {bridge.address}"))
    if not link.up:
        drifts.append(drift("down", "up", "down", f"{subject} is down"))
    return drifts


def veth_drift(veth: EnsureVeth, host: LinkFacts | None, peer: PeerFacts | None) -> list[Drift]:
    """Return the drift of one plumbed lease's veth, its host side first, then its peer."""
    subject = f"veth {veth.host_ifname} of endpoint {veth.endpoint}"
    inside = f"{veth.ifname} in {veth.netns}"

    def drift(problem: str, expected: str, found: str, message: str) -> Drift:
        return Drift("veth", veth.host_ifname, problem, expected, found, message, (veth,))

    if host is None:
        expected = f"veth to {inside} with {veth.address}"
        return [drift("missing", expected, "absent", f"{subject} is missing")]
    if host.kind != "veth":
        found = f"a {host.kind} link" if host.kind else "a link of no kind"
        msg = f"{subject} is {found}, not a veth; delete that link, then run `netstate restore`"
        return [Drift("veth", veth.host_ifname, "conflict", "veth", found, msg)]

    drifts = []
    if host.master != veth.bridge:
        found = f"on bridge {host.master}" if host.master else "on no bridge"
        drifts.append(drift("detached", f"on bridge {veth.bridge}", found, f"{subject} is {found}, not on {veth.bridge}"))
    if not host.up:
        drifts.append(drift("down", "up", "down", f"{subject} is down"))
    if host.alias != owner_alias(veth.endpoint):
        found = repr(host.alias) if host.alias else "no alias"
        drifts.append(drift("unmarked", repr(owner_alias(veth.endpoint)), found, f"{subject} has {found}"))
    if peer is not None:
        drifts += peer_drift(veth, host, peer)
    return drifts


def peer_drift(veth: EnsureVeth, host: LinkFacts, peer: PeerFacts) -> list[Drift]:
    """Return the drift of the container side of a veth whose host side exists."""
    inside = f"{veth.ifname} in {veth.netns}"

    def drift(problem: str, expected: str, found: str, message: str) -> Drift:
        return Drift("veth", veth.host_ifname, problem, expected, found, message, (veth,))

    if peer.error is not None:
        msg = f"cannot read {inside} for endpoint {veth.endpoint}: {peer.error}"
        return [Drift("veth", veth.host_ifname, "unreadable", inside, peer.error, msg)]
    if peer.index is None:
        return [drift("peer-missing", inside, "absent", f"{inside} of endpoint {veth.endpoint} is missing")]
    if peer.index != host.peer_index or peer.peer_index != host.index:
        msg = f"{inside} is not the peer of veth {veth.host_ifname} of endpoint {veth.endpoint}"
        return [drift("peer-missing", f"{inside} paired with {veth.host_ifname}", "another interface", msg)]

    drifts = []
    if veth.address not in peer.addresses:
        found = ", ".join(str(a) for a in peer.addresses) or "no IPv4 address"
        drifts.append(drift("peer-address", str(veth.address), found, f"{inside} carries {found} instead of {veth.address}"))
    if not (peer.up and peer.loopback_up):
        down = [name for name, up in ((veth.ifname, peer.up), ("lo", peer.loopback_up)) if not up]
        found = " and ".join(down) + " down"
        drifts.append(drift("peer-down", f"{veth.ifname} and lo up", found, f"in {veth.netns}, {found}"))
    if not peer.gateways:
        # Any default route will do: a container on several networks keeps the first one's.
        msg = f"{veth.netns} has no default route"
        drifts.append(drift("peer-route", f"default via {veth.gateway}", "no default route", msg))
    return drifts


def gone_notice(veth: EnsureVeth) -> Notice:
    """Return the notice for a lease whose container namespace no longer exists."""
    msg = (
        f"endpoint {veth.endpoint} holds {veth.address.ip} but its namespace {veth.netns} is gone; "
        f"release it with `netstate release {veth.endpoint}` once its container is gone for good"
    )
    return Notice(kind="lease", object=veth.endpoint, message=msg)
