"""The python-iptables adapter against the real legacy tables of a throwaway namespace.

Each test checks the kernel through `iptables-legacy-save` run inside the namespace, not
through the adapter under test.
"""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address, IPv4Network

import pytest

from netstate.domain.events import AddressAllocated, IccChanged, NetworkCreated, PortMapped, Protocol
from netstate.domain.state import State, fold
from netstate.firewall.rules import desired_ruleset, ruleset_texts
from netstate.kernel.iptables import IptablesFirewall
from netstate.kernel.netns import entered, netns_path
from tests.kernel.portnet import iptables_save, marked_rules

pytestmark = pytest.mark.root


def state_with(*extra) -> State:
    return fold([
        NetworkCreated(network="web", subnet=IPv4Network("10.44.0.0/24"), gateway=IPv4Address("10.44.0.1"), bridge="nsweb0"),
        AddressAllocated(network="web", endpoint="c1", address=IPv4Address("10.44.0.2")),
        PortMapped(network="web", endpoint="c1", protocol=Protocol.TCP, host_ip=IPv4Address("0.0.0.0"), host_port=8080, container_ip=IPv4Address("10.44.0.2"), container_port=80),
        PortMapped(network="web", endpoint="c1", protocol=Protocol.UDP, host_ip=IPv4Address("127.0.0.1"), host_port=5353, container_ip=IPv4Address("10.44.0.2"), container_port=53),
        *extra,
    ])


def sync(netns: str, state: State):
    with entered(netns_path(netns)):
        return IptablesFirewall().sync(desired_ruleset(state))


def iptables(netns: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "iptables-legacy", "-w", *args], check=True, capture_output=True, text=True)


class TestSync:
    def test_sync_installs_exactly_the_desired_rules(self, host_ns):
        state = state_with()

        changes = sync(host_ns, state)

        assert changes.changed
        assert marked_rules(host_ns) == ruleset_texts(desired_ruleset(state))

    def test_many_bindings_of_shared_shapes_are_written_exactly(self, host_ns):
        extra = [AddressAllocated(network="web", endpoint="c2", address=IPv4Address("10.44.0.3"))]
        for index in range(300):
            endpoint, address = ("c1", "10.44.0.2") if index % 2 else ("c2", "10.44.0.3")
            host_ip = "0.0.0.0" if index % 3 else "192.0.2.10"
            protocol = (Protocol.TCP, Protocol.UDP, Protocol.SCTP)[index % 3]
            extra.append(PortMapped(
                network="web", endpoint=endpoint, protocol=protocol, host_ip=IPv4Address(host_ip),
                host_port=30000 + index, container_ip=IPv4Address(address), container_port=1000 + index,
            ))
        state = state_with(*extra)

        sync(host_ns, state)

        assert marked_rules(host_ns) == ruleset_texts(desired_ruleset(state))
        assert not sync(host_ns, state).changed

    def test_second_sync_changes_nothing(self, host_ns):
        sync(host_ns, state_with())
        before = iptables_save(host_ns)

        changes = sync(host_ns, state_with())

        assert not changes.changed
        assert _rules_only(iptables_save(host_ns)) == _rules_only(before)

    def test_rules_of_other_programs_are_left_alone(self, host_ns):
        iptables(host_ns, "-A", "FORWARD", "-s", "10.9.9.9/32", "-j", "ACCEPT")
        iptables(host_ns, "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "22", "-j", "DNAT", "--to-destination", "10.9.9.9:22")
        foreign_before = _foreign(iptables_save(host_ns))

        sync(host_ns, state_with())
        sync(host_ns, State())

        assert _foreign(iptables_save(host_ns)) == foreign_before
        assert marked_rules(host_ns) == {}
        assert "NETSTATE" not in iptables_save(host_ns)

    def test_stale_and_duplicate_rules_are_removed(self, host_ns):
        sync(host_ns, state_with())
        stale = ["-t", "nat", "-A", "NETSTATE", "-p", "tcp", "-m", "tcp", "--dport", "1", "-m", "comment", "--comment", "netstate web old", "-j", "DNAT", "--to-destination", "10.44.0.9:1"]
        duplicate = ["-t", "nat", "-A", "NETSTATE", "-p", "tcp", "-m", "tcp", "--dport", "8080", "-m", "comment", "--comment", "netstate web c1", "-j", "DNAT", "--to-destination", "10.44.0.2:80"]
        iptables(host_ns, *stale)
        iptables(host_ns, *duplicate)

        changes = sync(host_ns, state_with())

        assert len(changes.removed) == 2
        assert marked_rules(host_ns) == ruleset_texts(desired_ruleset(state_with()))

    def test_flushed_chain_is_refilled(self, host_ns):
        sync(host_ns, state_with())
        iptables(host_ns, "-t", "nat", "-F", "NETSTATE")
        iptables(host_ns, "-F", "FORWARD")

        changes = sync(host_ns, state_with())

        assert changes.added
        assert marked_rules(host_ns) == ruleset_texts(desired_ruleset(state_with()))

    def test_icc_switches_never_grow_the_table(self, host_ns):
        state = state_with()
        sync(host_ns, state)
        size = len(_rules_only(iptables_save(host_ns)))

        for icc in [False, True] * 5 + [False]:
            fold([IccChanged(network="web", icc=icc)], state)
            sync(host_ns, state)

        forward = marked_rules(host_ns)[("filter", "NETSTATE-FORWARD")]
        assert len(_rules_only(iptables_save(host_ns))) == size
        assert forward[-1] == '-A NETSTATE-FORWARD -i nsweb0 -o nsweb0 -m comment --comment "netstate web" -j DROP'
        assert sum(t.endswith("-j DROP") for t in forward) == 1


def _rules_only(saved: str) -> list[str]:
    return [line for line in saved.splitlines() if line.startswith("-A ")]


def _foreign(saved: str) -> list[str]:
    return [line for line in _rules_only(saved) if "netstate" not in line and "NETSTATE" not in line]
