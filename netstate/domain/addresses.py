"""Address allocation within one network's subnet."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address

from netstate.domain.state import Lease, Network
from netstate.errors import AddressExhausted, AddressInUse, AddressNotInSubnet, AddressReserved


def usable_bounds(network: Network) -> tuple[int, int]:
    """Return the first and last address of the subnet a container may get, as integers.

    The network and broadcast addresses are excluded except on a /31, where RFC 3021 makes
    both usable. The gateway lies inside these bounds and is skipped separately.
    """
    subnet = network.subnet
    first, last = int(subnet.network_address), int(subnet.broadcast_address)
    if subnet.prefixlen >= 31:
        return first, last
    return first + 1, last - 1


def capacity(network: Network) -> int:
    """Return how many addresses of the network containers can hold at once."""
    first, last = usable_bounds(network)
    return last - first + 1 - 1  # minus the gateway, which is always inside the bounds


def next_address(network: Network, held: Mapping[IPv4Address, Lease]) -> IPv4Address:
    """Return the first free address after the network's cursor, wrapping around once.

    Starting after the last address handed out means a released address is not handed out
    again until the rest of the subnet has been used.

    Raises:
        AddressExhausted: every usable address is held.
    """
    size = capacity(network)
    if len(held) >= size:
        msg = (
            f"no free address on network {network.name!r} ({network.subnet}): all {size} "
            "usable addresses are held; release one or create a larger network"
        )
        raise AddressExhausted(msg)

    first, last = usable_bounds(network)
    span = last - first + 1
    start = first if network.last_address is None else int(network.last_address) + 1
    gateway = int(network.gateway)
    for step in range(span):
        candidate = first + (start - first + step) % span
        if candidate != gateway and IPv4Address(candidate) not in held:
            return IPv4Address(candidate)
    # The count check above makes this unreachable; reaching it means `held` contains addresses outside the subnet.
    raise AssertionError(f"bug: no free address found on {network.name!r} below its capacity")


def check_requested(network: Network, address: IPv4Address, held: Mapping[IPv4Address, Lease]) -> None:
    """Raise the specific error that keeps `address` from being handed out, if any."""
    subnet = network.subnet
    if address not in subnet:
        msg = f"address {address} is outside network {network.name!r} ({subnet}); pick one inside"
        raise AddressNotInSubnet(msg)
    if address == network.gateway:
        msg = f"address {address} is the gateway of network {network.name!r}; request another address"
        raise AddressReserved(msg)
    first, last = usable_bounds(network)
    if not first <= int(address) <= last:
        which = "network" if address == subnet.network_address else "broadcast"
        msg = f"address {address} is the {which} address of network {network.name!r} ({subnet}); request another address"
        raise AddressReserved(msg)
    lease = held.get(address)
    if lease is not None:
        msg = (
            f"address {address} on network {network.name!r} is held by endpoint {lease.endpoint!r}; "
            "request another address or release that endpoint first"
        )
        raise AddressInUse(msg, holder=lease.endpoint)
