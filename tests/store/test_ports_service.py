"""The port commands of the service on a real SQLite file, with the fake kernel adapters."""

from __future__ import annotations

import pytest

from netstate.bootstrap import open_service
from netstate.domain.events import AddressReleased, PortMapped, PortUnmapped
from netstate.errors import InvalidPortSpec, KernelError, PortInUse
from netstate.store.eventlog import last_seq, read_events


@pytest.fixture
def netstate(tmp_path):
    service = open_service(tmp_path / "netstate.db", kernel="fake")
    service.create_network("web", subnet="10.44.0.0/24", bridge="nsweb0")
    service.allocate("c1", network="web")
    service.allocate("c2", network="web")
    yield service
    service.close()


def events_of(service) -> list:
    with service.store.read() as connection:
        return [r.event for r in read_events(connection)]


def seq(service) -> int:
    with service.store.read() as connection:
        return last_seq(connection)


def rules(service, table: str, chain: str) -> list[str]:
    return service.kernel.forwarding.firewall.rules(table, chain)


class TestMap:
    def test_map_records_rules_and_proxy(self, netstate):
        bindings = netstate.map_ports("c1", ["8080:80", "53/udp"])

        forwarding = netstate.kernel.forwarding
        assert [b.key.host_port for b in bindings] == [8080, 49153]
        assert len(rules(netstate, "nat", "NETSTATE")) == 1 + 2  # RETURN for the bridge, two DNATs
        assert {m.host_port for m in forwarding.proxy.serving} == {8080, 49153}
        assert forwarding.sysctl.values["net/ipv4/ip_forward"] == "1"
        assert forwarding.sysctl.values["net/ipv4/conf/nsweb0/route_localnet"] == "0"
        assert forwarding.conntrack.flushed == [49153]

    def test_dynamic_retry_keeps_its_port(self, netstate):
        first = netstate.map_ports("c1", ["80", "53/udp"])
        before = seq(netstate)
        again = netstate.map_ports("c1", ["80", "53/udp"])

        assert [b.key for b in again] == [b.key for b in first]
        assert seq(netstate) == before
        # A second container port still gets a port of its own.
        other = netstate.map_ports("c1", ["80", "81"])
        assert other[0].key == first[0].key
        assert other[1].key.host_port not in {b.key.host_port for b in first}

    def test_bad_spec_writes_nothing(self, netstate):
        before = seq(netstate)

        with pytest.raises(InvalidPortSpec):
            netstate.map_ports("c1", ["8080:80", "8081:abc"])

        assert seq(netstate) == before
        assert netstate.bindings() == []

    def test_conflict_writes_nothing(self, netstate):
        netstate.map_ports("c1", ["8080:80"])
        before = seq(netstate)

        with pytest.raises(PortInUse, match="held by endpoint 'c1'"):
            netstate.map_ports("c2", ["9090:80", "8080:80"])

        assert seq(netstate) == before

    def test_port_taken_by_other_program_is_compensated(self, netstate):
        proxy = netstate.kernel.forwarding.proxy
        proxy.taken.add(("tcp", "0.0.0.0", 8081))

        with pytest.raises(PortInUse, match="in use by another program"):
            netstate.map_ports("c1", ["8080:80", "8081:81"])

        events = events_of(netstate)[-4:]
        assert [type(e) for e in events] == [PortMapped, PortMapped, PortUnmapped, PortUnmapped]
        assert all(e.reason.startswith("effect failed: host port 0.0.0.0:8081/tcp") for e in events[2:])
        assert netstate.bindings() == []
        assert not any("DNAT" in t for t in rules(netstate, "nat", "NETSTATE"))
        assert proxy.running is False

    def test_port_taken_later_does_not_fail_other_commands(self, netstate):
        netstate.map_ports("c1", ["8080:80"])
        netstate.kernel.forwarding.proxy.taken.add(("tcp", "0.0.0.0", 8080))

        netstate.map_ports("c2", ["9090:80"])
        netstate.set_icc("web", False)

        assert sorted(b.key.host_port for b in netstate.bindings()) == [8080, 9090]
        assert [m.host_port for m in netstate.kernel.forwarding.proxy.serving] == [9090]

    def test_firewall_failure_is_compensated(self, netstate):
        netstate.kernel.forwarding.firewall.fail = True

        with pytest.raises(KernelError, match="fake firewall failure"):
            netstate.map_ports("c1", ["8080:80"])

        assert isinstance(events_of(netstate)[-1], PortUnmapped)
        assert netstate.bindings() == []


class TestUnmapAndRelease:
    def test_unmap_removes_rules_and_flushes_udp(self, netstate):
        netstate.map_ports("c1", ["8080:80", "5353:53/udp"])

        removed = netstate.unmap_ports("c1", ["53/udp"])

        assert [b.key.host_port for b in removed] == [5353]
        assert not any("--dport 5353" in t for t in rules(netstate, "nat", "NETSTATE"))
        assert netstate.kernel.forwarding.conntrack.flushed == [5353, 5353]

    def test_release_unmaps_before_returning_address(self, netstate):
        netstate.map_ports("c1", ["8080:80"])

        netstate.release("c1")

        last = events_of(netstate)[-2:]
        assert [type(e) for e in last] == [PortUnmapped, AddressReleased]
        assert netstate.bindings() == []
        assert not any("DNAT" in t for t in rules(netstate, "nat", "NETSTATE"))
        assert netstate.kernel.forwarding.proxy.running is False


class TestSettingsAndNetworks:
    def test_proxy_off_stops_proxy_and_routes_localhost(self, netstate):
        netstate.map_ports("c1", ["8080:80"])

        assert netstate.set_setting("userland-proxy", "off") == "false"

        forwarding = netstate.kernel.forwarding
        assert forwarding.proxy.running is False
        assert forwarding.sysctl.values["net/ipv4/conf/nsweb0/route_localnet"] == "1"
        assert rules(netstate, "nat", "OUTPUT") == [
            "-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment netstate -j NETSTATE",
        ]

    def test_icc_switch_resyncs(self, netstate):
        netstate.set_icc("web", False)

        assert rules(netstate, "filter", "NETSTATE-FORWARD")[-1].endswith("-j DROP")

    def test_network_rules_follow_create_and_remove(self, netstate):
        netstate.create_network("db", subnet="10.45.0.0/24", bridge="nsdb0")
        assert any("10.45.0.0/24" in t for t in rules(netstate, "nat", "NETSTATE-POSTROUTING"))

        netstate.remove_network("db")

        assert not any("10.45.0.0/24" in t for t in rules(netstate, "nat", "NETSTATE-POSTROUTING"))

    def test_last_network_removal_removes_every_chain(self, netstate):
        netstate.release("c1")
        netstate.release("c2")

        netstate.remove_network("web")

        chains = netstate.kernel.forwarding.firewall.tables.chains
        assert not any(name.startswith("NETSTATE") for _, name in chains)
        assert all(texts == () for texts in chains.values())


class TestInterleavedCommands:
    def test_late_sync_keeps_rules_of_later_command(self, netstate, tmp_path):
        other = open_service(tmp_path / "netstate.db", kernel="fake")
        other.__dict__["kernel"] = netstate.kernel  # one kernel, two processes' worth of service
        first_sync = netstate._sync_forwarding

        def other_command_runs_in_between(events):
            # The other command commits and syncs after this one committed, before it syncs.
            other.map_ports("c2", ["9090:80"])
            first_sync(events)

        netstate._sync_forwarding = other_command_runs_in_between
        try:
            netstate.map_ports("c1", ["8080:80"])
        finally:
            other.close()

        dnat = [t for t in rules(netstate, "nat", "NETSTATE") if "DNAT" in t]
        assert len(dnat) == 2
        assert {m.host_port for m in netstate.kernel.forwarding.proxy.serving} == {8080, 9090}
