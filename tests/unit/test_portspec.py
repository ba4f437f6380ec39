"""Parsing of port publishing specs in Docker's `-p` syntax."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netstate.domain.events import Protocol
from netstate.domain.portspec import WILDCARD, PortRange, PortSpec
from netstate.errors import InvalidInput, InvalidPortSpec


class TestParse:
    @pytest.mark.parametrize(
        ("text", "host_ip", "host_ports", "container", "protocol"),
        [
            ("80", WILDCARD, None, PortRange(80, 80), Protocol.TCP),
            ("8080:80", WILDCARD, PortRange(8080, 8080), PortRange(80, 80), Protocol.TCP),
            (":80", WILDCARD, None, PortRange(80, 80), Protocol.TCP),
            ("127.0.0.1::53/udp", IPv4Address("127.0.0.1"), None, PortRange(53, 53), Protocol.UDP),
            ("192.0.2.10:8080:80", IPv4Address("192.0.2.10"), PortRange(8080, 8080), PortRange(80, 80), Protocol.TCP),
            ("9000-9005:9000-9005", WILDCARD, PortRange(9000, 9005), PortRange(9000, 9005), Protocol.TCP),
            ("8000-8010:80", WILDCARD, PortRange(8000, 8010), PortRange(80, 80), Protocol.TCP),
            ("9000-9002", WILDCARD, None, PortRange(9000, 9002), Protocol.TCP),
            ("5000/sctp", WILDCARD, None, PortRange(5000, 5000), Protocol.SCTP),
            ("53/UDP", WILDCARD, None, PortRange(53, 53), Protocol.UDP),
            ("65535:1", WILDCARD, PortRange(65535, 65535), PortRange(1, 1), Protocol.TCP),
        ],
    )
    def test_parse_reads_docker_syntax(self, text, host_ip, host_ports, container, protocol):
        spec = PortSpec.parse(text)

        assert spec.host_ip == host_ip
        assert spec.host_ports == host_ports
        assert spec.container_ports == container
        assert spec.protocol == protocol

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("abc", "container port 'abc' is not a port number"),
            ("8080:http", "container port 'http' is not a port number"),
            ("web:80", "host port 'web' is not a port number"),
            ("70000", "container port '70000' is out of range 1-65535"),
            ("8080:70000", "container port '70000' is out of range"),
            ("70000:80", "host port '70000' is out of range"),
            ("-1", "container port '-1' is not a port number"),
            ("8080:-1", "container port '-1' is not a port number"),
            ("0", "container port '0' is out of range"),
            ("0:80", "leave it empty for a dynamic port"),
            ("9005-9000", "container port range '9005-9000' is reversed"),
            ("9005-9000:80", "host port range '9005-9000' is reversed"),
            ("9000-9002:80-81", "host ports 9000-9002 and container ports 80-81 differ in count \\(3 and 2\\)"),
            ("8080:80-81", "host ports 8080 and container ports 80-81 differ in count \\(1 and 2\\)"),
            ("80/icmp", "unknown protocol 'icmp'"),
            ("80/", "unknown protocol ''"),
            ("80/tcp/udp", "unknown protocol 'tcp/udp'"),
            ("::1:80:80", "IPv6 host addresses are not supported"),
            ("[::1]:80:80", "IPv6 host addresses are not supported"),
            (":8080:80", "the host address before ':' is empty"),
            ("300.1.1.1:80:80", "host address '300.1.1.1' is not an IPv4 address"),
            ("224.0.0.1:80:80", "is not a unicast address"),
            ("", "must be non-empty"),
            (" 80", "without spaces"),
            ("1-2-3", "is not a port number or a range"),
        ],
    )
    def test_parse_rejects_bad_spec(self, text, reason):
        with pytest.raises(InvalidPortSpec, match=reason) as caught:
            PortSpec.parse(text)

        assert caught.value.spec == text
        assert f"invalid port spec {text!r}" in str(caught.value)
        assert caught.value.exit_code == 2

    def test_bad_spec_is_invalid_input(self):
        with pytest.raises(InvalidInput):
            PortSpec.parse("8080:abc")

    def test_unparsable_host_port_never_means_any_port(self):
        # A host port that does not parse must not fall back to a dynamic one.
        for text in ("x:80", "80a:80", " :80", "8080 :80"):
            with pytest.raises(InvalidPortSpec):
                PortSpec.parse(text)


class TestCanonicalForm:
    @pytest.mark.parametrize(
        ("text", "canonical"),
        [
            ("80", "80/tcp"),
            ("0.0.0.0:8080:80", "8080:80/tcp"),
            ("0.0.0.0::80/udp", "80/udp"),
            ("127.0.0.1::53/UDP", "127.0.0.1::53/udp"),
            ("9000-9005:9000-9005/sctp", "9000-9005:9000-9005/sctp"),
        ],
    )
    def test_str_prints_canonical_form(self, text, canonical):
        assert str(PortSpec.parse(text)) == canonical

    @given(
        host_ip=st.one_of(st.just(WILDCARD), st.ip_addresses(v=4).filter(lambda a: not a.is_multicast and a != IPv4Address("255.255.255.255"))),
        first=st.integers(1, 65535),
        length=st.integers(1, 50),
        host_offset=st.one_of(st.none(), st.integers(-65535, 65535)),
        protocol=st.sampled_from(Protocol),
    )
    def test_str_parses_back_to_equal_value(self, host_ip, first, length, host_offset, protocol):
        container = PortRange(first, min(first + length - 1, 65535))
        host_ports = None
        if host_offset is not None:
            host_first = max(1, min(65535 - len(container) + 1, first + host_offset))
            host_ports = PortRange(host_first, host_first + len(container) - 1)
        spec = PortSpec(container, protocol, IPv4Address(host_ip), host_ports)

        again = PortSpec.parse(str(spec))

        assert again == spec
        assert hash(again) == hash(spec)


class TestPortRange:
    def test_range_counts_both_ends(self):
        assert len(PortRange(49153, 65535)) == 16383
        assert list(PortRange(65534, 65535)) == [65534, 65535]

    def test_range_membership(self):
        assert 65535 in PortRange(49153, 65535)
        assert 49152 not in PortRange(49153, 65535)
        assert "80" not in PortRange(1, 100)

    def test_range_rejects_reversed_construction(self):
        with pytest.raises(InvalidPortSpec, match="reversed"):
            PortRange(10, 9)

    def test_range_rejects_out_of_range_construction(self):
        with pytest.raises(InvalidPortSpec, match="out of range"):
            PortRange(0, 9)

    def test_spec_rejects_mismatched_construction(self):
        with pytest.raises(InvalidPortSpec, match="host ports 1-3 and container ports 80-81 differ"):
            PortSpec(PortRange(80, 81), host_ports=PortRange(1, 3))

    def test_values_are_immutable(self):
        spec = PortSpec.parse("8080:80")
        with pytest.raises(AttributeError):
            spec.protocol = Protocol.UDP
