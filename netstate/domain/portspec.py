"""Port publishing specs as immutable value types, parsed from Docker's `-p` syntax.

    [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]

An empty or absent host port requests a dynamic one. A host range of the same length as the
container range maps port to port; a host range with a single container port asks for any one
free port of that range, as Docker does. Every other combination is rejected, and so is every
text that does not parse: netstate never reads a malformed port as "any port".

Values print in a canonical form that parses back to an equal value, in the manner of
`ipaddress`: `str(PortSpec.parse("0.0.0.0:8080:80"))` is `"8080:80/tcp"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address

from netstate.domain.events import Protocol
from netstate.errors import InvalidPortSpec

MIN_PORT = 1
MAX_PORT = 65535
WILDCARD = IPv4Address("0.0.0.0")

_DIGITS = re.compile(r"[0-9]{1,5}")
_RANGE = re.compile(r"[0-9]+(-[0-9]+)?")


def _spec_error(spec: str, reason: str) -> InvalidPortSpec:
    return InvalidPortSpec(f"invalid port spec {spec!r}: {reason}", spec=spec)


def parse_port(text: str, *, part: str = "port", spec: str | None = None) -> int:
    """Parse one port number from 1 to 65535.

    Raises:
        InvalidPortSpec: the text is not a decimal number in range; the message names `part`.
    """
    spec_text = spec if spec is not None else text
    if not _DIGITS.fullmatch(text):
        raise _spec_error(spec_text, f"{part} {text!r} is not a port number (1-{MAX_PORT})")
    port = int(text)
    if not MIN_PORT <= port <= MAX_PORT:
        hint = "; leave it empty for a dynamic port" if part == "host port" and port == 0 else ""
        raise _spec_error(spec_text, f"{part} {text!r} is out of range {MIN_PORT}-{MAX_PORT}{hint}")
    return port


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    """An inclusive range of ports, `first` to `last`; a single port has first == last."""

    first: int
    last: int

    def __post_init__(self) -> None:
        for port in (self.first, self.last):
            if not isinstance(port, int) or not MIN_PORT <= port <= MAX_PORT:
                raise _spec_error(str(port), f"port {port!r} is out of range {MIN_PORT}-{MAX_PORT}")
        if self.first > self.last:
            raise _spec_error(f"{self.first}-{self.last}", "the range is reversed")

    @classmethod
    def parse(cls, text: str, *, part: str = "port", spec: str | None = None) -> PortRange:
        """Parse "PORT" or "FIRST-LAST".

        Raises:
            InvalidPortSpec: a part is not a port, or FIRST is above LAST.
        """
        spec_text = spec if spec is not None else text
        if not _RANGE.fullmatch(text):
            raise _spec_error(spec_text, f"{part} {text!r} is not a port number or a range FIRST-LAST")
        first_text, dash, last_text = text.partition("-")
        first = parse_port(first_text, part=part, spec=spec_text)
        if not dash:
            return cls(first, first)
        last = parse_port(last_text, part=part, spec=spec_text)
        if first > last:
            raise _spec_error(spec_text, f"{part} range {text!r} is reversed; write {last}-{first}")
        return cls(first, last)

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __iter__(self):
        return iter(range(self.first, self.last + 1))

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One publishing request: host address, host ports (None: dynamic), container ports."""

    container_ports: PortRange
    protocol: Protocol = Protocol.TCP
    host_ip: IPv4Address = WILDCARD
    host_ports: PortRange | None = None

    def __post_init__(self) -> None:
        _check_sizes(self.host_ports, self.container_ports, str(self))

    @classmethod
    def parse(cls, text: str) -> PortSpec:
        """Parse Docker's `-p` syntax.

        Raises:
            InvalidPortSpec: the text does not parse; the message names the offending part.
        """
        if not text or text != text.strip():
            raise _spec_error(text, "a spec must be non-empty and without spaces")
        body, slash, protocol_text = text.partition("/")
        protocol = Protocol.TCP
        if slash:
            try:
                protocol = Protocol(protocol_text.lower())
            except ValueError:
                known = ", ".join(p.value for p in Protocol)
                raise _spec_error(text, f"unknown protocol {protocol_text!r}; use one of {known}") from None

        parts = body.split(":")
        if len(parts) > 3:
            raise _spec_error(text, "too many ':'; IPv6 host addresses are not supported")
        container = PortRange.parse(parts[-1], part="container port", spec=text)
        host_ports = None
        if len(parts) >= 2 and parts[-2] != "":
            host_ports = PortRange.parse(parts[-2], part="host port", spec=text)
        host_ip = WILDCARD
        if len(parts) == 3:
            host_ip = _parse_host_ip(parts[0], text)
        _check_sizes(host_ports, container, text)
        return cls(container_ports=container, protocol=protocol, host_ip=host_ip, host_ports=host_ports)

    @property
    def picks_from_range(self) -> bool:
        """True when any one free port of a host range is wanted for a single container port."""
        return self.host_ports is not None and len(self.host_ports) > 1 and len(self.container_ports) == 1

    def __str__(self) -> str:
        host_ports = "" if self.host_ports is None else str(self.host_ports)
        if self.host_ip != WILDCARD:
            prefix = f"{self.host_ip}:{host_ports}:"
        elif host_ports:
            prefix = f"{host_ports}:"
        else:
            prefix = ""
        return f"{prefix}{self.container_ports}/{self.protocol.value}"


def _check_sizes(host: PortRange | None, container: PortRange, spec: str) -> None:
    if host is None or len(host) == len(container) or len(container) == 1:
        return
    raise _spec_error(
        spec,
        f"host ports {host} and container ports {container} differ in count "
        f"({len(host)} and {len(container)}); give ranges of the same size, or one container port",
    )


def _parse_host_ip(text: str, spec: str) -> IPv4Address:
    if text == "":
        raise _spec_error(spec, "the host address before ':' is empty; omit it for every address")
    if text.startswith("["):
        raise _spec_error(spec, "IPv6 host addresses are not supported")
    try:
        address = IPv4Address(text)
    except AddressValueError:
        raise _spec_error(spec, f"host address {text!r} is not an IPv4 address") from None
    if address.is_multicast or address == IPv4Address("255.255.255.255"):
        raise _spec_error(spec, f"host address {text} is not a unicast address")
    return address
