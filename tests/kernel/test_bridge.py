"""Bridges on the real kernel, inside namespaces the fixtures create and delete."""

import errno
import subprocess
from datetime import UTC, datetime

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from netstate.errors import KernelError
from netstate.kernel.links import Pyroute2Links, owner_alias
from netstate.kernel.netns import entered
from tests.helpers import event_types, ipv4_addresses, is_up, kernel_snapshot, link, link_names

pytestmark = pytest.mark.root


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True)


class TestCreate:
    def test_bridge_created_with_gateway_and_up(self, netstate_cmd, host_ns):
        netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0")
        assert ipv4_addresses(host_ns, "nsweb0") == ["192.0.2.1/24"]
        assert is_up(host_ns, "nsweb0")
        entry = link(host_ns, "nsweb0")
        assert entry["linkinfo"]["info_kind"] == "bridge"
        assert entry["ifalias"] == owner_alias("web")

    def test_host_bits_become_the_bridge_address(self, netstate_cmd, host_ns):
        netstate_cmd("network", "create", "web", "--subnet", "192.0.2.77/24", "--bridge", "nsweb0")
        assert ipv4_addresses(host_ns, "nsweb0") == ["192.0.2.77/24"]

    def test_rm_deletes_the_bridge_it_created(self, netstate_cmd, host_ns, db_path):
        netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0")
        netstate_cmd("network", "rm", "web")
        assert "nsweb0" not in link_names(host_ns)
        assert event_types(db_path) == ["NetworkCreated", "NetworkRemoved"]

    def test_default_network_avoids_routes_of_the_namespace(self, netstate_cmd, host_ns, db_path):
        ip(host_ns, "link", "add", "br-other", "type", "bridge")
        ip(host_ns, "addr", "add", "172.17.5.1/24", "dev", "br-other")
        ip(host_ns, "link", "set", "br-other", "up")
        netstate_cmd("allocate", "c1")
        assert ipv4_addresses(host_ns, "netstate0") == ["10.0.42.1/16"]


class TestAdopt:
    def make_bridge(self, netns, *addresses, up=True):
        ip(netns, "link", "add", "br-own", "type", "bridge")
        for address in addresses:
            ip(netns, "addr", "add", address, "dev", "br-own")
        if up:
            ip(netns, "link", "set", "br-own", "up")

    def test_adopted_bridge_brought_up(self, netstate_cmd, host_ns):
        # Reference bug 6: a bridge that was down was never brought up.
        self.make_bridge(host_ns, "192.0.2.1/24", up=False)
        netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "br-own")
        assert is_up(host_ns, "br-own")
        assert ipv4_addresses(host_ns, "br-own") == ["192.0.2.1/24"]

    def test_rm_leaves_an_adopted_bridge(self, netstate_cmd, host_ns, db_path):
        self.make_bridge(host_ns, "192.0.2.1/24")
        netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "br-own")
        netstate_cmd("network", "rm", "web")
        assert ipv4_addresses(host_ns, "br-own") == ["192.0.2.1/24"]
        assert event_types(db_path) == ["NetworkCreated", "NetworkRemoved"]

    @pytest.mark.parametrize(
        ("addresses", "shown"),
        [
            (("198.51.100.1/24",), "198.51.100.1/24"),
            (("192.0.2.1/25",), "192.0.2.1/25"),
            ((), "no IPv4 address"),
            (("192.0.2.1/24", "203.0.113.1/24"), "192.0.2.1/24, 203.0.113.1/24"),
        ],
    )
    def test_bridge_with_other_addresses_refused(self, netstate_cmd, host_ns, db_path, addresses, shown):
        # Reference bug 6: a bridge was adopted with whatever address it had.
        self.make_bridge(host_ns, *addresses)
        before = kernel_snapshot(host_ns)
        result = netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "br-own", check=False)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1
        assert "'br-own'" in result.stderr
        assert shown in result.stderr
        assert "needs exactly 192.0.2.1/24" in result.stderr
        assert event_types(db_path) == []
        assert kernel_snapshot(host_ns) == before

    def test_link_of_another_kind_refused(self, netstate_cmd, host_ns, db_path):
        ip(host_ns, "link", "add", "br-own", "type", "veth", "peer", "name", "br-peer")
        ip(host_ns, "addr", "add", "192.0.2.1/24", "dev", "br-own")
        result = netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "br-own", check=False)
        assert result.returncode == 1
        assert "'br-own' exists and is veth, not a bridge" in result.stderr
        assert event_types(db_path) == []


@pytest.fixture
def links(host_ns):
    """The real adapter with its netlink socket opened inside `host_ns`."""
    with entered(f"/run/netns/{host_ns}"):
        driver = Pyroute2Links()
    yield driver
    driver.close()


def test_address_error_on_new_bridge_not_discarded(links, host_ns, db_path, monkeypatch):
    """Reference bug 2: the error from adding the bridge address was discarded.

    The kernel has no reliable way to refuse an IPv4 address on a fresh bridge, so the failure
    is injected at the netlink call. Links and the store are real; the firewall is the fake,
    because this process runs outside `host_ns` and must not touch its own namespace's rules.
    """
    from netstate.bootstrap import current_actor
    from netstate.kernel.fake import fake_forwarding
    from netstate.service import Kernel, Netstate
    from netstate.store.engine import open_database
    from netstate.store.eventlog import EventStore

    real_addr = links.ipr.addr

    def refuse_add(command, *args, **kwargs):
        if command == "add":
            raise NetlinkError(errno.ENOBUFS)
        return real_addr(command, *args, **kwargs)

    monkeypatch.setattr(links.ipr, "addr", refuse_add)
    service = Netstate(
        EventStore(open_database(db_path)), lambda: Kernel(links, None, fake_forwarding), current_actor(), lambda: datetime.now(UTC)
    )
    with pytest.raises(KernelError, match=r"cannot add address 192.0.2.1/24 to 'nsweb0': No buffer space"):
        service.create_network("web", subnet="192.0.2.0/24", bridge="nsweb0")
    assert event_types(db_path) == ["NetworkCreated", "NetworkRemoved"]
    assert service.networks() == []
    # The bridge netstate created is removed again, not left up without an address.
    assert "nsweb0" not in link_names(host_ns)
    service.store.engine.dispose()


def test_ensure_bridge_is_idempotent(links, host_ns):
    from ipaddress import IPv4Interface

    from netstate.actions import EnsureBridge

    action = EnsureBridge(network="web", name="nsweb0", address=IPv4Interface("192.0.2.1/24"))
    assert links.ensure_bridge(action) is True
    assert links.ensure_bridge(action) is False
    ip(host_ns, "link", "set", "nsweb0", "down")
    ip(host_ns, "addr", "add", "203.0.113.1/24", "dev", "nsweb0")
    assert links.ensure_bridge(action) is True
    assert ipv4_addresses(host_ns, "nsweb0") == ["192.0.2.1/24"]
    assert is_up(host_ns, "nsweb0")


def test_ensure_bridge_converges_when_another_process_created_it(links, host_ns, monkeypatch):
    from ipaddress import IPv4Interface

    from netstate.actions import EnsureBridge

    # The bridge appears between the lookup and the creation, as with a concurrent netstate.
    real_link = links._link
    calls = []

    def link_then_race(name):
        calls.append(name)
        if len(calls) == 1:
            ip(host_ns, "link", "add", name, "type", "bridge")
            return None
        return real_link(name)

    monkeypatch.setattr(links, "_link", link_then_race)
    action = EnsureBridge(network="web", name="nsweb0", address=IPv4Interface("192.0.2.1/24"))
    links.ensure_bridge(action)
    assert ipv4_addresses(host_ns, "nsweb0") == ["192.0.2.1/24"]
    assert is_up(host_ns, "nsweb0")
