"""External faults in forwarding: the proxy killed, netstate's chains flushed or deleted, stale rules.

Each test starts from one network, two plumbed endpoints and three published ports, and injects
one fault with `iptables-legacy` or a signal. `check` must report it. `check --repair` must
bring back the exact rule set (read with `iptables-legacy-save`) and the proxy, and a second
repair must change nothing. A rule netstate did not create sits in a
built-in chain and in a netstate chain throughout and must survive untouched.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest

from netstate.kernel.proxy import process_alive
from tests.conftest import requires_root
from tests.kernel.portnet import iptables_save, kill_proxy, marked_rules, proxy_pid_file, sysctl
from tests.kernel.test_recovery_faults import Plumbed, plumbed, problems  # noqa: F401 - fixture

pytestmark = [pytest.mark.root, requires_root]

FOREIGN_FORWARD = "-A FORWARD -s 198.51.100.7/32 -j DROP"
FOREIGN_IN_CHAIN = "-A NETSTATE-USER -s 198.51.100.8/32 -j RETURN"


def iptables(netns: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "iptables-legacy", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def mapped(plumbed):  # noqa: F811 - the fixture imported above
    outcomes = plumbed.netstate(
        ["map", "c1", "8080:80", "5353:53/udp"],
        ["map", "c2", "8081:80"],
    )
    assert [status for status, _ in outcomes] == [0, 0], outcomes
    try:
        iptables(plumbed.host, "-A", "FORWARD", "-s", "198.51.100.7/32", "-j", "DROP")
        iptables(plumbed.host, "-A", "NETSTATE-USER", "-s", "198.51.100.8/32", "-j", "RETURN")
        yield plumbed, marked_rules(plumbed.host)
    finally:
        kill_proxy(plumbed.db)


def assert_restored(plumbed: Plumbed, rules: dict) -> None:
    assert marked_rules(plumbed.host) == rules
    saved = iptables_save(plumbed.host).splitlines()
    assert FOREIGN_FORWARD in saved, "a foreign rule in FORWARD was touched"
    assert FOREIGN_IN_CHAIN in saved, "a foreign rule in NETSTATE-USER was touched"
    assert sysctl(plumbed.host, "net/ipv4/ip_forward") == "1"
    pid = int(proxy_pid_file(plumbed.db).read_text())
    assert process_alive(pid)


def repaired(plumbed: Plumbed, rules: dict) -> set:
    before, repair, _ = plumbed.check_repair_twice()
    assert_restored(plumbed, rules)
    assert repair["changes"], "the repair changed nothing"
    return problems(before)


class TestForwardingFaults:
    def test_proxy_killed(self, mapped):
        plumbed, rules = mapped
        old = int(proxy_pid_file(plumbed.db).read_text())
        kill_proxy(plumbed.db)
        found = repaired(plumbed, rules)
        assert found == {("proxy", "netstate-proxy", "missing")}
        assert int(proxy_pid_file(plumbed.db).read_text()) != old

    def test_chains_flushed(self, mapped):
        plumbed, rules = mapped
        for table, chain in (("nat", "NETSTATE"), ("nat", "NETSTATE-POSTROUTING"), ("filter", "NETSTATE-FORWARD")):
            iptables(plumbed.host, "-t", table, "-F", chain)
        found = repaired(plumbed, rules)
        assert {kind for kind, _, _ in found} == {"rule"}
        assert {problem for _, _, problem in found} == {"missing"}
        dnat = [obj for _, obj, _ in found if "-j DNAT" in obj]
        assert len(dnat) == 3

    def test_chains_deleted_with_their_jumps(self, mapped):
        plumbed, rules = mapped
        for table, builtin, chain in (
            ("nat", "PREROUTING", "NETSTATE"), ("nat", "OUTPUT", "NETSTATE"),
            ("nat", "POSTROUTING", "NETSTATE-POSTROUTING"), ("filter", "FORWARD", "NETSTATE-FORWARD"),
        ):
            for text in rules[(table, builtin)]:
                if f"-j {chain}" in text:
                    iptables(plumbed.host, "-t", table, "-D", *shlex.split(text)[1:])
        for table, chain in (("nat", "NETSTATE"), ("nat", "NETSTATE-POSTROUTING"), ("filter", "NETSTATE-FORWARD")):
            iptables(plumbed.host, "-t", table, "-F", chain)
            iptables(plumbed.host, "-t", table, "-X", chain)
        found = repaired(plumbed, rules)
        assert {("chain", "nat/NETSTATE", "missing"), ("chain", "filter/NETSTATE-FORWARD", "missing")} <= found

    def test_stale_rule_of_an_older_run(self, mapped):
        plumbed, rules = mapped
        iptables(plumbed.host, "-t", "nat", "-A", "NETSTATE", "-p", "tcp", "--dport", "9999",
                 "-m", "comment", "--comment", "netstate old", "-j", "DNAT", "--to-destination", "10.44.0.99:80")
        found = repaired(plumbed, rules)
        assert len(found) == 1
        (kind, obj, problem), = found
        assert (kind, problem) == ("rule", "stale")
        assert "--dport 9999" in obj

    def test_leftover_chain_at_startup(self, mapped):
        plumbed, rules = mapped
        iptables(plumbed.host, "-t", "nat", "-N", "NETSTATE-OLD")
        iptables(plumbed.host, "-t", "nat", "-A", "NETSTATE-OLD", "-m", "comment", "--comment", "netstate", "-j", "RETURN")
        found = repaired(plumbed, rules)
        assert ("chain", "nat/NETSTATE-OLD", "stale") in found
        assert ":NETSTATE-OLD" not in iptables_save(plumbed.host)

    def test_ip_forward_off(self, mapped):
        plumbed, rules = mapped
        subprocess.run(["ip", "netns", "exec", plumbed.host, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"], check=True)
        found = repaired(plumbed, rules)
        assert found == {("sysctl", "net/ipv4/ip_forward", "value")}
