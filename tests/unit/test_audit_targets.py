"""Parsing of what `who` and `history` look up: an address or a host port."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from netstate.audit.targets import AddressTarget, PortTarget, parse_port, parse_target
from netstate.domain.events import Protocol
from netstate.errors import InvalidAddress, InvalidPortSpec


class TestParseTarget:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("10.44.0.7", AddressTarget(IPv4Address("10.44.0.7"))),
            (" 10.44.0.7 ", AddressTarget(IPv4Address("10.44.0.7"))),
            ("8080", PortTarget(8080)),
            ("8080/tcp", PortTarget(8080, Protocol.TCP)),
            ("53/UDP", PortTarget(53, Protocol.UDP)),
            ("192.0.2.10:53/udp", PortTarget(53, Protocol.UDP, IPv4Address("192.0.2.10"))),
            ("0.0.0.0:65535", PortTarget(65535, None, IPv4Address("0.0.0.0"))),
        ],
    )
    def test_parse_target_accepts_form(self, text, expected):
        assert parse_target(text) == expected

    @pytest.mark.parametrize("text", ["10.44.0.300", "web-1", "", "10.44.0"])
    def test_parse_target_rejects_bad_address(self, text):
        with pytest.raises(InvalidAddress, match="invalid IPv4 address"):
            parse_target(text)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("0/tcp", "outside 1-65535"),
            ("65536", "outside 1-65535"),
            ("8080/icmp", "unknown protocol 'icmp'"),
            ("8080/", "expected PORT, PORT/PROTO or HOST_IP:PORT/PROTO"),
            ("tcp/8080", "expected PORT, PORT/PROTO or HOST_IP:PORT/PROTO"),
            (":8080", "expected PORT, PORT/PROTO or HOST_IP:PORT/PROTO"),
        ],
    )
    def test_parse_target_rejects_bad_port(self, text, message):
        with pytest.raises(InvalidPortSpec, match=message):
            parse_target(text)

    def test_parse_port_rejects_bad_host_address(self):
        with pytest.raises(InvalidAddress, match="'300.0.0.1'"):
            parse_port("300.0.0.1:80/tcp")

    @pytest.mark.parametrize(
        ("target", "shown"),
        [
            (PortTarget(8080), "8080"),
            (PortTarget(8080, Protocol.TCP), "8080/tcp"),
            (PortTarget(53, Protocol.UDP, IPv4Address("192.0.2.10")), "192.0.2.10:53/udp"),
        ],
    )
    def test_port_target_prints_as_given(self, target, shown):
        assert str(target) == shown
