"""Lookup targets of `who` and `history`: a container address or a published host port."""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address

from netstate.domain.events import Protocol
from netstate.domain.subnets import parse_address
from netstate.errors import InvalidPortSpec

_PORT = re.compile(r"(?:(?P<host_ip>[0-9.]+):)?(?P<port>\d+)(?:/(?P<protocol>[A-Za-z]+))?")
_PORT_FORMS = "PORT, PORT/PROTO or HOST_IP:PORT/PROTO, such as 8080/tcp or 192.0.2.10:53/udp"
WILDCARD = IPv4Address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class AddressTarget:
    """A container address, looked up on every network unless one is named."""

    address: IPv4Address

    def __str__(self) -> str:
        return str(self.address)


@dataclass(frozen=True, slots=True)
class PortTarget:
    """A host port; None in `protocol` or `host_ip` matches any.

    A binding on 0.0.0.0 covers every host address, so a target with a host address also
    matches bindings on 0.0.0.0.
    """

    port: int
    protocol: Protocol | None = None
    host_ip: IPv4Address | None = None

    def __str__(self) -> str:
        text = str(self.port)
        if self.host_ip is not None:
            text = f"{self.host_ip}:{text}"
        if self.protocol is not None:
            text = f"{text}/{self.protocol.value}"
        return text


def parse_target(text: str) -> AddressTarget | PortTarget:
    """Parse `who`'s argument: an IPv4 address, or a port as PORT[/PROTO] or HOST_IP:PORT/PROTO.

    Raises:
        InvalidAddress: the text looks like an address but is not a valid IPv4 address.
        InvalidPortSpec: the text looks like a port but the number or protocol is invalid.
    """
    stripped = text.strip()
    if ":" in stripped or "/" in stripped or stripped.isdigit():
        return parse_port(stripped)
    return AddressTarget(parse_address(stripped))


def parse_port(text: str) -> PortTarget:
    """Parse PORT, PORT/PROTO or HOST_IP:PORT/PROTO; raise InvalidPortSpec naming the forms."""
    match = _PORT.fullmatch(text.strip())
    if match is None:
        raise InvalidPortSpec(f"invalid port {text!r}; expected {_PORT_FORMS}", spec=text)

    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise InvalidPortSpec(f"invalid port {text!r}: {port} is outside 1-65535", spec=text)

    protocol = None
    if match["protocol"] is not None:
        try:
            protocol = Protocol(match["protocol"].lower())
        except ValueError:
            known = ", ".join(p.value for p in Protocol)
            msg = f"invalid port {text!r}: unknown protocol {match['protocol']!r}; use {known}"
            raise InvalidPortSpec(msg, spec=text) from None

    host_ip = None
    if match["host_ip"] is not None:
        host_ip = parse_address(match["host_ip"])
    return PortTarget(port=port, protocol=protocol, host_ip=host_ip)
