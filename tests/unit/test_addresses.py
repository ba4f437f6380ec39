"""Address allocation inside one network: reserved addresses, the cursor, exhaustion."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netstate.domain.addresses import capacity, check_requested, next_address
from netstate.domain.state import Lease, Network
from netstate.errors import AddressExhausted, AddressInUse, AddressNotInSubnet, AddressReserved

A = IPv4Address


def network(subnet: str, gateway: str, last: str | None = None) -> Network:
    return Network(
        name="web",
        subnet=IPv4Network(subnet),
        gateway=A(gateway),
        bridge="nsweb0",
        last_address=None if last is None else A(last),
    )


def held(*addresses: str) -> dict[IPv4Address, Lease]:
    return {A(a): Lease("web", f"c{i}", A(a)) for i, a in enumerate(addresses)}


def allocate_all(net: Network) -> list[IPv4Address]:
    """Hand out addresses until the network is full, moving the cursor as the fold does."""
    taken: dict[IPv4Address, Lease] = {}
    while True:
        try:
            address = next_address(net, taken)
        except AddressExhausted:
            return list(taken)
        taken[address] = Lease("web", str(address), address)
        net = replace(net, last_address=address)


class TestNextAddress:
    def test_first_address_skips_network_and_gateway(self):
        assert next_address(network("192.0.2.0/24", "192.0.2.1"), {}) == A("192.0.2.2")

    def test_gateway_elsewhere_does_not_leak_network_plus_one(self):
        # Reference bug 3: network+1 was thrown away as if it were the gateway.
        net = network("192.0.2.0/24", "192.0.2.254")
        assert next_address(net, {}) == A("192.0.2.1")
        assert A("192.0.2.254") not in allocate_all(net)

    def test_continues_after_last_handed_out(self):
        net = network("192.0.2.0/24", "192.0.2.1", last="192.0.2.9")
        assert next_address(net, held("192.0.2.2")) == A("192.0.2.10")

    def test_released_address_not_reused_at_once(self):
        # c1 got .2 and released it; the cursor is at .2, so .3 comes next.
        net = network("192.0.2.0/24", "192.0.2.1", last="192.0.2.2")
        assert next_address(net, {}) == A("192.0.2.3")

    def test_wraps_after_the_last_usable_address(self):
        net = network("192.0.2.0/24", "192.0.2.1", last="192.0.2.254")
        assert next_address(net, held("192.0.2.2")) == A("192.0.2.3")

    def test_wrap_skips_gateway_at_start(self):
        net = network("192.0.2.0/29", "192.0.2.1", last="192.0.2.6")
        assert next_address(net, {}) == A("192.0.2.2")

    def test_never_network_broadcast_or_gateway(self):
        net = network("192.0.2.0/28", "192.0.2.7")
        handed = allocate_all(net)
        assert len(handed) == len(set(handed)) == capacity(net) == 13
        for reserved in ("192.0.2.0", "192.0.2.7", "192.0.2.15"):
            assert A(reserved) not in handed

    def test_slash_30_with_gateway_at_dot_2(self):
        # Reference bug 3: in a /30 with the gateway at .2 no container ever got an address.
        net = network("198.51.100.0/30", "198.51.100.2")
        assert capacity(net) == 1
        assert allocate_all(net) == [A("198.51.100.1")]

    def test_slash_31_gives_one_address(self):
        # Reference bug 4: /31 and /32 handed out 0.0.0.0.
        net = network("198.51.100.4/31", "198.51.100.4")
        assert capacity(net) == 1
        assert allocate_all(net) == [A("198.51.100.5")]
        other = network("198.51.100.4/31", "198.51.100.5")
        assert allocate_all(other) == [A("198.51.100.4")]

    def test_exhaustion_names_network_and_capacity(self):
        net = network("198.51.100.0/29", "198.51.100.1")
        full = held(*(f"198.51.100.{i}" for i in range(2, 7)))
        with pytest.raises(AddressExhausted, match=r"network 'web' \(198.51.100.0/29\): all 5 usable") as caught:
            next_address(net, full)
        assert caught.value.exit_code == 1

    def test_exhaustion_fails_at_once_on_a_large_network(self):
        net = network("10.0.0.0/8", "10.0.0.1")
        # A full /8 held in a map would be slow to build; the check reads only its size.
        class Full(dict):
            def __len__(self):
                return capacity(net)

        with pytest.raises(AddressExhausted, match="all 16777213 usable addresses"):
            next_address(net, Full())


@given(
    prefix=st.integers(min_value=24, max_value=31),
    gateway_offset=st.integers(min_value=0, max_value=255),
    fill_first=st.booleans(),
    steps=st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=300)), max_size=60),
)
def test_allocation_invariants(prefix, gateway_offset, fill_first, steps):
    """Random allocations (None) and releases (an index into the held addresses)."""
    subnet = IPv4Network(f"203.0.113.0/{prefix}")
    usable = list(subnet.hosts()) if prefix < 31 else list(subnet)
    net = network(str(subnet), str(usable[gateway_offset % len(usable)]))
    candidates = [a for a in usable if a != net.gateway]
    taken: dict[IPv4Address, Lease] = {}
    if fill_first:
        steps = [None] * capacity(net) + steps
    for step in steps:
        if step is not None:
            if taken:
                del taken[sorted(taken)[step % len(taken)]]
            continue
        if len(taken) == capacity(net):
            with pytest.raises(AddressExhausted):
                next_address(net, taken)
            continue

        address = next_address(net, taken)
        assert address in candidates
        assert address not in taken
        # The first free address after the cursor, in cyclic order.
        start = 0 if net.last_address is None else candidates.index(net.last_address) + 1
        in_order = candidates[start:] + candidates[:start]
        assert address == next(a for a in in_order if a not in taken)
        taken[address] = Lease("web", str(address), address)
        net = replace(net, last_address=address)


class TestCheckRequested:
    net = network("192.0.2.0/24", "192.0.2.1")

    def test_free_address_accepted(self):
        check_requested(self.net, A("192.0.2.9"), held("192.0.2.2"))

    def test_outside_subnet(self):
        with pytest.raises(AddressNotInSubnet, match=r"198.51.100.9 is outside network 'web' \(192.0.2.0/24\)"):
            check_requested(self.net, A("198.51.100.9"), {})

    @pytest.mark.parametrize(
        ("address", "match"),
        [
            ("192.0.2.1", "is the gateway of network 'web'"),
            ("192.0.2.0", "is the network address"),
            ("192.0.2.255", "is the broadcast address"),
        ],
    )
    def test_reserved(self, address, match):
        with pytest.raises(AddressReserved, match=match):
            check_requested(self.net, A(address), {})

    def test_held_names_the_holder(self):
        with pytest.raises(AddressInUse, match="192.0.2.9 on network 'web' is held by endpoint 'c0'") as caught:
            check_requested(self.net, A("192.0.2.9"), held("192.0.2.9"))
        assert caught.value.holder == "c0"

    def test_errors_are_distinct_types(self):
        kinds = {AddressNotInSubnet, AddressReserved, AddressInUse}
        assert len(kinds) == 3
        assert not any(issubclass(a, b) for a in kinds for b in kinds if a is not b)

    def test_slash_31_both_addresses_usable(self):
        net = network("198.51.100.4/31", "198.51.100.4")
        check_requested(net, A("198.51.100.5"), {})
        with pytest.raises(AddressReserved, match="gateway"):
            check_requested(net, A("198.51.100.4"), {})
