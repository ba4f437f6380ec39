"""In-memory stand-ins for the kernel adapters, for unit tests that need no root."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network

import itertools

from netstate.actions import EnsureBridge, EnsureVeth, RemoveBridge, RemoveStaleLink, RemoveVeth
from netstate.domain.decide import ObservedLink
from netstate.errors import KernelError
from netstate.kernel.marks import is_owned, owner_alias
from netstate.reconcile.links import LinkFacts, PeerFacts

_indexes = itertools.count(2)


@dataclass
class FakeLink:
    """One link of the fake kernel."""

    name: str
    kind: str
    addresses: list[IPv4Interface] = field(default_factory=list)
    up: bool = False
    alias: str | None = None
    master: str | None = None
    # For a veth: (namespace path, peer name, peer address, default gateway).
    peer: tuple | None = None
    index: int = field(default_factory=lambda: next(_indexes))


class FakeLinks:
    """LinkDriver that records links in a dict. `fail_on` names actions that raise."""

    def __init__(self, routes: tuple[tuple[IPv4Network, str], ...] = ()) -> None:
        self.links: dict[str, FakeLink] = {}
        self._routes = routes
        self.fail_on: set[type] = set()
        self.applied: list = []
        # Namespace paths that tests declare deleted; every other path exists.
        self.gone_netns: set[str] = set()

    def close(self) -> None:
        pass

    def observe_link(self, name: str) -> ObservedLink | None:
        link = self.links.get(name)
        if link is None:
            return None
        return ObservedLink(name=name, kind=link.kind, addresses=tuple(link.addresses))

    def link_state(self, name: str) -> tuple[bool, str | None] | None:
        link = self.links.get(name)
        return None if link is None else (link.up, link.alias)

    def routes(self) -> tuple[tuple[IPv4Network, str], ...]:
        own = tuple((a.network, l.name) for l in self.links.values() for a in l.addresses)
        return self._routes + own

    def _record(self, action) -> None:
        if type(action) in self.fail_on:
            raise KernelError(f"fake failure of {type(action).__name__}")
        self.applied.append(action)

    def ensure_bridge(self, action: EnsureBridge) -> bool:
        self._record(action)
        link = self.links.get(action.name)
        before = None if link is None else (list(link.addresses), link.up)
        if link is None:
            link = self.links[action.name] = FakeLink(action.name, "bridge", alias=owner_alias(action.network))
        link.addresses = [action.address]
        link.up = True
        return before != ([action.address], True)

    def remove_bridge(self, action: RemoveBridge) -> bool:
        self._record(action)
        link = self.links.get(action.name)
        if link is None or link.alias != owner_alias(action.network):
            return False
        del self.links[action.name]
        return True

    def ensure_veth(self, action: EnsureVeth) -> bool:
        self._record(action)
        if action.bridge not in self.links:
            raise KernelError(f"bridge {action.bridge!r} not found")
        if action.netns in self.gone_netns:
            raise KernelError(f"cannot open namespace {action.netns}: No such file or directory")
        wanted = FakeLink(
            action.host_ifname, "veth", up=True, alias=owner_alias(action.endpoint),
            master=action.bridge, peer=(action.netns, action.ifname, action.address, action.gateway),
        )
        present = self.links.get(action.host_ifname)
        if present is not None:
            wanted.index = present.index
        changed = present != wanted
        self.links[action.host_ifname] = wanted
        return changed

    def remove_veth(self, action: RemoveVeth) -> bool:
        self._record(action)
        return self.links.pop(action.host_ifname, None) is not None

    def remove_stale_link(self, action: RemoveStaleLink) -> bool:
        self._record(action)
        link = self.links.get(action.name)
        if link is None or link.kind != action.kind or not is_owned(link.name, link.kind, link.alias):
            return False
        del self.links[action.name]
        return True

    def scan_links(self) -> dict[str, LinkFacts]:
        return {
            link.name: LinkFacts(
                name=link.name,
                kind=link.kind,
                index=link.index,
                up=link.up,
                alias=link.alias,
                master=link.master,
                addresses=tuple(link.addresses),
                peer_index=_peer_index(link) if link.peer else None,
            )
            for link in self.links.values()
        }

    def scan_peer(self, netns: str, ifname: str) -> PeerFacts:
        for link in self.links.values():
            if link.peer and link.peer[:2] == (netns, ifname):
                _netns, _ifname, address, gateway = link.peer
                return PeerFacts(
                    index=_peer_index(link), peer_index=link.index, up=True, loopback_up=True,
                    addresses=(address,), gateways=(gateway,),
                )
        return PeerFacts(loopback_up=True)

    def netns_exists(self, path: str) -> bool:
        return path not in self.gone_netns


def _peer_index(link: FakeLink) -> int:
    # The fake keeps a veth's peer inside its host-side record, under a derived index.
    return link.index + 100_000
