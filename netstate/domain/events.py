"""Domain events: frozen, past-tense records of what happened.

The stored form is a contract. Each event class has a stable `type` string and a
`schema_version`; renaming a class changes nothing on disk, but changing `type` or the meaning
of a field needs an upcaster and a new version. The event's `network` and `endpoint` are also
stored in columns of their own so that SQL can filter on them; every other field goes into the
JSON payload.
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass, fields
from functools import cache
from ipaddress import IPv4Address, IPv4Network
from typing import Any, ClassVar


class Protocol(enum.StrEnum):
    """Transport protocol of a published port."""

    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"


@dataclass(frozen=True, slots=True)
class RejectedSubnet:
    """A candidate subnet skipped by automatic selection, with the reason."""

    subnet: IPv4Network
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every domain event."""

    type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    network: str
    endpoint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkCreated(Event):
    """A network was recorded with its subnet, gateway and bridge."""

    type: ClassVar[str] = "NetworkCreated"

    subnet: IPv4Network
    gateway: IPv4Address
    bridge: str
    icc: bool = True
    # True when netstate chose the subnet from its candidate list.
    auto_subnet: bool = False
    rejected: tuple[RejectedSubnet, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkRemoved(Event):
    """A network was removed from the record, with `reason` set when a user did not request it."""

    type: ClassVar[str] = "NetworkRemoved"

    reason: str = "removed"


@dataclass(frozen=True, slots=True, kw_only=True)
class IccChanged(Event):
    """Inter-container traffic on a network's bridge was switched on or off."""

    type: ClassVar[str] = "IccChanged"

    icc: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressAllocated(Event):
    """An endpoint was given an address on a network, and a veth if it named a namespace."""

    type: ClassVar[str] = "AddressAllocated"

    endpoint: str
    address: IPv4Address
    # Path of the container's network namespace; None when no link is plumbed.
    netns: str | None = None
    ifname: str | None = None
    host_ifname: str | None = None
    # True when the caller asked for this address with --ip.
    requested: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressReleased(Event):
    """An endpoint's address went back to the pool, for the given `reason`."""

    type: ClassVar[str] = "AddressReleased"

    endpoint: str
    address: IPv4Address
    reason: str = "released"


@dataclass(frozen=True, slots=True, kw_only=True)
class PortMapped(Event):
    """A host port was published to an endpoint's address and container port."""

    type: ClassVar[str] = "PortMapped"

    endpoint: str
    protocol: Protocol
    # 0.0.0.0 is the wildcard: every address of the host.
    host_ip: IPv4Address
    host_port: int
    container_ip: IPv4Address
    container_port: int
    # True when netstate chose the host port from the dynamic range.
    dynamic: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PortUnmapped(Event):
    """A published host port was withdrawn, for the given `reason`."""

    type: ClassVar[str] = "PortUnmapped"

    endpoint: str
    protocol: Protocol
    host_ip: IPv4Address
    host_port: int
    container_ip: IPv4Address
    container_port: int
    reason: str = "unmapped"


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingChanged(Event):
    """A host-wide setting was changed; `network` is empty because it concerns the host."""

    type: ClassVar[str] = "SettingChanged"

    key: str
    value: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        NetworkCreated,
        NetworkRemoved,
        IccChanged,
        AddressAllocated,
        AddressReleased,
        PortMapped,
        PortUnmapped,
        SettingChanged,
    )
}

_ENVELOPE_FIELDS = ("network", "endpoint")


def to_payload(event: Event) -> dict[str, Any]:
    """Encode the fields of `event` other than network and endpoint as JSON-ready values."""
    return {
        f.name: _encode(getattr(event, f.name))
        for f in fields(event)
        if f.name not in _ENVELOPE_FIELDS
    }


def from_record(
    type_name: str, schema_version: int, network: str, endpoint: str | None, payload: dict
) -> Event:
    """Decode a stored event; raise ValueError for an unknown type or a newer schema version."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise ValueError(f"unknown event type {type_name!r}")
    if schema_version > cls.schema_version:
        msg = (
            f"event type {type_name!r} has schema version {schema_version}, this netstate "
            f"reads up to {cls.schema_version}; upgrade netstate"
        )
        raise ValueError(msg)
    hints = _field_types(cls)
    values = {name: _decode(hints[name], payload[name]) for name in payload if name in hints}
    return cls(network=network, endpoint=endpoint, **values)


@cache
def _field_types(cls: type[Event]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _encode(value: Any) -> Any:
    if isinstance(value, (IPv4Address, IPv4Network)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, RejectedSubnet):
        return {"subnet": str(value.subnet), "reason": value.reason}
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item_hint, _ellipsis) = typing.get_args(hint)
        return tuple(_decode(item_hint, item) for item in value)
    if origin is not None:
        # `X | None`: decode as X, since None was handled above.
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _decode(inner, value)
    if hint is RejectedSubnet:
        return RejectedSubnet(IPv4Network(value["subnet"]), value["reason"])
    if hint in (IPv4Address, IPv4Network, Protocol):
        return hint(value)
    return value
