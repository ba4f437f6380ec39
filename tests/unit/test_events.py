"""The stored form of events: one golden payload per type, and a round trip for any event."""

import json
import typing
from dataclasses import fields
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netstate.domain.events import (
    EVENT_TYPES,
    AddressAllocated,
    AddressReleased,
    Event,
    IccChanged,
    NetworkCreated,
    NetworkRemoved,
    PortMapped,
    PortUnmapped,
    Protocol,
    RejectedSubnet,
    SettingChanged,
    from_record,
    to_payload,
)

A = IPv4Address
N = IPv4Network

# One sample per event type and the exact JSON it is stored as. Changing one of these strings
# means changing the stored format: add a schema version and an upcaster instead.
GOLDEN: dict[str, tuple[Event, str]] = {
    "NetworkCreated": (
        NetworkCreated(
            network="default", subnet=N("172.17.0.0/16"), gateway=A("172.17.42.1"), bridge="netstate0",
            auto_subnet=True, rejected=(RejectedSubnet(N("10.0.0.0/16"), "contains nameserver 10.0.0.53"),),
        ),
        '{"subnet":"172.17.0.0/16","gateway":"172.17.42.1","bridge":"netstate0","icc":true,'
        '"auto_subnet":true,"rejected":[{"subnet":"10.0.0.0/16","reason":"contains nameserver 10.0.0.53"}]}',
    ),
    "NetworkRemoved": (NetworkRemoved(network="web"), '{"reason":"removed"}'),
    "IccChanged": (IccChanged(network="web", icc=False), '{"icc":false}'),
    "AddressAllocated": (
        AddressAllocated(
            network="web", endpoint="c1", address=A("192.0.2.2"), netns="/run/netns/c1",
            ifname="eth0", host_ifname="nsv0123456789",
        ),
        '{"address":"192.0.2.2","netns":"/run/netns/c1","ifname":"eth0",'
        '"host_ifname":"nsv0123456789","requested":false}',
    ),
    "AddressReleased": (
        AddressReleased(network="web", endpoint="c1", address=A("192.0.2.2")),
        '{"address":"192.0.2.2","reason":"released"}',
    ),
    "PortMapped": (
        PortMapped(
            network="web", endpoint="c1", protocol=Protocol.UDP, host_ip=A("0.0.0.0"), host_port=49153,
            container_ip=A("192.0.2.2"), container_port=53, dynamic=True,
        ),
        '{"protocol":"udp","host_ip":"0.0.0.0","host_port":49153,"container_ip":"192.0.2.2",'
        '"container_port":53,"dynamic":true}',
    ),
    "PortUnmapped": (
        PortUnmapped(
            network="web", endpoint="c1", protocol=Protocol.TCP, host_ip=A("198.51.100.1"), host_port=8080,
            container_ip=A("192.0.2.2"), container_port=80,
        ),
        '{"protocol":"tcp","host_ip":"198.51.100.1","host_port":8080,"container_ip":"192.0.2.2",'
        '"container_port":80,"reason":"unmapped"}',
    ),
    "SettingChanged": (
        SettingChanged(network="", key="ports.dynamic_range", value="49153-65535"),
        '{"key":"ports.dynamic_range","value":"49153-65535"}',
    ),
}


def test_every_event_type_has_a_golden_payload():
    assert set(GOLDEN) == set(EVENT_TYPES)


@pytest.mark.parametrize("type_name", sorted(GOLDEN))
def test_golden_payload(type_name):
    event, stored = GOLDEN[type_name]
    assert event.type == type_name
    assert json.dumps(to_payload(event), separators=(",", ":")) == stored
    decoded = from_record(type_name, event.schema_version, event.network, event.endpoint, json.loads(stored))
    assert decoded == event


def test_unknown_type_rejected():
    with pytest.raises(ValueError, match="unknown event type 'Nope'"):
        from_record("Nope", 1, "web", None, {})


def test_newer_schema_version_rejected():
    with pytest.raises(ValueError, match="schema version 2, this netstate reads up to 1; upgrade netstate"):
        from_record("IccChanged", 2, "web", None, {"icc": True})


def test_missing_field_with_default_decodes():
    # An older writer that did not store `reason` yet: the default applies.
    assert from_record("NetworkRemoved", 1, "web", None, {}) == NetworkRemoved(network="web")


# Round trip of arbitrary events, built from the type hints so a new event type is covered too.

_names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_addresses = st.ip_addresses(v=4)
_networks = st.builds(
    lambda address, prefix: IPv4Network(f"{address}/{prefix}", strict=False),
    _addresses, st.integers(min_value=0, max_value=32),
)
_BY_HINT = {
    str: _names,
    int: st.integers(min_value=0, max_value=2**31),
    bool: st.booleans(),
    IPv4Address: _addresses,
    IPv4Network: _networks,
    Protocol: st.sampled_from(Protocol),
    RejectedSubnet: st.builds(RejectedSubnet, _networks, _names),
}


def _strategy(hint):
    if hint in _BY_HINT:
        return _BY_HINT[hint]
    origin = typing.get_origin(hint)
    if origin is tuple:
        return st.lists(_strategy(typing.get_args(hint)[0]), max_size=4).map(tuple)
    if origin is not None:
        options = [_strategy(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        return st.one_of(st.none(), *options)
    raise AssertionError(f"no strategy for field type {hint!r}")


def _event_strategy(cls):
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: _strategy(hints[f.name]) for f in fields(cls)})


@given(st.one_of(*(_event_strategy(cls) for cls in EVENT_TYPES.values())))
def test_round_trip(event):
    stored = json.dumps(to_payload(event))
    decoded = from_record(event.type, event.schema_version, event.network, event.endpoint, json.loads(stored))
    assert decoded == event
