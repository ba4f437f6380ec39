"""The service over a real SQLite file and the fake kernel: sequence, idempotence, compensation."""

import json
import sqlite3
from ipaddress import IPv4Address, IPv4Interface

import pytest

from netstate.actions import EnsureBridge, EnsureVeth, RemoveBridge
from netstate.bootstrap import open_service
from netstate.errors import (
    AddressInUse,
    AddressNotInSubnet,
    InvalidInput,
    InvalidName,
    InvalidSubnet,
    KernelError,
    NetworkInUse,
    NotFound,
    UnknownNetwork,
)
from netstate.kernel.fake import FakeLink

# A real network namespace file that the fake kernel never touches.
NETNS = "/proc/self/ns/net"


def stored_events(db) -> list[tuple[str, str, str | None, dict]]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT type, network, endpoint, payload FROM events ORDER BY seq")
        return [(t, n, e, json.loads(p)) for t, n, e, p in rows]


@pytest.fixture
def svc(db_path):
    service = open_service(db_path, kernel="fake")
    yield service
    service.close()


@pytest.fixture
def links(svc):
    return svc.kernel.links


class TestNetworks:
    def test_create_records_and_makes_bridge(self, svc, links, db_path):
        network = svc.create_network("web", subnet="192.0.2.0/24", bridge="nsweb0")
        assert (str(network.subnet), str(network.gateway), network.bridge) == ("192.0.2.0/24", "192.0.2.1", "nsweb0")
        assert svc.networks() == [network]
        bridge = links.links["nsweb0"]
        assert (bridge.kind, bridge.addresses, bridge.up) == ("bridge", [IPv4Interface("192.0.2.1/24")], True)
        assert [e[0] for e in stored_events(db_path)] == ["NetworkCreated"]

    def test_default_bridge_name(self, svc):
        assert svc.create_network("web", subnet="192.0.2.0/24").bridge == "ns-web"

    def test_bad_input_appends_nothing(self, svc, links, db_path):
        with pytest.raises(InvalidSubnet):
            svc.create_network("web", subnet="192.0.2.0/32")
        with pytest.raises(InvalidName):
            svc.create_network("web", subnet="192.0.2.0/24", bridge="b" * 16)
        with pytest.raises(InvalidSubnet, match="--gateway 192.0.2.1 needs --subnet"):
            svc.create_network("web", gateway="192.0.2.1")
        assert stored_events(db_path) == []
        assert links.links == {}

    def test_remove_deletes_created_bridge(self, svc, links):
        svc.create_network("web", subnet="192.0.2.0/24", bridge="nsweb0")
        svc.remove_network("web")
        assert svc.networks() == []
        assert "nsweb0" not in links.links

    def test_remove_leaves_adopted_bridge(self, svc, links):
        links.links["br-own"] = FakeLink("br-own", "bridge", [IPv4Interface("192.0.2.1/24")], up=False)
        svc.create_network("web", subnet="192.0.2.0/24", bridge="br-own")
        assert links.links["br-own"].up is True
        svc.remove_network("web")
        assert "br-own" in links.links

    def test_remove_refused_while_held(self, svc, db_path):
        svc.create_network("web", subnet="192.0.2.0/24")
        svc.allocate("c1", network="web")
        with pytest.raises(NetworkInUse, match="c1"):
            svc.remove_network("web")
        assert [e[0] for e in stored_events(db_path)] == ["NetworkCreated", "AddressAllocated"]

    def test_icc(self, svc, db_path):
        svc.create_network("web", subnet="192.0.2.0/24")
        assert svc.set_icc("web", False).icc is False
        assert svc.set_icc("web", False).icc is False
        assert [e[0] for e in stored_events(db_path)] == ["NetworkCreated", "IccChanged"]


class TestAllocate:
    def test_default_network_created_in_same_transaction(self, svc, links, db_path):
        attachment = svc.allocate("c1")
        assert attachment.network.name == "default"
        assert attachment.network.bridge == "netstate0"
        assert "netstate0" in links.links
        with sqlite3.connect(db_path) as connection:
            rows = connection.execute("SELECT seq, type, recorded_at FROM events ORDER BY seq").fetchall()
        assert [r[1] for r in rows] == ["NetworkCreated", "AddressAllocated"]
        assert rows[0][2] == rows[1][2]

    def test_failed_first_allocate_creates_no_default_network(self, svc, db_path):
        with pytest.raises(AddressNotInSubnet):
            svc.allocate("c1", address="198.51.100.9")
        assert stored_events(db_path) == []

    def test_same_endpoint_again_returns_same_address(self, svc, db_path):
        first = svc.allocate("c1")
        again = svc.allocate("c1")
        assert again == first
        assert len(stored_events(db_path)) == 2

    def test_requested_address_held_names_holder(self, svc):
        svc.create_network("web", subnet="192.0.2.0/24")
        svc.allocate("c1", network="web", address="192.0.2.9")
        with pytest.raises(AddressInUse, match="held by endpoint 'c1'"):
            svc.allocate("c2", network="web", address="192.0.2.9")

    def test_unknown_network(self, svc, db_path):
        with pytest.raises(UnknownNetwork, match="'nope'"):
            svc.allocate("c1", network="nope")
        assert stored_events(db_path) == []

    def test_missing_netns_appends_nothing(self, svc, db_path):
        with pytest.raises(NotFound, match="network namespace 'no-such-ns' not found"):
            svc.allocate("c1", netns="no-such-ns")
        assert stored_events(db_path) == []

    def test_regular_file_is_no_netns(self):
        # The fake kernel accepts any existing path; the real adapter's check is this one.
        from netstate.kernel.netns import netns_path

        with pytest.raises(NotFound, match="/etc/hostname is not a network namespace"):
            netns_path("/etc/hostname")

    def test_ifname_without_netns_appends_nothing(self, svc, db_path):
        # It used to be dropped silently, leaving a lease with no interface name.
        with pytest.raises(InvalidInput, match="--ifname eth1 needs --netns"):
            svc.allocate("c1", ifname="eth1")
        assert stored_events(db_path) == []

    def test_netns_plumbs_veth(self, svc, links):
        attachment = svc.allocate("c1", netns=NETNS)
        veth = links.links[attachment.lease.host_ifname]
        assert veth.master == "netstate0"
        assert veth.peer == (NETNS, "eth0", IPv4Interface(f"{attachment.lease.address}/16"), IPv4Address("172.17.42.1"))

    def test_same_netns_again_ensures_veth(self, svc, links, db_path):
        attachment = svc.allocate("c1", netns=NETNS)
        del links.links[attachment.lease.host_ifname]
        assert svc.allocate("c1", netns=NETNS) == attachment
        assert attachment.lease.host_ifname in links.links
        assert len(stored_events(db_path)) == 2

    def test_release_removes_veth(self, svc, links, db_path):
        attachment = svc.allocate("c1", netns=NETNS)
        released = svc.release("c1")
        assert [str(e.address) for e in released] == [str(attachment.lease.address)]
        assert attachment.lease.host_ifname not in links.links
        assert svc.attachments() == []


class TestCompensation:
    def test_failed_veth_releases_address(self, svc, links, db_path):
        svc.create_network("web", subnet="192.0.2.0/24", bridge="nsweb0")
        links.fail_on.add(EnsureVeth)
        with pytest.raises(KernelError, match="fake failure of EnsureVeth"):
            svc.allocate("c1", network="web", netns=NETNS)
        events = stored_events(db_path)
        assert [e[0] for e in events] == ["NetworkCreated", "AddressAllocated", "AddressReleased"]
        assert events[-1][3]["reason"] == "effect failed: fake failure of EnsureVeth"
        assert svc.attachments() == []
        assert "nsweb0" in links.links

    def test_failed_bridge_takes_back_default_network(self, svc, links, db_path):
        links.fail_on.add(EnsureBridge)
        with pytest.raises(KernelError):
            svc.allocate("c1")
        types = [e[0] for e in stored_events(db_path)]
        assert types == ["NetworkCreated", "AddressAllocated", "AddressReleased", "NetworkRemoved"]
        assert svc.networks() == []
        assert RemoveBridge(network="default", name="netstate0") in links.applied

    def test_network_another_endpoint_took_stays(self, svc, links, db_path):
        other = open_service(db_path, kernel="fake")
        real_ensure = links.ensure_bridge

        def ensure_then_fail(action):
            # Another process allocates on the new network between commit and failure.
            other.allocate("c2")
            real_ensure(action)
            raise KernelError("bridge failed")

        links.ensure_bridge = ensure_then_fail
        with pytest.raises(KernelError, match="bridge failed"):
            svc.allocate("c1")
        other.close()
        types = [e[0] for e in stored_events(db_path)]
        assert types == ["NetworkCreated", "AddressAllocated", "AddressAllocated", "AddressReleased"]
        assert [a.lease.endpoint for a in svc.attachments()] == ["c2"]
        assert [n.name for n in svc.networks()] == ["default"]


def test_actor_recorded(svc, db_path):
    svc.create_network("web", subnet="192.0.2.0/24")
    with sqlite3.connect(db_path) as connection:
        user, pid, command = connection.execute("SELECT actor_user, actor_pid, actor_command FROM events").fetchone()
    import os

    assert (pid, user) == (os.getpid(), "root" if os.geteuid() == 0 else user)
    assert command


def test_empty_host_netns_is_an_error_not_the_host(db_path):
    # An unset shell variable in `--host-netns "$NS"` must not fall back to the host's network.
    with pytest.raises(InvalidInput, match="invalid namespace ''"):
        open_service(db_path, host_netns="", kernel="fake")
