"""The host port allocator and the map, unmap and setting decisions (pure)."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstate.domain import decide, ports
from netstate.domain.events import AddressAllocated, NetworkCreated, PortMapped, PortUnmapped, Protocol, SettingChanged
from netstate.domain.portspec import WILDCARD, PortRange, PortSpec
from netstate.domain.state import BindingKey, State, fold
from netstate.errors import (
    AmbiguousNetwork,
    InvalidInput,
    NotFound,
    PortExhausted,
    PortInUse,
    UnknownEndpoint,
)

TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP
HOST = IPv4Address("192.0.2.10")


def make_state(*endpoints: str, networks: tuple[str, ...] = ("web",)) -> State:
    events = []
    for index, name in enumerate(networks):
        subnet = IPv4Network(f"10.{40 + index}.0.0/24")
        events.append(NetworkCreated(network=name, subnet=subnet, gateway=subnet.network_address + 1, bridge=f"br-{name}"))
    for index, endpoint in enumerate(endpoints):
        for net_index, name in enumerate(networks):
            address = IPv4Address(f"10.{40 + net_index}.0.{index + 2}")
            events.append(AddressAllocated(network=name, endpoint=endpoint, address=address))
    return fold(events)


def apply_map(state: State, endpoint: str, *specs: str, network: str | None = None) -> ports.MapOutcome:
    """Decide a map and fold its events into `state`."""
    request = ports.MapPorts(endpoint, tuple(PortSpec.parse(s) for s in specs), network)
    outcome = ports.map_ports(state, request)
    fold(outcome.events, state)
    return outcome


def apply_unmap(state: State, endpoint: str, *specs: str) -> list:
    events = ports.unmap_ports(state, endpoint, [PortSpec.parse(s) for s in specs])
    fold(events, state)
    return events


def keys(state: State) -> set[tuple[str, str, int]]:
    return {(k.protocol.value, str(k.host_ip), k.host_port) for k in state.bindings}


def with_range(state: State, text: str) -> State:
    fold(ports.change_setting(state, ports.SETTING_PORT_RANGE, text), state)
    return state


class TestExplicitPorts:
    def test_map_records_binding_to_endpoint_address(self):
        state = make_state("c1")

        outcome = apply_map(state, "c1", "8080:80")

        (event,) = outcome.events
        assert isinstance(event, PortMapped)
        assert (event.host_ip, event.host_port, event.container_port) == (WILDCARD, 8080, 80)
        assert event.container_ip == IPv4Address("10.40.0.2")
        assert event.dynamic is False

    @pytest.mark.parametrize(
        ("held", "wanted", "conflicts"),
        [
            ("8080:80", "8080:81", True),
            ("8080:80", "192.0.2.10:8080:80", True),
            ("192.0.2.10:8080:80", "8080:80", True),
            ("192.0.2.10:8080:80", "192.0.2.11:8080:80", False),
            ("192.0.2.10:8080:80", "192.0.2.10:8081:80", False),
            ("8080:80", "8080:80/udp", False),
            ("8080:80/udp", "8080:80/sctp", False),
            ("53:53/tcp", "53:53/udp", False),
            ("9000-9005:9000-9005", "9005:80", True),
        ],
    )
    def test_conflict_follows_wildcard_and_protocol_rules(self, held, wanted, conflicts):
        state = make_state("c1", "c2")
        apply_map(state, "c1", held)

        if conflicts:
            with pytest.raises(PortInUse, match="endpoint 'c1'") as caught:
                apply_map(state, "c2", wanted)
            assert caught.value.holder == "c1"
        else:
            apply_map(state, "c2", wanted)

    def test_wildcard_conflict_explains_the_cover(self):
        state = make_state("c1", "c2")
        apply_map(state, "c1", "8080:80")

        with pytest.raises(PortInUse, match=r"conflicts with 0\.0\.0\.0:8080/tcp held by endpoint 'c1'.*covers every host address"):
            apply_map(state, "c2", "192.0.2.10:8080:80")

    def test_range_is_all_or_nothing(self):
        state = make_state("c1", "c2")
        apply_map(state, "c1", "9003:80")

        with pytest.raises(PortInUse, match="9003/tcp is held by endpoint 'c1'"):
            apply_map(state, "c2", "9000-9005:9000-9005")

        assert keys(state) == {("tcp", "0.0.0.0", 9003)}

    def test_one_command_is_all_or_nothing_across_specs(self):
        state = make_state("c1", "c2")
        apply_map(state, "c1", "53:53/udp")
        before = copy.deepcopy(state)

        with pytest.raises(PortInUse):
            apply_map(state, "c2", "8080:80", "80", "53:53/udp")

        assert state.bindings == before.bindings
        assert state.port_cursors == before.port_cursors

    def test_same_port_twice_in_one_command_is_rejected(self):
        state = make_state("c1")

        with pytest.raises(PortInUse, match="requested twice in this command"):
            apply_map(state, "c1", "8080:80", "8080:81")

    def test_mapping_again_as_held_records_nothing(self):
        state = make_state("c1")
        first = apply_map(state, "c1", "8080:80")

        again = apply_map(state, "c1", "8080:80")

        assert again.events == []
        assert again.bindings == first.bindings

    def test_pick_from_host_range_takes_first_free_port(self):
        state = make_state("c1", "c2")
        apply_map(state, "c1", "8000:80", "8001:80")

        outcome = apply_map(state, "c2", "8000-8010:80")

        assert [b.key.host_port for b in outcome.bindings] == [8002]

    def test_pick_from_full_host_range_fails(self):
        state = make_state("c1", "c2")
        apply_map(state, "c1", "8000-8001:8000-8001")

        with pytest.raises(PortExhausted, match="no free host port in 8000-8001/tcp"):
            apply_map(state, "c2", "8000-8001:80")


class TestDynamicPorts:
    def test_first_dynamic_port_is_range_start(self):
        state = make_state("c1")

        outcome = apply_map(state, "c1", "80")

        assert outcome.bindings[0].key.host_port == 49153
        assert outcome.events[0].dynamic is True

    def test_cursor_continues_after_last_port_and_skips_released(self):
        state = make_state("c1")
        apply_map(state, "c1", "80", "81")
        apply_unmap(state, "c1", "80")

        outcome = apply_map(state, "c1", "82")

        assert outcome.bindings[0].key.host_port == 49155

    def test_cursor_wraps_to_range_start(self):
        state = with_range(make_state("c1"), "60000-60002")
        apply_map(state, "c1", "1-3")
        apply_unmap(state, "c1", "1")

        outcome = apply_map(state, "c1", "4")

        assert outcome.bindings[0].key.host_port == 60000

    def test_dynamic_range_offers_65535(self):
        state = with_range(make_state("c1"), "65534-65535")

        outcome = apply_map(state, "c1", "1-2")

        assert [b.key.host_port for b in outcome.bindings] == [65534, 65535]

    def test_exhaustion_fails_at_once_naming_range_and_protocol(self):
        state = with_range(make_state("c1"), "65534-65535")
        apply_map(state, "c1", "1-2")

        with pytest.raises(PortExhausted, match="dynamic range 65534-65535 for tcp on 0.0.0.0: all 2 ports are held"):
            apply_map(state, "c1", "3")

    def test_exhaustion_of_one_protocol_leaves_others_free(self):
        state = with_range(make_state("c1"), "65535-65535")
        apply_map(state, "c1", "1")

        outcome = apply_map(state, "c1", "1/udp", "1/sctp")

        assert {b.key.protocol for b in outcome.bindings} == {UDP, SCTP}

    def test_cursors_are_per_protocol(self):
        state = make_state("c1")
        apply_map(state, "c1", "80", "81")

        outcome = apply_map(state, "c1", "53/udp")

        assert outcome.bindings[0].key.host_port == 49153
        assert state.port_cursors == {TCP: 49154, UDP: 49153}

    def test_dynamic_skips_specific_addresses_under_wildcard(self):
        state = with_range(make_state("c1"), "60000-60001")
        apply_map(state, "c1", "192.0.2.10:60000:80")

        outcome = apply_map(state, "c1", "81")

        assert outcome.bindings[0].key.host_port == 60001

    def test_dynamic_for_specific_address_reuses_port_of_other_address(self):
        state = with_range(make_state("c1"), "60000-60000")
        apply_map(state, "c1", "192.0.2.10::80")

        outcome = apply_map(state, "c1", "192.0.2.11::80")

        assert outcome.bindings[0].key == BindingKey(TCP, IPv4Address("192.0.2.11"), 60000)


class TestUdpReleaseDoesNotFreeTcp:
    def test_unmapping_udp_port_keeps_tcp_port_held(self):
        state = make_state("c1", "c2", "c3")
        apply_map(state, "c1", "5000:80")
        apply_map(state, "c2", "5000:53/udp")

        apply_unmap(state, "c2", "5000:53/udp")

        with pytest.raises(PortInUse, match="endpoint 'c1'"):
            apply_map(state, "c3", "5000:80")
        assert apply_map(state, "c3", "5000:53/udp").events

    def test_release_unmaps_udp_as_udp(self):
        state = make_state("c1", "c2")
        apply_map(state, "c1", "5000:80", "5000:53/udp")

        events = decide.release(state, "c1")

        unmapped = [(e.protocol, e.host_port) for e in events if isinstance(e, PortUnmapped)]
        assert sorted(unmapped) == [(TCP, 5000), (UDP, 5000)]


class TestResolveLease:
    def test_unknown_endpoint_is_rejected(self):
        with pytest.raises(UnknownEndpoint, match="'ghost' holds no address"):
            apply_map(make_state("c1"), "ghost", "80")

    def test_several_networks_need_network_choice(self):
        state = make_state("c1", networks=("web", "db"))

        with pytest.raises(AmbiguousNetwork, match="networks db, web; pass --network"):
            apply_map(state, "c1", "80")
        outcome = apply_map(state, "c1", "80", network="db")
        assert outcome.bindings[0].network == "db"

    def test_no_spec_is_rejected(self):
        with pytest.raises(InvalidInput, match="at least one port spec"):
            ports.map_ports(make_state("c1"), ports.MapPorts("c1", ()))


class TestUnmap:
    def test_unmap_without_host_parts_matches_every_binding_of_container_port(self):
        state = make_state("c1")
        apply_map(state, "c1", "80", "8080:80", "127.0.0.1::80", "81")

        events = apply_unmap(state, "c1", "80")

        assert len(events) == 3
        assert keys(state) == {("tcp", "0.0.0.0", 49155)}

    def test_unmap_of_unmapped_spec_fails_and_changes_nothing(self):
        state = make_state("c1")
        apply_map(state, "c1", "8080:80")

        with pytest.raises(NotFound, match="no published port matching 9090:80/tcp"):
            ports.unmap_ports(state, "c1", [PortSpec.parse("8080:80"), PortSpec.parse("9090:80")])

    def test_unmap_of_partly_mapped_range_fails(self):
        state = make_state("c1")
        apply_map(state, "c1", "9000-9001:9000-9001")

        with pytest.raises(NotFound, match="no published host port 9002/tcp"):
            ports.unmap_ports(state, "c1", [PortSpec.parse("9000-9002:9000-9002")])

    def test_unmap_never_touches_other_endpoints(self):
        state = make_state("c1", "c2")
        apply_map(state, "c1", "8080:80")
        apply_map(state, "c2", "9090:80")

        apply_unmap(state, "c1", "80")

        assert keys(state) == {("tcp", "0.0.0.0", 9090)}


class TestSettings:
    def test_defaults_apply_until_changed(self):
        state = make_state()

        assert ports.dynamic_range(state) == PortRange(49153, 65535)
        assert ports.userland_proxy_enabled(state) is True

    @pytest.mark.parametrize(("value", "stored"), [("off", "false"), ("FALSE", "false"), ("0", "false"), ("yes", "true")])
    def test_proxy_setting_normalises_booleans(self, value, stored):
        state = make_state()
        if stored == "true":
            fold([SettingChanged(network="", key="userland-proxy", value="false")], state)

        (event,) = ports.change_setting(state, "userland-proxy", value)

        assert event.value == stored

    def test_unchanged_setting_records_nothing(self):
        assert ports.change_setting(make_state(), "port-range", "49153-65535") == []

    @pytest.mark.parametrize(
        ("key", "value", "reason"),
        [
            ("port-range", "65535-1", "use FIRST-LAST"),
            ("port-range", "abc", "use FIRST-LAST"),
            ("port-range", "0-10", "use FIRST-LAST"),
            ("userland-proxy", "maybe", "use true or false"),
            ("proxy", "true", "unknown setting 'proxy'"),
        ],
    )
    def test_bad_setting_is_rejected(self, key, value, reason):
        with pytest.raises(InvalidInput, match=reason):
            ports.change_setting(make_state(), key, value)


# Hypothesis: random map and unmap sequences on a tiny dynamic range.

ENDPOINTS = ("c1", "c2", "c3")
HOST_IPS = ("0.0.0.0", "192.0.2.10", "192.0.2.11")
spec_texts = st.one_of(
    st.builds(lambda ip, port, proto: f"{ip}:{port}:80/{proto}", st.sampled_from(HOST_IPS), st.integers(65530, 65535), st.sampled_from(["tcp", "udp"])),
    st.builds(lambda ip, proto: f"{ip}::80/{proto}", st.sampled_from(HOST_IPS), st.sampled_from(["tcp", "udp"])),
    st.builds(lambda n, proto: f"1-{n}/{proto}", st.integers(1, 3), st.sampled_from(["tcp", "udp"])),
)
operations = st.lists(
    st.tuples(st.sampled_from(["map", "unmap"]), st.sampled_from(ENDPOINTS), st.lists(spec_texts, min_size=1, max_size=3)),
    max_size=25,
)


def conflicting_pairs(state: State) -> list:
    found = []
    held = sorted(state.bindings)
    for i, a in enumerate(held):
        for b in held[i + 1:]:
            same = a.protocol == b.protocol and a.host_port == b.host_port
            if same and (a.host_ip == b.host_ip or WILDCARD in (a.host_ip, b.host_ip)):
                found.append((a, b))
    return found


@settings(max_examples=200, deadline=None)
@given(operations)
def test_allocator_never_hands_a_port_to_two_holders(ops):
    state = with_range(make_state(*ENDPOINTS), "65533-65535")
    for op, endpoint, texts in ops:
        before = copy.deepcopy(state)
        try:
            if op == "map":
                outcome = apply_map(state, endpoint, *texts)
                assert all(65533 <= e.host_port <= 65535 for e in outcome.events if e.dynamic)
            else:
                apply_unmap(state, endpoint, *texts)
        except PortExhausted as err:
            assert "65533-65535" in str(err) or "no free host port in" in str(err)
            assert state.bindings == before.bindings
        except (PortInUse, NotFound):
            assert state.bindings == before.bindings
        assert conflicting_pairs(state) == []


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(65530, 65535)), st.sampled_from(["tcp", "udp"]))
def test_dynamic_request_fails_only_when_range_is_full(taken, proto):
    state = with_range(make_state("c1", "c2"), "65530-65535")
    for port in sorted(taken):
        apply_map(state, "c1", f"{port}:80/{proto}")

    if len(taken) == 6:
        with pytest.raises(PortExhausted):
            apply_map(state, "c2", f"80/{proto}")
    else:
        outcome = apply_map(state, "c2", f"80/{proto}")
        assert outcome.bindings[0].key.host_port not in taken
