"""Restart cases: a host that lost every link, and commands run after a crash instead of restore."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import pytest

from tests.conftest import requires_root, run_netstate
from tests.kernel.portnet import kill_proxy, reap_proxy  # noqa: F401 - fixture
from tests.kernel.kernel_view import assert_converged, ip_links, read_record

pytestmark = [pytest.mark.root, requires_root]

WEB = ("network", "create", "web", "--subnet", "10.44.0.0/24", "--bridge", "nsweb0")


def reboot(host: str) -> None:
    """Lose every link of the managed namespace, as a reboot does, keeping the containers'."""
    subprocess.run(["ip", "netns", "del", host], check=True)
    subprocess.run(["ip", "netns", "add", host], check=True)
    subprocess.run(["ip", "-n", host, "link", "set", "lo", "up"], check=True)


def leases(netstate_cmd) -> dict[str, str]:
    return {a["endpoint"]: a["address"] for a in json.loads(netstate_cmd("ls", "--json").stdout)}


@pytest.fixture
def running(netstate_cmd, make_netns):
    """Network web with c1 and c2 plumbed and c3 holding an address without a namespace."""
    containers = {name: make_netns(name) for name in ("c1", "c2", "c4")}
    netstate_cmd(*WEB)
    netstate_cmd("allocate", "c1", "--network", "web", "--netns", containers["c1"])
    netstate_cmd("allocate", "c2", "--network", "web", "--netns", containers["c2"])
    netstate_cmd("allocate", "c3", "--network", "web")
    return containers


class TestReboot:
    @pytest.mark.parametrize("projections", ["intact", "behind"])
    def test_restore_keeps_addresses_after_reboot(
        self, running, netstate_cmd, host_ns, db_path, projections
    ):
        before = leases(netstate_cmd)
        reboot(host_ns)
        if projections == "behind":
            with sqlite3.connect(db_path) as db:
                db.execute("UPDATE checkpoints SET seq = 1")

        report = json.loads(netstate_cmd("restore", "--json").stdout)
        assert report["in_sync"]
        assert report["rebuilt_from_events"] == (None if projections == "intact" else 4)
        # A new namespace also lost ip_forward and every rule; route_localnet stays 0 with the proxy on.
        assert [c["action"] for c in report["changes"]] == [
            "EnsureBridge", "EnsureVeth", "EnsureVeth", "EnsureSysctl", "SyncFirewall",
        ]
        assert leases(netstate_cmd) == before
        assert_converged(db_path, host_ns, list(running.values()))

        netstate_cmd("allocate", "c4", "--network", "web", "--netns", running["c4"])
        new = leases(netstate_cmd)["c4"]
        assert new not in before.values()
        # The cursor survived the restart: the search goes on after c3's address.
        assert new == "10.44.0.5"
        assert_converged(db_path, host_ns, list(running.values()))
        assert netstate_cmd("check").returncode == 0

    def test_second_restore_reports_no_changes(self, running, netstate_cmd, host_ns):
        reboot(host_ns)
        netstate_cmd("restore")
        second = netstate_cmd("restore")
        assert second.stdout.startswith("nothing to change")


class TestNextCommandConverges:
    def test_repeated_allocate_plumbs_veth_after_crash(self, netstate_cmd, make_netns, host_ns, db_path):
        c1 = make_netns("c1")
        netstate_cmd(*WEB)
        allocate = ("allocate", "c1", "--network", "web", "--netns", c1)
        killed = netstate_cmd(*allocate, env={"NETSTATE_CRASH_AT": "after-commit"}, check=False)
        assert killed.returncode == -9
        assert "eth0" not in ip_links(c1)
        events = len(read_record(db_path).events)

        netstate_cmd(*allocate)
        assert len(read_record(db_path).events) == events
        assert_converged(db_path, host_ns, [c1])

    def test_allocate_creates_bridge_of_interrupted_network_create(self, netstate_cmd, make_netns, host_ns, db_path):
        c1 = make_netns("c1")
        killed = netstate_cmd(*WEB, env={"NETSTATE_CRASH_AT": "after-commit"}, check=False)
        assert killed.returncode == -9
        assert "nsweb0" not in ip_links(host_ns)

        netstate_cmd("allocate", "c1", "--network", "web", "--netns", c1)
        assert_converged(db_path, host_ns, [c1])

    def test_half_created_bridge_is_removed(self, netstate_cmd, host_ns, db_path):
        killed = netstate_cmd(*WEB, env={"NETSTATE_CRASH_AT": "bridge:created"}, check=False)
        assert killed.returncode == -9
        netstate_cmd("network", "rm", "web")
        netstate_cmd("restore")
        assert_converged(db_path, host_ns, [])
        assert [name for name in ip_links(host_ns) if name != "lo"] == []


def dnat_rules(host: str, port: int, protocol: str = "tcp") -> list[str]:
    from tests.kernel.portnet import iptables_save

    lines = iptables_save(host).splitlines()
    return [line for line in lines if f"-p {protocol} -m {protocol} --dport {port} " in line and "-j DNAT" in line]


def port_table(netstate_cmd) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for binding in json.loads(netstate_cmd("ports", "--json").stdout):
        found.setdefault(binding["endpoint"], []).append(json.dumps(binding, sort_keys=True))
    return {endpoint: sorted(texts) for endpoint, texts in found.items()}


@pytest.mark.usefixtures("reap_proxy")
class TestPortsAfterCrash:
    def test_unmap_killed_before_rule_removal_then_port_mapped_again(self, running, netstate_cmd, host_ns, db_path):
        netstate_cmd("map", "c1", "7070:80")
        assert len(dnat_rules(host_ns, 7070)) == 1
        killed = netstate_cmd("unmap", "c1", "7070:80", env={"NETSTATE_CRASH_AT": "after-commit"}, check=False)
        assert killed.returncode == -9
        # The record no longer holds the mapping, but its rule is still there.
        assert len(dnat_rules(host_ns, 7070)) == 1

        netstate_cmd("map", "c2", "7070:80")
        rules = dnat_rules(host_ns, 7070)
        c2 = leases(netstate_cmd)["c2"]
        assert len(rules) == 1, rules
        assert f"--to-destination {c2}:80" in rules[0]
        assert netstate_cmd("check").returncode == 0

    def test_ports_stay_with_their_endpoints_after_restore(self, running, netstate_cmd, host_ns, db_path):
        netstate_cmd("map", "c1", "80", "53/udp")
        netstate_cmd("map", "c2", "7071:80")
        before = port_table(netstate_cmd)
        taken = {(b["protocol"], b["host_port"]) for b in map(json.loads, sum(before.values(), []))}
        # A reboot ends the proxy too, which would otherwise keep the old namespace alive.
        kill_proxy(db_path)
        reboot(host_ns)
        report = json.loads(netstate_cmd("restore", "--json").stdout)
        assert report["in_sync"], report
        assert port_table(netstate_cmd) == before
        assert netstate_cmd("check").returncode == 0
        assert netstate_cmd("restore").stdout.startswith("nothing to change")

        # Port 81: a dynamic request for 80 would reuse c2's binding 7071->80.
        netstate_cmd("map", "c2", "81")
        new = {(b["protocol"], b["host_port"]) for b in map(json.loads, port_table(netstate_cmd)["c2"])} - taken
        assert len(new) == 1 and {port for _, port in new}.isdisjoint(port for _, port in taken), new
        counts = {key: len(dnat_rules(host_ns, key[1], key[0])) for key in taken | new}
        assert set(counts.values()) == {1}, counts
