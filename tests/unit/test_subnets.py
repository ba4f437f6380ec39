"""Subnet and gateway parsing, and the automatic choice of a subnet."""

from ipaddress import IPv4Address, IPv4Network

import pytest

from netstate.domain.events import RejectedSubnet
from netstate.domain.subnets import (
    CANDIDATES,
    HostFacts,
    choose_subnet,
    parse_address,
    parse_subnet,
)
from netstate.errors import InvalidAddress, InvalidSubnet, NoFreeSubnet

A = IPv4Address
N = IPv4Network


class TestParseSubnet:
    def test_network_address_gives_first_host_as_gateway(self):
        assert parse_subnet("192.0.2.0/24") == (N("192.0.2.0/24"), A("192.0.2.1"))

    def test_host_bits_name_the_gateway(self):
        assert parse_subnet("192.0.2.77/24") == (N("192.0.2.0/24"), A("192.0.2.77"))

    def test_explicit_gateway(self):
        assert parse_subnet("192.0.2.0/24", "192.0.2.254") == (N("192.0.2.0/24"), A("192.0.2.254"))

    def test_explicit_gateway_equal_to_host_bits(self):
        assert parse_subnet("192.0.2.9/24", "192.0.2.9") == (N("192.0.2.0/24"), A("192.0.2.9"))

    def test_host_bits_and_other_gateway_conflict(self):
        with pytest.raises(InvalidSubnet, match="names gateway 192.0.2.9 but --gateway is 192.0.2.10"):
            parse_subnet("192.0.2.9/24", "192.0.2.10")

    @pytest.mark.parametrize(
        ("text", "which"),
        [("192.0.2.255/24", "broadcast"), ("198.51.100.3/30", "broadcast")],
    )
    def test_host_bits_on_broadcast_rejected(self, text, which):
        # Reference bug 5: the broadcast address was put on the bridge as it was.
        with pytest.raises(InvalidSubnet, match=f"is the {which} address"):
            parse_subnet(text)

    @pytest.mark.parametrize(
        ("gateway", "which"), [("192.0.2.0", "network"), ("192.0.2.255", "broadcast")]
    )
    def test_gateway_on_network_or_broadcast_rejected(self, gateway, which):
        with pytest.raises(InvalidSubnet, match=f"gateway {gateway} is the {which} address of 192.0.2.0/24"):
            parse_subnet("192.0.2.0/24", gateway)

    def test_gateway_outside_subnet_rejected(self):
        with pytest.raises(InvalidSubnet, match="gateway 198.51.100.1 is outside subnet 192.0.2.0/24"):
            parse_subnet("192.0.2.0/24", "198.51.100.1")

    @pytest.mark.parametrize(
        ("text", "where"),
        [
            ("0.0.0.0/8", "0.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/8"),
            ("127.0.0.0/24", "127.0.0.0/8"),
            ("169.254.0.0/24", "169.254.0.0/16"),
            ("224.0.0.0/24", "224.0.0.0/4"),
            ("240.0.0.0/24", "240.0.0.0/4"),
            ("255.255.255.0/24", "240.0.0.0/4"),
        ],
    )
    def test_special_ranges_rejected(self, text, where):
        # The kernel takes 127.0.0.1/24 or 224.0.0.1/24 on a bridge without complaint.
        with pytest.raises(InvalidSubnet, match=f"invalid subnet '{text}': it overlaps {where}"):
            parse_subnet(text)

    def test_slash_31_leaves_one_container_address(self):
        # RFC 3021: both addresses of a /31 are usable; the gateway takes one.
        assert parse_subnet("192.0.2.4/31") == (N("192.0.2.4/31"), A("192.0.2.5"))
        assert parse_subnet("192.0.2.4/31", "192.0.2.4") == (N("192.0.2.4/31"), A("192.0.2.4"))
        assert parse_subnet("192.0.2.5/31") == (N("192.0.2.4/31"), A("192.0.2.5"))

    def test_slash_32_rejected(self):
        with pytest.raises(InvalidSubnet, match="'192.0.2.7/32': a /32 has no address for a container"):
            parse_subnet("192.0.2.7/32")

    @pytest.mark.parametrize(
        "text", ["banana", "192.0.2.0/33", "192.0.2.300/24", "2001:db8::/64", "192.0.2/24", ""]
    )
    def test_malformed_cidr_rejected(self, text):
        with pytest.raises(InvalidSubnet, match="invalid subnet") as caught:
            parse_subnet(text)
        assert repr(text) in str(caught.value)
        assert caught.value.exit_code == 2

    def test_missing_prefix_rejected(self):
        with pytest.raises(InvalidSubnet, match="missing prefix length"):
            parse_subnet("192.0.2.0")

    def test_malformed_gateway_rejected(self):
        with pytest.raises(InvalidAddress, match="invalid IPv4 address '192.0.2.x'"):
            parse_subnet("192.0.2.0/24", "192.0.2.x")


def test_parse_address():
    assert parse_address(" 192.0.2.9 ") == A("192.0.2.9")
    with pytest.raises(InvalidAddress, match="'192.0.2.256'"):
        parse_address("192.0.2.256")


class TestChooseSubnet:
    def test_first_candidate_when_nothing_clashes(self):
        subnet, gateway, rejected = choose_subnet(HostFacts(), {})
        assert (subnet, gateway, rejected) == (N("172.17.0.0/16"), A("172.17.42.1"), ())

    def test_default_route_ignored(self):
        facts = HostFacts(routes=((N("0.0.0.0/0"), "eth0"),))
        subnet, _gateway, rejected = choose_subnet(facts, {})
        assert subnet == N("172.17.0.0/16")
        assert rejected == ()

    def test_route_nameserver_and_network_each_rejected_with_reason(self):
        facts = HostFacts(
            routes=((N("172.17.5.0/24"), "eth1"), (N("0.0.0.0/0"), "eth0")),
            nameservers=(A("10.0.0.53"),),
        )
        networks = {"web": N("10.1.0.0/16")}
        subnet, gateway, rejected = choose_subnet(facts, networks)
        assert (subnet, gateway) == (N("10.42.0.0/16"), A("10.42.42.1"))
        assert rejected == (
            RejectedSubnet(N("172.17.0.0/16"), "overlaps route 172.17.5.0/24 dev eth1"),
            RejectedSubnet(N("10.0.0.0/16"), "contains nameserver 10.0.0.53"),
            RejectedSubnet(N("10.1.0.0/16"), "overlaps network 'web' (10.1.0.0/16)"),
        )

    def test_wider_route_rejects_narrower_candidates(self):
        facts = HostFacts(routes=((N("172.16.0.0/12"), "eth2"),))
        subnet, _gateway, rejected = choose_subnet(facts, {}, candidates=("172.17.42.1/16", "172.16.42.1/24", "10.0.42.1/24"))
        assert subnet == N("10.0.42.0/24")
        assert [r.subnet for r in rejected] == [N("172.17.0.0/16"), N("172.16.42.0/24")]

    def test_no_free_candidate_names_every_reason(self):
        facts = HostFacts(routes=((N("0.0.0.0/1"), "a"), (N("128.0.0.0/1"), "b")))
        with pytest.raises(NoFreeSubnet, match="pass --subnet") as caught:
            choose_subnet(facts, {})
        message = str(caught.value)
        for text in CANDIDATES:
            assert str(N(text, strict=False)) in message

    def test_candidates_are_valid_gateways(self):
        for text in CANDIDATES:
            subnet, gateway = parse_subnet(text)
            assert gateway in subnet
