"""Links, addresses and routes through pyroute2.

Every method is idempotent and reports whether it changed anything. Errors are never
discarded: a NetlinkError becomes a KernelError naming the object and the errno, except for the
errno values that mean "already so" (EEXIST on add) or "already gone" (ENODEV, ENOENT,
EADDRNOTAVAIL on delete).

Bridges and veths that netstate creates carry an ownership mark (`netstate.kernel.marks`), and
only links with that mark are ever deleted.

A bridge is created under a staging name, marked, then renamed, because the kernel ignores an
alias in the message that creates a link. So a bridge under its final name without the mark
is one netstate adopted, never one it half-created.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netstate.actions import EnsureBridge, EnsureVeth, RemoveBridge, RemoveStaleLink, RemoveVeth
from netstate.crash import crashpoint
from netstate.domain.decide import ObservedLink
from netstate.errors import KernelError
from netstate.kernel.marks import ALIAS_PREFIX, is_marked, is_owned, owner_alias, staging_name
from netstate.kernel.netns import entered, is_netns, netns_path
from netstate.reconcile.links import LinkFacts, PeerFacts

log = logging.getLogger(__name__)

AF_INET = 2
IFF_UP = 1
_GONE = {errno.ENODEV, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ESRCH}


class LinkDriver(Protocol):
    """The executor's interface to the kernel's link layer; `FakeLinks` is its test double."""

    def observe_link(self, name: str) -> ObservedLink | None: ...
    def link_state(self, name: str) -> tuple[bool, str | None] | None: ...
    def routes(self) -> tuple[tuple[IPv4Network, str], ...]: ...
    def ensure_bridge(self, action: EnsureBridge) -> bool: ...
    def remove_bridge(self, action: RemoveBridge) -> bool: ...
    def ensure_veth(self, action: EnsureVeth) -> bool: ...
    def remove_veth(self, action: RemoveVeth) -> bool: ...
    def remove_stale_link(self, action: RemoveStaleLink) -> bool: ...
    def scan_links(self) -> dict[str, LinkFacts]: ...
    def scan_peer(self, netns: str, ifname: str) -> PeerFacts: ...
    def netns_exists(self, path: str) -> bool: ...
    def resolve_netns(self, name_or_path: str) -> str: ...
    def close(self) -> None: ...


def _netlink_errors_as_kernel_errors(method):
    """Turn a NetlinkError that a step did not translate itself into a KernelError.

    The steps name their object in the message. This wrapper catches the reads that do not, so
    every netlink error reaches the caller as a NetstateError.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except NetlinkError as err:
            what = method.__name__.replace("_", " ")
            raise KernelError(f"{what} failed: {os.strerror(err.code)} (errno {err.code})") from err

    return wrapper


# The marks live in netstate.kernel.marks, which imports no pyroute2; they are exported here
# too for code that imported them from this module.
__all__ = ["ALIAS_PREFIX", "LinkDriver", "Pyroute2Links", "owner_alias"]


class Pyroute2Links:
    """LinkDriver on the real kernel, in the namespace this process runs in."""

    def __init__(self) -> None:
        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    # Observation

    @_netlink_errors_as_kernel_errors
    def observe_link(self, name: str) -> ObservedLink | None:
        message = self._link(name)
        if message is None:
            return None
        addresses = _ipv4_addresses(self.ipr, message["index"])
        return ObservedLink(name=name, kind=_kind(message), addresses=addresses)

    @_netlink_errors_as_kernel_errors
    def link_state(self, name: str) -> tuple[bool, str | None] | None:
        """Return (administratively up, alias) of a link, or None when it does not exist."""
        message = self._link(name)
        if message is None:
            return None
        return bool(message["flags"] & IFF_UP), message.get_attr("IFLA_IFALIAS")

    @_netlink_errors_as_kernel_errors
    def routes(self) -> tuple[tuple[IPv4Network, str], ...]:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in self.ipr.get_links()}
        found = []
        for route in self._call("list routes in", "all tables", self.ipr.route, "dump", family=AF_INET):
            destination = route.get_attr("RTA_DST") or "0.0.0.0"
            network = IPv4Network(f"{destination}/{route['dst_len']}", strict=False)
            found.append((network, names.get(route.get_attr("RTA_OIF"), "?")))
        return tuple(found)

    # Bridges

    @_netlink_errors_as_kernel_errors
    def ensure_bridge(self, action: EnsureBridge) -> bool:
        changed = False
        message = self._link(action.name)
        if message is None:
            message = self._create_bridge(action)
            changed = True
        elif _kind(message) != "bridge":
            msg = f"link {action.name!r} exists and is not a bridge; cannot use it for network {action.network!r}"
            raise KernelError(msg)
        index = message["index"]

        # A bridge netstate created for a network removed earlier, now recorded for another.
        alias = message.get_attr("IFLA_IFALIAS")
        if is_marked(alias) and alias != owner_alias(action.network):
            self._call("mark bridge", action.name, self.ipr.link, "set", index=index, ifalias=owner_alias(action.network))
            changed = True
        changed |= self._ensure_only_address(action.name, index, action.address)
        if not message["flags"] & IFF_UP:
            self._call("bring up bridge", action.name, self.ipr.link, "set", index=index, state="up")
            changed = True
        if changed:
            log.info("bridge %s ensured with %s", action.name, action.address)
        return changed

    def _create_bridge(self, action: EnsureBridge):
        """Create, mark and rename a bridge, so that it never shows under its name unmarked."""
        staging = staging_name(action.name)
        leftover = self._link(staging)
        if leftover is not None:
            self._delete(leftover["index"], staging)
        self._call("create bridge", action.name, self.ipr.link, "add", ifname=staging, kind="bridge")
        crashpoint("bridge:created")
        index = self._link(staging)["index"]
        self._call("mark bridge", action.name, self.ipr.link, "set", index=index, ifalias=owner_alias(action.network))
        crashpoint("bridge:marked")
        try:
            self.ipr.link("set", index=index, ifname=action.name)
        except NetlinkError as err:
            self._delete(index, staging)
            if err.code == errno.EEXIST and self._link(action.name) is not None:
                # Another process created the bridge meanwhile; ensure that one.
                return self._link(action.name)
            raise KernelError(f"cannot name bridge {action.name!r}: {os.strerror(err.code)}") from err
        crashpoint("bridge:named")
        return self._link(action.name)

    def _ensure_only_address(self, name: str, index: int, wanted: IPv4Interface) -> bool:
        changed = False
        present = _ipv4_addresses(self.ipr, index)
        for address in present:
            if address != wanted:
                self._call(
                    f"remove stray address {address} from", name, self.ipr.addr, "del",
                    index=index, address=str(address.ip), prefixlen=address.network.prefixlen,
                )
                changed = True
        if wanted not in present:
            _add_address(self.ipr, name, index, wanted)
            changed = True
        return changed

    @_netlink_errors_as_kernel_errors
    def remove_bridge(self, action: RemoveBridge) -> bool:
        message = self._link(action.name)
        if message is None:
            return False
        if message.get_attr("IFLA_IFALIAS") != owner_alias(action.network):
            log.info("bridge %s was not created by netstate; left in place", action.name)
            return False
        self._delete(message["index"], action.name)
        log.info("bridge %s removed", action.name)
        return True

    # Veths

    @_netlink_errors_as_kernel_errors
    def ensure_veth(self, action: EnsureVeth) -> bool:
        changed = False
        bridge = self._link(action.bridge)
        if bridge is None:
            raise KernelError(f"bridge {action.bridge!r} not found; run `netstate restore`")
        host = self._link(action.host_ifname)
        if host is not None and not self._peer_present(action, host):
            # The container namespace was recreated and took the peer with it; start over.
            self._delete(host["index"], action.host_ifname)
            host = None
        fresh = host is None
        if fresh:
            host = self._create_veth(action)
            changed = True
        settings = {}
        if host.get_attr("IFLA_IFALIAS") != owner_alias(action.endpoint):
            settings["ifalias"] = owner_alias(action.endpoint)
        if host.get_attr("IFLA_MASTER") != bridge["index"] or not host["flags"] & IFF_UP:
            settings.update(master=bridge["index"], state="up")
        if settings:
            self._call("mark and attach veth", action.host_ifname, self.ipr.link, "set", index=host["index"], **settings)
            changed = True
        crashpoint("veth:attached")
        changed |= self._configure_peer(action, fresh)
        if changed:
            log.info("veth %s ensured for endpoint %s in %s", action.host_ifname, action.endpoint, action.netns)
        return changed

    def _create_veth(self, action: EnsureVeth):
        try:
            fd = os.open(action.netns, os.O_RDONLY)
        except OSError as err:
            raise KernelError(f"cannot open namespace {action.netns}: {err.strerror}") from err
        try:
            # Creating the peer directly in the namespace avoids a move, which costs ~15 ms.
            self.ipr.link(
                "add", ifname=action.host_ifname, kind="veth",
                peer={"ifname": action.ifname, "net_ns_fd": fd},
            )
        except NetlinkError as err:
            host = self._link(action.host_ifname) if err.code == errno.EEXIST else None
            if host is None:
                reason = os.strerror(err.code)
                if err.code == errno.EEXIST:
                    reason = (
                        f"{action.ifname} already exists in {action.netns}; pass another --ifname, "
                        "or run `netstate check --repair` if a stale netstate veth holds it"
                    )
                raise KernelError(f"cannot create veth {action.host_ifname!r}: {reason}") from err
            return host  # another process created it meanwhile
        finally:
            os.close(fd)
        crashpoint("veth:created")
        return self._link(action.host_ifname)

    def _peer_present(self, action: EnsureVeth, host) -> bool:
        """Return True when the namespace contains the host veth's own peer under its ifname."""
        try:
            with entered(action.netns):
                inside = IPRoute()
        except OSError:
            return False
        try:
            found = inside.link_lookup(ifname=action.ifname)
            if not found:
                return False
            peer = inside.get_links(found[0])[0]
            return peer.get_attr("IFLA_LINK") == host["index"] and host.get_attr("IFLA_LINK") == found[0]
        finally:
            inside.close()
        return (
            _kind(peer) == "veth"
            and peer.get_attr("IFLA_LINK") == host["index"]
            and host.get_attr("IFLA_LINK") == peer["index"]
        )

    def _configure_peer(self, action: EnsureVeth, fresh: bool) -> bool:
        """Configure the container side; `fresh` when the veth was created by this call."""
        try:
            with entered(action.netns):
                inside = IPRoute()
        except OSError as err:
            raise KernelError(f"cannot enter namespace {action.netns}: {err.strerror}") from err
        changed = False
        try:
            found = inside.link_lookup(ifname=action.ifname)
            if not found:
                raise KernelError(f"interface {action.ifname} not found in {action.netns}")
            index = found[0]
            if fresh:
                # A peer created a moment ago has no address and is down: skip the reads.
                _add_address(inside, action.ifname, index, action.address)
                crashpoint("peer:addressed")
                for link_index, name in ((1, "lo"), (index, action.ifname)):
                    self._call("bring up", name, inside.link, "set", index=link_index, state="up")
                self._ensure_default_route(inside, action)
                return True
            # Exactly the lease's address: a veth left from an earlier lease of the same
            # endpoint may still carry the old one.
            for address in _ipv4_addresses(inside, index):
                if address != action.address:
                    self._call(
                        f"remove stale address {address} from", action.ifname, inside.addr, "del",
                        index=index, address=str(address.ip), prefixlen=address.network.prefixlen,
                    )
                    changed = True
            if action.address not in _ipv4_addresses(inside, index):
                _add_address(inside, action.ifname, index, action.address)
                changed = True
            crashpoint("peer:addressed")
            for link_index in (1, index):  # loopback, then the container's interface
                message = inside.get_links(link_index)[0]
                if not message["flags"] & IFF_UP:
                    name = message.get_attr("IFLA_IFNAME")
                    self._call("bring up", name, inside.link, "set", index=link_index, state="up")
                    changed = True
            changed |= self._ensure_default_route(inside, action)
        finally:
            inside.close()
        return changed

    def _ensure_default_route(self, inside: IPRoute, action: EnsureVeth) -> bool:
        # A container keeps the default route it has: the first network plumbed into it, or
        # one its runtime set. Replacing it would make two networks in one namespace take the
        # route from each other on every restore.
        for route in inside.route("dump", family=AF_INET, table=254):
            if route["dst_len"] == 0:
                return False
        self._call(
            "set default route in", action.netns, inside.route, "add",
            dst="0.0.0.0/0", gateway=str(action.gateway),
        )
        return True

    @_netlink_errors_as_kernel_errors
    def remove_veth(self, action: RemoveVeth) -> bool:
        message = self._link(action.host_ifname)
        if message is None:
            return False
        self._delete(message["index"], action.host_ifname)
        log.info("veth %s of endpoint %s removed", action.host_ifname, action.endpoint)
        return True

    def remove_stale_link(self, action: RemoveStaleLink) -> bool:
        message = self._link(action.name)
        if message is None:
            return False
        kind, alias = _kind(message), message.get_attr("IFLA_IFALIAS")
        if kind != action.kind or not is_owned(action.name, kind, alias):
            log.warning("link %s is not a netstate %s; left in place", action.name, action.kind)
            return False
        self._delete(message["index"], action.name)
        log.info("stale %s %s removed", action.kind, action.name)
        return True

    # Reconciliation

    def scan_links(self) -> dict[str, LinkFacts]:
        """Return every link of the managed namespace with its IPv4 addresses."""
        messages = self._call("list links of", "this namespace", self.ipr.get_links)
        addresses: dict[int, list[IPv4Interface]] = {}
        for a in self._call("list addresses of", "this namespace", self.ipr.get_addr, family=AF_INET):
            address = IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            addresses.setdefault(a["index"], []).append(address)
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in messages}
        found = {}
        for m in messages:
            name = m.get_attr("IFLA_IFNAME")
            found[name] = LinkFacts(
                name=name,
                kind=_kind(m),
                index=m["index"],
                up=bool(m["flags"] & IFF_UP),
                alias=m.get_attr("IFLA_IFALIAS"),
                master=names.get(m.get_attr("IFLA_MASTER")),
                addresses=tuple(addresses.get(m["index"], ())),
                peer_index=m.get_attr("IFLA_LINK"),
            )
        return found

    def scan_peer(self, netns: str, ifname: str) -> PeerFacts:
        """Return the facts of interface `ifname` in namespace `netns`, its lo and default routes."""
        try:
            with entered(netns):
                inside = IPRoute()
        except OSError as err:
            return PeerFacts(error=f"cannot enter namespace: {err.strerror}")
        try:
            found = inside.link_lookup(ifname=ifname)
            loopback = inside.get_links(1)[0]
            gateways = tuple(
                _address_or_none(route.get_attr("RTA_GATEWAY"))
                for route in inside.route("dump", family=AF_INET, table=254)
                if route["dst_len"] == 0
            )
            if not found:
                return PeerFacts(loopback_up=bool(loopback["flags"] & IFF_UP), gateways=gateways)
            message = inside.get_links(found[0])[0]
            addresses = tuple(
                IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                for a in inside.get_addr(index=found[0], family=AF_INET)
            )
            return PeerFacts(
                index=found[0],
                peer_index=message.get_attr("IFLA_LINK"),
                up=bool(message["flags"] & IFF_UP),
                loopback_up=bool(loopback["flags"] & IFF_UP),
                addresses=addresses,
                gateways=gateways,
            )
        except NetlinkError as err:
            return PeerFacts(error=f"cannot read {ifname}: {os.strerror(err.code)}")
        finally:
            inside.close()

    def netns_exists(self, path: str) -> bool:
        return is_netns(path)

    def resolve_netns(self, name_or_path: str) -> str:
        """Return the path of a namespace given by name or path; raise NotFound if it is none."""
        return str(netns_path(name_or_path))

    # Helpers

    def _link(self, name: str):
        try:
            return self.ipr.link("get", ifname=name)[0]
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return None
            raise KernelError(f"cannot read link {name!r}: {os.strerror(err.code)}") from err

    def _delete(self, index: int, name: str) -> None:
        try:
            self.ipr.link("del", index=index)
        except NetlinkError as err:
            if err.code not in _GONE:
                raise KernelError(f"cannot delete link {name!r}: {os.strerror(err.code)}") from err

    @staticmethod
    def _call(what: str, name: str, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except NetlinkError as err:
            raise KernelError(f"cannot {what} {name!r}: {os.strerror(err.code)}") from err


def _ipv4_addresses(ipr: IPRoute, index: int) -> tuple[IPv4Interface, ...]:
    return tuple(
        IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        for a in ipr.get_addr(index=index, family=AF_INET)
    )


def _add_address(ipr: IPRoute, name: str, index: int, address: IPv4Interface) -> None:
    """Add an address; EEXIST means it is already there, every other error is raised."""
    try:
        ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
    except NetlinkError as err:
        if err.code != errno.EEXIST:
            msg = f"cannot add address {address} to {name!r}: {os.strerror(err.code)}"
            raise KernelError(msg) from err


def _address_or_none(value: str | None) -> IPv4Address | None:
    return None if value is None else IPv4Address(value)


def _kind(message) -> str:
    info = message.get_attr("IFLA_LINKINFO")
    if info is None:
        return ""
    return info.get_attr("IFLA_INFO_KIND") or ""
