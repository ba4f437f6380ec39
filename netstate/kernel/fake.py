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

    def resolve_netns(self, name_or_path: str) -> str:
        """Resolve a name as the real adapter does; any existing path not marked gone counts."""
        import os

        from netstate.errors import NotFound
        from netstate.kernel.netns import netns_location

        path = str(netns_location(name_or_path))
        if path in self.gone_netns or not os.path.exists(path):
            raise NotFound(f"network namespace {name_or_path!r} not found at {path}")
        return path


def _peer_index(link: FakeLink) -> int:
    # The fake keeps a veth's peer inside its host-side record, under a derived index.
    return link.index + 100_000

class FakeFirewall:
    """Firewall adapter over in-memory tables, planned by the same code as the real one."""

    BUILTIN = {
        "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
        "filter": ("INPUT", "FORWARD", "OUTPUT"),
    }

    def __init__(self) -> None:
        from netstate.firewall.sync import ObservedTables

        chains = {(table, name): () for table, names in self.BUILTIN.items() for name in names}
        self.tables = ObservedTables(chains)
        self.fail = False
        self.syncs = 0

    def observe(self):
        return self.tables

    def sync(self, ruleset):
        from netstate.firewall.sync import apply_to_texts, plan_changes

        if self.fail:
            raise KernelError("fake firewall failure")
        changes = plan_changes(ruleset, self.tables)
        self.tables = apply_to_texts(self.tables, changes)
        self.syncs += 1
        return changes

    def rules(self, table: str, chain: str) -> list[str]:
        """Return the rule texts of one chain (empty when it does not exist)."""
        return list(self.tables.chains.get((table, chain), ()))

    def insert_foreign(self, table: str, chain: str, text: str, position: int = 0) -> None:
        """Insert a rule as another program would, creating the chain if needed."""
        from netstate.firewall.sync import ObservedTables

        chains = dict(self.tables.chains)
        texts = list(chains.get((table, chain), ()))
        texts.insert(position, text)
        chains[(table, chain)] = tuple(texts)
        self.tables = ObservedTables(chains)


class FakeProxy:
    """Proxy supervisor that records the mappings it would serve.

    Host ports listed in `taken` as (protocol, host_ip, host_port) fail like ports held by
    another program.
    """

    def __init__(self) -> None:
        self.serving: tuple = ()
        self.running = False
        self.taken: set[tuple[str, str, int]] = set()

    def sync(self, bindings, required=None) -> bool:
        from netstate.errors import PortInUse
        from netstate.kernel.proxy import to_mapping

        bindings = list(bindings)
        mappings = tuple(sorted((to_mapping(b) for b in bindings), key=lambda m: m.key))
        before = (self.running, self.serving)
        served = tuple(m for m in mappings if m.key not in self.taken)
        self.serving, self.running = served, bool(mappings)
        failed = [
            to_mapping(b) for b in bindings
            if to_mapping(b).key in self.taken and (required is None or b.key in required)
        ]
        if failed:
            where = f"{failed[0].host_ip}:{failed[0].host_port}/{failed[0].protocol}"
            raise PortInUse(f"host port {where} is in use by another program", holder="another program")
        return before != (self.running, self.serving)

    def status(self):
        from netstate.kernel.proxy import ProxyStatus

        return ProxyStatus(pid=0, serving=self.serving) if self.running else None

    def stop(self) -> bool:
        was = self.running
        self.running, self.serving = False, ()
        return was


class FakeSysctl:
    """Sysctls in a dict; every key reads as "0" until set."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def read(self, key: str) -> str | None:
        return self.values.get(key, "0")

    def ensure(self, key: str, value: str) -> bool:
        changed = self.read(key) != value
        self.values[key] = value
        return changed


class FakeConntrack:
    """Records the UDP ports whose conntrack entries would be deleted."""

    def __init__(self) -> None:
        self.flushed: list[int] = []

    def flush_udp(self, ports) -> int:
        ports = sorted(set(ports))
        self.flushed += ports
        return len(ports)


def fake_forwarding():
    """Return a Forwarding bundle of fakes."""
    from netstate.kernel.forwarding import Forwarding

    return Forwarding(FakeFirewall(), FakeProxy(), FakeSysctl(), FakeConntrack())
