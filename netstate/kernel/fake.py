"""In-memory stand-ins for the kernel adapters, for unit tests that need no root."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network

from netstate.actions import EnsureBridge, EnsureVeth, RemoveBridge, RemoveVeth
from netstate.domain.decide import ObservedLink
from netstate.errors import KernelError
from netstate.kernel.links import owner_alias


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


class FakeLinks:
    """LinkDriver that records links in a dict. `fail_on` names actions that raise."""

    def __init__(self, routes: tuple[tuple[IPv4Network, str], ...] = ()) -> None:
        self.links: dict[str, FakeLink] = {}
        self._routes = routes
        self.fail_on: set[type] = set()
        self.applied: list = []

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
        wanted = FakeLink(
            action.host_ifname, "veth", up=True, alias=owner_alias(action.endpoint),
            master=action.bridge, peer=(action.netns, action.ifname, action.address, action.gateway),
        )
        changed = self.links.get(action.host_ifname) != wanted
        self.links[action.host_ifname] = wanted
        return changed

    def remove_veth(self, action: RemoveVeth) -> bool:
        self._record(action)
        return self.links.pop(action.host_ifname, None) is not None
