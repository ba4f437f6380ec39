"""Links, addresses and routes through pyroute2.

Every method is idempotent and reports whether it changed anything. Errors are never
discarded: a NetlinkError becomes a KernelError naming the object and the errno, except for the
errno values that mean "already so" (EEXIST on add) or "already gone" (ENODEV, ENOENT,
EADDRNOTAVAIL on delete).

Bridges and veths that netstate creates carry the interface alias "netstate:<network>" (the
ownership mark), and only links with that mark are ever deleted.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from ipaddress import IPv4Interface, IPv4Network
from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netstate.actions import EnsureBridge, EnsureVeth, RemoveBridge, RemoveVeth
from netstate.domain.decide import ObservedLink
from netstate.errors import KernelError
from netstate.kernel.netns import entered

log = logging.getLogger(__name__)

AF_INET = 2
IFF_UP = 1
# IMPORTANT: reconciliation recognises netstate's links by this alias prefix; changing it
# orphans the links of existing installations.
ALIAS_PREFIX = "netstate:"
_GONE = {errno.ENODEV, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ESRCH}


class LinkDriver(Protocol):
    """What the executor needs from the kernel's link layer; `FakeLinks` is the test double."""

    def observe_link(self, name: str) -> ObservedLink | None: ...
    def link_state(self, name: str) -> tuple[bool, str | None] | None: ...
    def routes(self) -> tuple[tuple[IPv4Network, str], ...]: ...
    def ensure_bridge(self, action: EnsureBridge) -> bool: ...
    def remove_bridge(self, action: RemoveBridge) -> bool: ...
    def ensure_veth(self, action: EnsureVeth) -> bool: ...
    def remove_veth(self, action: RemoveVeth) -> bool: ...
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


def owner_alias(network: str) -> str:
    """Return the alias that marks a link as created by netstate for `network`."""
    return f"{ALIAS_PREFIX}{network}"[:255]


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
            changed = message is not None
            message = message or self._link(action.name)
        if message is None or _kind(message) != "bridge":
            msg = f"link {action.name!r} exists and is not a bridge; cannot use it for network {action.network!r}"
            raise KernelError(msg)
        index = message["index"]

        changed |= self._ensure_only_address(action.name, index, action.address)
        if not message["flags"] & IFF_UP:
            self._call("bring up bridge", action.name, self.ipr.link, "set", index=index, state="up")
            changed = True
        if changed:
            log.info("bridge %s ensured with %s", action.name, action.address)
        return changed

    def _create_bridge(self, action: EnsureBridge):
        """Create and mark the bridge; return its link message, or None if another process won."""
        try:
            self.ipr.link("add", ifname=action.name, kind="bridge")
        except NetlinkError as err:
            if err.code == errno.EEXIST:
                return None  # created by a concurrent netstate process since we looked
            raise KernelError(f"cannot create bridge {action.name!r}: {os.strerror(err.code)}") from err
        message = self._link(action.name)
        # NOTE: the kernel ignores an alias given with RTM_NEWLINK, so it is set in a second
        # step. A crash between the two leaves a bridge that `network rm` treats as adopted.
        self._call(
            "mark bridge", action.name, self.ipr.link, "set",
            index=message["index"], ifalias=owner_alias(action.network),
        )
        return message

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
        if host is not None and not self._peer_matches(action, host):
            # The container namespace was recreated or the peer moved away; start over.
            self._delete(host["index"], action.host_ifname)
            host = None
        if host is None:
            self._create_veth(action)
            host = self._link(action.host_ifname)
            changed = True
        index = host["index"]
        if host.get_attr("IFLA_MASTER") != bridge["index"] or not host["flags"] & IFF_UP:
            self._call(
                "attach veth", action.host_ifname, self.ipr.link, "set",
                index=index, master=bridge["index"], state="up",
            )
            changed = True
        changed |= self._configure_peer(action)
        if changed:
            log.info("veth %s ensured for endpoint %s in %s", action.host_ifname, action.endpoint, action.netns)
        return changed

    def _create_veth(self, action: EnsureVeth) -> None:
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
            if err.code == errno.EEXIST:
                msg = (
                    f"cannot create veth {action.host_ifname!r}: interface {action.ifname!r} "
                    f"already exists in {action.netns}; pass another --ifname"
                )
            else:
                msg = f"cannot create veth {action.host_ifname!r}: {os.strerror(err.code)}"
            raise KernelError(msg) from err
        finally:
            os.close(fd)
        index = self._link(action.host_ifname)["index"]
        self._call(
            "mark veth", action.host_ifname, self.ipr.link, "set",
            index=index, ifalias=owner_alias(action.endpoint),
        )

    def _peer_matches(self, action: EnsureVeth, host) -> bool:
        """Return True when the container's `ifname` is the peer of the host-side veth `host`.

        Interface indexes repeat across namespaces, so both ends must point at each other and
        the host end must point into another namespace.
        """
        if _kind(host) != "veth" or host.get_attr("IFLA_LINK_NETNSID") is None:
            return False
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
        finally:
            inside.close()
        return (
            _kind(peer) == "veth"
            and peer.get_attr("IFLA_LINK") == host["index"]
            and host.get_attr("IFLA_LINK") == peer["index"]
        )

    def _configure_peer(self, action: EnsureVeth) -> bool:
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
        for route in inside.route("dump", family=AF_INET, table=254):
            if route["dst_len"] == 0 and route.get_attr("RTA_GATEWAY") == str(action.gateway):
                return False
        self._call(
            "set default route in", action.netns, inside.route, "replace",
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


def _kind(message) -> str:
    info = message.get_attr("IFLA_LINKINFO")
    if info is None:
        return ""
    return info.get_attr("IFLA_INFO_KIND") or ""
