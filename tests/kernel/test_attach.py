"""Veths into container namespaces on the real kernel: plumbing, release, retries."""

import json
import subprocess

import pytest

from netstate.domain.decide import veth_name
from tests.conftest import in_netns
from tests.helpers import event_types, ip_json, ipv4_addresses, is_up, kernel_snapshot, link, link_names

pytestmark = pytest.mark.root


def allocate_json(netstate_cmd, *args, env=None) -> dict:
    return json.loads(netstate_cmd("allocate", *args, "--json", env=env).stdout)


def veths(netns: str) -> set[str]:
    return {name for name in link_names(netns) if name.startswith("nsv")}


def default_route(netns: str) -> str | None:
    routes = [r for r in ip_json(netns, "route", "show") if r["dst"] == "default"]
    return routes[0]["gateway"] if routes else None


def test_allocate_netns_gives_a_working_address(netstate_cmd, host_ns, make_netns):
    c1 = make_netns("c1")
    got = allocate_json(netstate_cmd, "c1", "--netns", c1)

    assert got["netns"] == f"/run/netns/{c1}"
    assert ipv4_addresses(c1, "eth0") == [f"{got['address']}/{got['prefix_length']}"]
    assert is_up(c1, "eth0")
    assert is_up(c1, "lo")
    assert default_route(c1) == got["gateway"]
    host_side = link(host_ns, veth_name("default", "c1"))
    assert host_side["master"] == got["bridge"]
    assert "UP" in host_side["flags"]

    ping = in_netns(c1, "ping", "-c", "1", "-W", "2", got["gateway"], check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_two_containers_reach_each_other(netstate_cmd, make_netns):
    c1, c2 = make_netns("c1"), make_netns("c2")
    netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0")
    allocate_json(netstate_cmd, "c1", "--network", "web", "--netns", c1)
    got = allocate_json(netstate_cmd, "c2", "--network", "web", "--ip", "192.0.2.9", "--netns", c2, "--ifname", "net0")
    assert ipv4_addresses(c2, "net0") == ["192.0.2.9/24"]
    ping = in_netns(c1, "ping", "-c", "1", "-W", "2", got["address"], check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_managed_namespace_is_no_container(netstate_cmd, host_ns, db_path):
    # Plumbed there, the veth's far end sat beside the bridge and its default route via the
    # gateway stayed in the managed namespace after the release.
    netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0")
    before = (event_types(db_path), kernel_snapshot(host_ns), default_route(host_ns))

    result = netstate_cmd("allocate", "c1", "--network", "web", "--netns", host_ns, check=False)

    assert result.returncode == 1
    assert result.stderr == (
        f"netstate: error: --netns {host_ns} is the namespace netstate manages, not a container's; "
        "pass the container's namespace\n"
    )
    assert (event_types(db_path), kernel_snapshot(host_ns), default_route(host_ns)) == before


def test_release_removes_the_veth(netstate_cmd, host_ns, make_netns, db_path):
    c1 = make_netns("c1")
    allocate_json(netstate_cmd, "c1", "--netns", c1)
    netstate_cmd("release", "c1")
    assert veths(host_ns) == set()
    assert "eth0" not in link_names(c1)
    assert event_types(db_path)[-1] == "AddressReleased"


def test_allocate_twice_with_same_netns_is_idempotent(netstate_cmd, host_ns, make_netns, db_path):
    c1 = make_netns("c1")
    first = allocate_json(netstate_cmd, "c1", "--netns", c1)
    again = allocate_json(netstate_cmd, "c1", "--netns", f"/run/netns/{c1}")
    assert again == first
    assert veths(host_ns) == {veth_name("default", "c1")}
    assert event_types(db_path) == ["NetworkCreated", "AddressAllocated"]


def test_missing_netns_changes_nothing(netstate_cmd, host_ns, db_path):
    netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0")
    before = kernel_snapshot(host_ns)
    result = netstate_cmd("allocate", "c1", "--network", "web", "--netns", "no-such-ns-here", check=False)
    assert result.returncode == 1
    assert result.stderr == (
        "netstate: error: network namespace 'no-such-ns-here' not found at /run/netns/no-such-ns-here; "
        "create it with `ip netns add`\n"
    )
    assert event_types(db_path) == ["NetworkCreated"]
    assert kernel_snapshot(host_ns) == before


def test_ifname_taken_in_container_is_compensated(netstate_cmd, host_ns, make_netns, db_path):
    c1 = make_netns("c1")
    subprocess.run(["ip", "-n", c1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth9"], check=True)
    result = netstate_cmd("allocate", "c1", "--netns", c1, check=False)
    assert result.returncode == 1
    assert "eth0 already exists in" in result.stderr
    assert "pass another --ifname" in result.stderr
    assert event_types(db_path) == ["NetworkCreated", "AddressAllocated", "AddressReleased", "NetworkRemoved"]
    assert veths(host_ns) == set()
    assert "netstate0" not in link_names(host_ns)


class TestRetry:
    def test_crash_after_commit_then_retry_plumbs_the_veth(self, netstate_cmd, host_ns, make_netns, db_path):
        c1 = make_netns("c1")
        crashed = netstate_cmd("allocate", "c1", "--netns", c1, env={"NETSTATE_CRASH_AT": "after-commit"}, check=False)
        assert crashed.returncode == -9
        assert event_types(db_path) == ["NetworkCreated", "AddressAllocated"]
        assert "eth0" not in link_names(c1)

        got = allocate_json(netstate_cmd, "c1", "--netns", c1)
        assert ipv4_addresses(c1, "eth0") == [f"{got['address']}/{got['prefix_length']}"]
        assert in_netns(c1, "ping", "-c", "1", "-W", "2", got["gateway"], check=False).returncode == 0
        assert event_types(db_path) == ["NetworkCreated", "AddressAllocated"]

    def test_half_made_veth_is_found_and_completed(self, netstate_cmd, host_ns, make_netns):
        c1 = make_netns("c1")
        crashed = netstate_cmd("allocate", "c1", "--netns", c1, env={"NETSTATE_CRASH_AT": "after-commit"}, check=False)
        assert crashed.returncode == -9
        # What a crash in the middle of plumbing leaves: the pair exists, nothing else is set.
        name = veth_name("default", "c1")
        subprocess.run(
            ["ip", "-n", host_ns, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", c1],
            check=True,
        )
        got = allocate_json(netstate_cmd, "c1", "--netns", c1)
        assert veths(host_ns) == {name}
        assert link(host_ns, name)["master"] == "netstate0"
        assert ipv4_addresses(c1, "eth0") == [f"{got['address']}/{got['prefix_length']}"]
        assert in_netns(c1, "ping", "-c", "1", "-W", "2", got["gateway"], check=False).returncode == 0

    def test_veth_left_by_interrupted_release_is_reused(self, netstate_cmd, host_ns, make_netns, db_path):
        c1 = make_netns("c1")
        first = allocate_json(netstate_cmd, "c1", "--netns", c1)
        crashed = netstate_cmd("release", "c1", env={"NETSTATE_CRASH_AT": "after-commit"}, check=False)
        assert crashed.returncode == -9
        assert veths(host_ns) == {veth_name("default", "c1")}

        # The cursor has moved on, so c1 gets a new address on the same veth.
        second = allocate_json(netstate_cmd, "c1", "--netns", c1)
        assert second["address"] != first["address"]
        assert veths(host_ns) == {veth_name("default", "c1")}
        assert ipv4_addresses(c1, "eth0") == [f"{second['address']}/{second['prefix_length']}"]
        assert in_netns(c1, "ping", "-c", "1", "-W", "2", second["gateway"], check=False).returncode == 0
