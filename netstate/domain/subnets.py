"""Subnet and gateway parsing, and the automatic choice of a subnet that clashes with nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Interface, IPv4Network, NetmaskValueError

from netstate.domain.events import RejectedSubnet
from netstate.errors import InvalidAddress, InvalidSubnet, NoFreeSubnet, SubnetOverlap

# Tried in order when a network is created without --subnet. Each entry is the gateway with its
# prefix length, as the Docker daemon of 2013 listed them, so the /16 ranges keep the .42.1
# gateways that scripts of that era expect.
CANDIDATES: tuple[str, ...] = (
    "172.17.42.1/16",
    "10.0.42.1/16",
    "10.1.42.1/16",
    "10.42.42.1/16",
    "172.16.42.1/24",
    "172.16.43.1/24",
    "172.16.44.1/24",
    "10.0.42.1/24",
    "10.0.43.1/24",
    "192.168.42.1/24",
    "192.168.43.1/24",
    "192.168.44.1/24",
)


# Ranges that cannot serve as a bridge subnet (RFC 6890). 0.0.0.0/8 and 127.0.0.0/8 belong to
# the host itself, link-local addresses are not forwarded, and the rest are not unicast.
SPECIAL_RANGES: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("0.0.0.0/8"), "'this network' range"),
    (IPv4Network("127.0.0.0/8"), "loopback range"),
    (IPv4Network("169.254.0.0/16"), "link-local range"),
    (IPv4Network("224.0.0.0/4"), "multicast range"),
    (IPv4Network("240.0.0.0/4"), "reserved range"),
)


@dataclass(frozen=True, slots=True)
class HostFacts:
    """Routes and nameservers of the managed namespace, read before a subnet is chosen."""

    # IPv4 destinations of every route but default routes, with the device name for messages.
    routes: tuple[tuple[IPv4Network, str], ...] = ()
    nameservers: tuple[IPv4Address, ...] = ()


def parse_address(text: str) -> IPv4Address:
    """Parse an IPv4 address; raise InvalidAddress naming the text."""
    try:
        return IPv4Address(text.strip())
    except AddressValueError:
        raise InvalidAddress(f"invalid IPv4 address {text!r}; expected a form like 10.44.0.9") from None


def parse_subnet(text: str, gateway: str | None = None) -> tuple[IPv4Network, IPv4Address]:
    """Parse a subnet and its gateway from CIDR text and an optional gateway.

    Host bits name the gateway: 10.44.0.1/24 means gateway 10.44.0.1 in 10.44.0.0/24. With no
    host bits and no gateway, the gateway is the first usable address. A /31 has two usable
    addresses (RFC 3021), so it leaves one for a container; a /32 leaves none and is rejected.

    Raises:
        InvalidSubnet: the text is no IPv4 CIDR, the prefix is /32, the subnet overlaps a
            loopback, link-local, multicast or reserved range, or the gateway is outside
            the subnet or is its network or broadcast address.
    """
    try:
        interface = IPv4Interface(text.strip())
    except (AddressValueError, NetmaskValueError, ValueError):
        msg = f"invalid subnet {text!r}; expected IPv4 CIDR notation such as 10.44.0.0/24"
        raise InvalidSubnet(msg) from None
    if "/" not in text:
        raise InvalidSubnet(f"invalid subnet {text!r}: missing prefix length, as in 10.44.0.0/24")
    subnet = interface.network
    check_size(subnet, text)
    check_unicast(subnet, text)

    host_bits_set = interface.ip != subnet.network_address
    if gateway is not None:
        chosen = parse_address(gateway)
        if host_bits_set and chosen != interface.ip:
            msg = f"subnet {text!r} names gateway {interface.ip} but --gateway is {chosen}; give the gateway once"
            raise InvalidSubnet(msg)
    elif host_bits_set:
        chosen = interface.ip
    else:
        chosen = subnet.network_address + 1
    check_gateway(subnet, chosen)
    return subnet, chosen


def check_size(subnet: IPv4Network, text: str | None = None) -> None:
    """Raise InvalidSubnet for a /32, which leaves no address for a container."""
    if subnet.prefixlen == 32:
        shown = repr(text) if text is not None else str(subnet)
        msg = f"invalid subnet {shown}: a /32 has no address for a container; use /30 or larger"
        raise InvalidSubnet(msg)


def check_unicast(subnet: IPv4Network, text: str | None = None) -> None:
    """Raise InvalidSubnet if `subnet` overlaps a loopback, link-local, multicast or reserved range."""
    for special, what in SPECIAL_RANGES:
        if subnet.overlaps(special):
            shown = repr(text) if text is not None else str(subnet)
            msg = f"invalid subnet {shown}: it overlaps {special}, the {what}; pick a private range such as 10.44.0.0/24"
            raise InvalidSubnet(msg)


def check_gateway(subnet: IPv4Network, gateway: IPv4Address) -> None:
    """Raise InvalidSubnet unless `gateway` is a usable address of `subnet`."""
    if gateway not in subnet:
        raise InvalidSubnet(f"gateway {gateway} is outside subnet {subnet}; pick an address inside it")
    if subnet.prefixlen < 31 and gateway in (subnet.network_address, subnet.broadcast_address):
        which = "network" if gateway == subnet.network_address else "broadcast"
        msg = f"gateway {gateway} is the {which} address of {subnet}; pick a host address"
        raise InvalidSubnet(msg)


def check_no_overlap(subnet: IPv4Network, networks: Mapping[str, IPv4Network]) -> None:
    """Raise SubnetOverlap if `subnet` overlaps the subnet of a recorded network."""
    for name, other in sorted(networks.items()):
        if subnet.overlaps(other):
            msg = f"subnet {subnet} overlaps network {name!r} ({other}); pick a subnet apart from it"
            raise SubnetOverlap(msg)


def choose_subnet(
    facts: HostFacts,
    networks: Mapping[str, IPv4Network],
    candidates: Iterable[str] = CANDIDATES,
) -> tuple[IPv4Network, IPv4Address, tuple[RejectedSubnet, ...]]:
    """Return the first candidate that clashes with nothing, its gateway and the rejected ones.

    A candidate is rejected when it overlaps a route, contains a nameserver or overlaps a
    recorded network. The reasons are returned so that the event records them.
    """
    rejected: list[RejectedSubnet] = []
    for text in candidates:
        interface = IPv4Interface(text)
        subnet = interface.network
        reason = _clash(subnet, facts, networks)
        if reason is None:
            return subnet, interface.ip, tuple(rejected)
        rejected.append(RejectedSubnet(subnet, reason))
    summary = "; ".join(f"{r.subnet}: {r.reason}" for r in rejected)
    raise NoFreeSubnet(f"no free subnet among the candidates ({summary}); pass --subnet")


def _clash(subnet: IPv4Network, facts: HostFacts, networks: Mapping[str, IPv4Network]) -> str | None:
    for name, other in sorted(networks.items()):
        if subnet.overlaps(other):
            return f"overlaps network {name!r} ({other})"
    for destination, device in facts.routes:
        # A default route covers every subnet, so it cannot mark one as clashing.
        if destination.prefixlen > 0 and subnet.overlaps(destination):
            return f"overlaps route {destination} dev {device}"
    for nameserver in facts.nameservers:
        if nameserver in subnet:
            return f"contains nameserver {nameserver}"
    return None
