"""Decisions on networks and addresses, against states built by folding events."""

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from netstate.domain import decide
from netstate.domain.decide import Allocate, CreateNetwork, ObservedLink
from netstate.domain.events import (
    AddressAllocated,
    AddressReleased,
    NetworkCreated,
    NetworkRemoved,
    PortMapped,
    PortUnmapped,
    Protocol,
)
from netstate.domain.state import fold
from netstate.domain.subnets import HostFacts
from netstate.errors import (
    AddressInUse,
    AddressNotInSubnet,
    AddressReserved,
    BridgeConflict,
    Conflict,
    InvalidName,
    InvalidSubnet,
    NetworkExists,
    NetworkInUse,
    SubnetOverlap,
    UnknownEndpoint,
    UnknownNetwork,
)

A = IPv4Address
N = IPv4Network

WEB = NetworkCreated(network="web", subnet=N("192.0.2.0/24"), gateway=A("192.0.2.1"), bridge="nsweb0")


def state_with(*events):
    return fold([WEB, *events])


def allocated(endpoint, address, **extra):
    return AddressAllocated(network="web", endpoint=endpoint, address=A(address), **extra)


class TestCreateNetwork:
    def test_explicit_subnet(self):
        request = CreateNetwork("db", "nsdb0", N("198.51.100.0/24"), A("198.51.100.1"))
        (event,) = decide.create_network(fold([]), request, HostFacts(), None)
        assert event == NetworkCreated(
            network="db", subnet=N("198.51.100.0/24"), gateway=A("198.51.100.1"), bridge="nsdb0"
        )

    def test_automatic_subnet_records_rejections(self):
        facts = HostFacts(routes=((N("172.17.0.0/16"), "eth1"),))
        (event,) = decide.create_network(fold([]), CreateNetwork("db", "nsdb0"), facts, None)
        assert event.auto_subnet is True
        assert event.subnet == N("10.0.0.0/16")
        assert [r.reason for r in event.rejected] == ["overlaps route 172.17.0.0/16 dev eth1"]

    def test_name_taken(self):
        with pytest.raises(NetworkExists, match="network 'web' already exists"):
            decide.create_network(state_with(), CreateNetwork("web", "other0", N("198.51.100.0/24")), HostFacts(), None)

    def test_bridge_taken(self):
        request = CreateNetwork("db", "nsweb0", N("198.51.100.0/24"))
        with pytest.raises(NetworkExists, match="bridge 'nsweb0' already belongs to network 'web'"):
            decide.create_network(state_with(), request, HostFacts(), None)

    def test_overlap_with_recorded_network(self):
        request = CreateNetwork("db", "nsdb0", N("192.0.2.128/25"))
        with pytest.raises(SubnetOverlap, match=r"192.0.2.128/25 overlaps network 'web' \(192.0.2.0/24\)"):
            decide.create_network(state_with(), request, HostFacts(), None)

    def test_slash_32_rejected(self):
        request = CreateNetwork("db", "nsdb0", N("198.51.100.7/32"), A("198.51.100.7"))
        with pytest.raises(InvalidSubnet, match="/32"):
            decide.create_network(fold([]), request, HostFacts(), None)

    def test_bad_bridge_name(self):
        with pytest.raises(InvalidName, match="16 bytes"):
            decide.create_network(fold([]), CreateNetwork("db", "b" * 16, N("198.51.100.0/24")), HostFacts(), None)

    def test_adopts_bridge_with_exactly_the_gateway(self):
        link = ObservedLink("nsdb0", "bridge", (IPv4Interface("198.51.100.1/24"),))
        request = CreateNetwork("db", "nsdb0", N("198.51.100.0/24"))
        assert len(decide.create_network(fold([]), request, HostFacts(), link)) == 1

    @pytest.mark.parametrize(
        ("addresses", "found"),
        [
            ((), "no IPv4 address"),
            ((IPv4Interface("198.51.100.9/24"),), "198.51.100.9/24"),
            ((IPv4Interface("198.51.100.1/25"),), "198.51.100.1/25"),
            ((IPv4Interface("198.51.100.1/24"), IPv4Interface("203.0.113.1/24")), "198.51.100.1/24, 203.0.113.1/24"),
        ],
    )
    def test_bridge_with_other_addresses_not_adopted(self, addresses, found):
        # Reference bug 6: a bridge was adopted with whatever address it had.
        link = ObservedLink("nsdb0", "bridge", addresses)
        request = CreateNetwork("db", "nsdb0", N("198.51.100.0/24"))
        with pytest.raises(BridgeConflict) as caught:
            decide.create_network(fold([]), request, HostFacts(), link)
        message = str(caught.value)
        assert "'nsdb0'" in message
        assert found in message
        assert "needs exactly 198.51.100.1/24" in message

    def test_link_of_another_kind_not_adopted(self):
        link = ObservedLink("nsdb0", "dummy", (IPv4Interface("198.51.100.1/24"),))
        with pytest.raises(BridgeConflict, match="'nsdb0' exists and is dummy, not a bridge"):
            decide.create_network(fold([]), CreateNetwork("db", "nsdb0", N("198.51.100.0/24")), HostFacts(), link)


class TestAllocate:
    def test_first_address(self):
        (event,) = decide.allocate(state_with(), Allocate("c1", "web"))
        assert event == allocated("c1", "192.0.2.2")

    def test_again_for_same_endpoint_appends_nothing(self):
        state = state_with(allocated("c1", "192.0.2.2"))
        assert decide.allocate(state, Allocate("c1", "web")) == []
        assert decide.allocate(state, Allocate("c1", "web", A("192.0.2.2"))) == []

    def test_again_with_same_netns_appends_nothing(self):
        first = decide.allocate(state_with(), Allocate("c1", "web", netns="/run/netns/c1"))
        state = state_with(*first)
        assert decide.allocate(state, Allocate("c1", "web", netns="/run/netns/c1")) == []
        assert decide.allocate(state, Allocate("c1", "web", netns="/run/netns/c1", ifname="eth0")) == []

    @pytest.mark.parametrize(
        ("request_", "match"),
        [
            (Allocate("c1", "web", A("192.0.2.3")), "already holds 192.0.2.2 on 'web', not 192.0.2.3"),
            (Allocate("c1", "web", netns="/run/netns/x"), "attached to no namespace"),
        ],
    )
    def test_again_with_other_details_conflicts(self, request_, match):
        state = state_with(allocated("c1", "192.0.2.2"))
        with pytest.raises(Conflict, match=match):
            decide.allocate(state, request_)

    def test_requested_address(self):
        (event,) = decide.allocate(state_with(), Allocate("c2", "web", A("192.0.2.9")))
        assert event == allocated("c2", "192.0.2.9", requested=True)

    def test_requested_address_leaves_cursor(self):
        state = state_with(allocated("c2", "192.0.2.9", requested=True))
        assert state.networks["web"].last_address is None
        (event,) = decide.allocate(state, Allocate("c3", "web"))
        assert event.address == A("192.0.2.2")

    def test_requested_outside(self):
        with pytest.raises(AddressNotInSubnet, match="198.51.100.9 is outside network 'web'"):
            decide.allocate(state_with(), Allocate("c2", "web", A("198.51.100.9")))

    def test_requested_reserved(self):
        with pytest.raises(AddressReserved, match="gateway"):
            decide.allocate(state_with(), Allocate("c2", "web", A("192.0.2.1")))

    def test_requested_held_names_holder(self):
        state = state_with(allocated("c1", "192.0.2.9", requested=True))
        with pytest.raises(AddressInUse, match="held by endpoint 'c1'") as caught:
            decide.allocate(state, Allocate("c2", "web", A("192.0.2.9")))
        assert caught.value.holder == "c1"

    def test_unknown_network(self):
        with pytest.raises(UnknownNetwork, match="network 'nope' not found"):
            decide.allocate(state_with(), Allocate("c1", "nope"))

    def test_bad_endpoint(self):
        with pytest.raises(InvalidName, match="invalid endpoint name ''"):
            decide.allocate(state_with(), Allocate("", "web"))

    def test_netns_gives_veth_names(self):
        (event,) = decide.allocate(state_with(), Allocate("c1", "web", netns="/run/netns/c1"))
        assert event.ifname == "eth0"
        assert event.host_ifname == decide.veth_name("web", "c1")
        assert event.host_ifname.startswith(decide.VETH_PREFIX)
        assert len(event.host_ifname) <= 15

    def test_veth_name_derives_from_network_and_endpoint(self):
        assert decide.veth_name("web", "c1") == decide.veth_name("web", "c1")
        assert decide.veth_name("web", "c1") != decide.veth_name("web", "c2")
        assert decide.veth_name("web", "c1") != decide.veth_name("db", "c1")

    def test_same_ifname_in_same_netns_conflicts(self):
        state = state_with(allocated("c1", "192.0.2.2", netns="/run/netns/x", ifname="eth0", host_ifname="nsvaaaa"))
        with pytest.raises(Conflict, match="interface eth0 in /run/netns/x is already used by endpoint 'c1'"):
            decide.allocate(state, Allocate("c2", "web", netns="/run/netns/x"))


class TestRelease:
    def test_release(self):
        state = state_with(allocated("c1", "192.0.2.2"))
        assert decide.release(state, "c1") == [
            AddressReleased(network="web", endpoint="c1", address=A("192.0.2.2"))
        ]

    def test_release_unmaps_ports_first(self):
        mapped = PortMapped(
            network="web", endpoint="c1", protocol=Protocol.TCP, host_ip=A("0.0.0.0"),
            host_port=8080, container_ip=A("192.0.2.2"), container_port=80,
        )
        events = decide.release(state_with(allocated("c1", "192.0.2.2"), mapped), "c1")
        assert [type(e) for e in events] == [PortUnmapped, AddressReleased]

    def test_release_unknown_endpoint(self):
        with pytest.raises(UnknownEndpoint, match="endpoint 'c9' holds no address"):
            decide.release(state_with(), "c9")


class TestRemoveNetwork:
    def test_remove(self):
        assert decide.remove_network(state_with(), "web") == [NetworkRemoved(network="web")]

    def test_refused_while_held(self):
        state = state_with(allocated("c1", "192.0.2.2"), allocated("c2", "192.0.2.3"))
        with pytest.raises(NetworkInUse, match=r"'web' still has 2 address\(es\) held \(c1, c2\); release them first"):
            decide.remove_network(state, "web")

    def test_unknown(self):
        with pytest.raises(UnknownNetwork):
            decide.remove_network(fold([]), "web")


class TestUndo:
    def test_takes_back_network_and_allocation(self):
        events = [WEB, allocated("c1", "192.0.2.2")]
        undo = decide.undo(fold(events), events, "effect failed: x")
        assert undo == [
            AddressReleased(network="web", endpoint="c1", address=A("192.0.2.2"), reason="effect failed: x"),
            NetworkRemoved(network="web", reason="effect failed: x"),
        ]

    def test_keeps_network_another_endpoint_holds(self):
        events = [WEB, allocated("c1", "192.0.2.2")]
        state = fold([*events, allocated("c2", "192.0.2.3")])
        undo = decide.undo(state, events, "effect failed: x")
        assert [type(e) for e in undo] == [AddressReleased]

    def test_skips_allocation_already_released(self):
        events = [allocated("c1", "192.0.2.2")]
        state = state_with(*events, AddressReleased(network="web", endpoint="c1", address=A("192.0.2.2")))
        assert decide.undo(state, events, "effect failed: x") == []
