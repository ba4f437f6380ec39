"""External faults: someone changes the kernel or the database behind netstate's back.

Each test sets up one network with two plumbed endpoints in throwaway namespaces and injects
one fault with `ip` or SQL. It then checks that `netstate check` reports the fault with exit
status 1, that `check --repair` fixes it, and that a second repair changes nothing. Last, the
kernel, read with `ip -j`, must match the record again. Links netstate did not create must
survive all of it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from dataclasses import dataclass

import pytest

from tests.conftest import REPO, requires_root
from tests.kernel.kernel_view import assert_converged, ip_links

pytestmark = [pytest.mark.root, requires_root]

BRIDGE = "nsweb0"


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True, text=True)


@dataclass
class Plumbed:
    """A managed namespace with network web and endpoints c1 and c2 plumbed into c1 and c2."""

    db: object
    host: str
    containers: dict[str, str]

    def netstate(self, *commands: list[str]) -> list[tuple[int, str]]:
        """Run commands in one process; return (exit status, output) of each."""
        done = subprocess.run(
            ["python3", "-m", "tests.kernel.multi", str(self.db), self.host, json.dumps(list(commands))],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )
        results, current = [], []
        for line in done.stdout.splitlines():
            if line.startswith("### "):
                results.append((int(line[4:]), "\n".join(current)))
                current = []
            else:
                current.append(line)
        assert len(results) == len(commands), done.stderr
        return results

    def check_repair_twice(self) -> tuple[dict, dict, dict]:
        """Run check, check --repair and check --repair again; return their JSON reports."""
        results = self.netstate(["check", "--json"], ["check", "--repair", "--json"], ["check", "--repair", "--json"])
        (status, before), (repair_status, repair), (again_status, again) = results
        before, repair, again = json.loads(before), json.loads(repair), json.loads(again)
        assert status == 1, "check found no drift"
        assert repair_status == 0, f"repair left {repair['remaining']} {repair['errors']}"
        assert again_status == 0
        assert again["drift"] == [], f"second repair found {again['drift']}"
        assert again["changes"] == [], f"second repair changed {again['changes']}"
        assert_converged(self.db, self.host, list(self.containers.values()))
        return before, repair, again

    def veth_of(self, endpoint: str) -> str:
        from netstate.domain.decide import veth_name

        return veth_name("web", endpoint)


def problems(report: dict) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["object"], d["problem"]) for d in report["drift"]}


@pytest.fixture
def plumbed(make_netns, db_path) -> Plumbed:
    host = make_netns("host")
    containers = {"c1": make_netns("c1"), "c2": make_netns("c2")}
    setup = Plumbed(db_path, host, containers)
    outcomes = setup.netstate(
        ["network", "create", "web", "--subnet", "10.44.0.0/24", "--bridge", BRIDGE],
        ["allocate", "c1", "--network", "web", "--netns", containers["c1"]],
        ["allocate", "c2", "--network", "web", "--netns", containers["c2"]],
        ["check"],
    )
    assert [status for status, _ in outcomes] == [0, 0, 0, 0], outcomes
    return setup


@pytest.fixture
def foreign(plumbed) -> list[str]:
    """Links netstate did not create, one of them on netstate's bridge; none may be touched."""
    ip(plumbed.host, "link", "add", "brforeign", "type", "bridge")
    ip(plumbed.host, "link", "add", "vethfor0", "type", "veth", "peer", "name", "vethfor1")
    ip(plumbed.host, "link", "set", "vethfor1", "master", BRIDGE)
    ip(plumbed.host, "link", "add", "nsvnothex0000", "type", "veth", "peer", "name", "nsvnothex0001")
    names = ["brforeign", "vethfor0", "vethfor1", "nsvnothex0000", "nsvnothex0001"]
    before = {name: ip_links(plumbed.host)[name]["ifindex"] for name in names}
    yield names
    after = ip_links(plumbed.host)
    assert {name: after[name]["ifindex"] for name in names if name in after} == before, "a foreign link was touched"


class TestLinkFaults:
    def test_bridge_deleted(self, plumbed, foreign):
        ip(plumbed.host, "link", "del", BRIDGE)
        before, repair, _ = plumbed.check_repair_twice()
        assert ("bridge", BRIDGE, "missing") in problems(before)
        assert ("veth", plumbed.veth_of("c1"), "detached") in problems(before)
        assert len(repair["changes"]) == 3

    def test_bridge_set_down(self, plumbed, foreign):
        ip(plumbed.host, "link", "set", BRIDGE, "down")
        before, _, _ = plumbed.check_repair_twice()
        assert problems(before) == {("bridge", BRIDGE, "down")}

    def test_bridge_readdressed(self, plumbed, foreign):
        ip(plumbed.host, "addr", "flush", "dev", BRIDGE)
        ip(plumbed.host, "addr", "add", "10.99.0.1/24", "dev", BRIDGE)
        before, _, _ = plumbed.check_repair_twice()
        assert problems(before) == {("bridge", BRIDGE, "address")}
        assert before["drift"][0]["found"] == "10.99.0.1/24"

    def test_stale_links_of_an_older_run(self, plumbed, foreign):
        c1 = plumbed.containers["c1"]
        ip(plumbed.host, "link", "add", "nsv0123456789", "type", "veth", "peer", "name", "eth7", "netns", c1)
        ip(plumbed.host, "link", "set", "nsv0123456789", "alias", "netstate:old")
        ip(plumbed.host, "link", "add", "nsvabcdef0123", "type", "veth", "peer", "name", "eth8", "netns", c1)
        ip(plumbed.host, "link", "add", "nsold0", "type", "bridge")
        ip(plumbed.host, "link", "set", "nsold0", "alias", "netstate:old")
        ip(plumbed.host, "link", "add", "nstmp0123456789", "type", "bridge")
        before, _, _ = plumbed.check_repair_twice()
        assert problems(before) == {
            ("veth", "nsv0123456789", "stale"),
            ("veth", "nsvabcdef0123", "stale"),
            ("bridge", "nsold0", "stale"),
            ("bridge", "nstmp0123456789", "stale"),
        }
        assert "eth7" not in ip_links(c1)

    def test_veth_removed(self, plumbed, foreign):
        address_before = plumbed.netstate(["ls", "--json"])[0][1]
        ip(plumbed.host, "link", "del", plumbed.veth_of("c1"))
        before, _, _ = plumbed.check_repair_twice()
        assert problems(before) == {("veth", plumbed.veth_of("c1"), "missing")}
        assert plumbed.netstate(["ls", "--json"])[0][1] == address_before

    def test_container_address_flushed(self, plumbed, foreign):
        ip(plumbed.containers["c2"], "addr", "flush", "dev", "eth0")
        before, _, _ = plumbed.check_repair_twice()
        assert {p for _, _, p in problems(before)} == {"peer-address", "peer-route"}

    def test_veth_detached_from_bridge(self, plumbed, foreign):
        ip(plumbed.host, "link", "set", plumbed.veth_of("c2"), "nomaster")
        before, _, _ = plumbed.check_repair_twice()
        assert problems(before) == {("veth", plumbed.veth_of("c2"), "detached")}

    def test_namespace_deleted_is_a_notice(self, plumbed):
        subprocess.run(["ip", "netns", "del", plumbed.containers["c2"]], check=True)
        (status, output), = plumbed.netstate(["check", "--json"])
        report = json.loads(output)
        assert status == 0
        assert report["drift"] == []
        assert [n["object"] for n in report["notices"]] == ["c2"]


class TestProjectionFaults:
    def test_checkpoint_behind_log(self, plumbed):
        with sqlite3.connect(plumbed.db) as db:
            db.execute("UPDATE checkpoints SET seq = seq - 2")
        before, repair, _ = plumbed.check_repair_twice()
        assert problems(before) == {("projections", "checkpoints", "behind")}
        assert repair["rebuilt_from_events"] == 3

    def test_lease_row_deleted_keeps_its_veth(self, plumbed):
        index = ip_links(plumbed.host)[plumbed.veth_of("c1")]["ifindex"]
        with sqlite3.connect(plumbed.db) as db:
            db.execute("DELETE FROM leases WHERE endpoint = 'c1'")
        before, _, _ = plumbed.check_repair_twice()
        assert problems(before) == {("projections", "leases", "count")}
        assert ip_links(plumbed.host)[plumbed.veth_of("c1")]["ifindex"] == index


def test_check_prints_table_and_exits_1(plumbed):
    ip(plumbed.host, "link", "set", BRIDGE, "down")
    (status, output), = plumbed.netstate(["check"])
    assert status == 1
    header, row, summary = output.splitlines()
    assert header.split() == ["KIND", "OBJECT", "PROBLEM", "EXPECTED", "FOUND"]
    assert row.split() == ["bridge", BRIDGE, "down", "up", "down"]
    assert "check --repair" in summary
