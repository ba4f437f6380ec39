"""The forwarding kinds' diffs, driven with plain values and the in-memory adapters."""

from __future__ import annotations

from ipaddress import IPv4Address

from netstate.actions import EnsureSysctl, SyncFirewall, SyncProxy
from netstate.domain.events import Protocol
from netstate.domain.state import Binding, BindingKey
from netstate.firewall.rules import NAT, Rule, Ruleset
from netstate.firewall.sync import ObservedTables
from netstate.kernel.proxy import to_mapping
from netstate.reconcile.forwarding import FirewallKind, ObservedProxy, ProxyKind, SysctlsKind


def binding(port: int) -> Binding:
    key = BindingKey(Protocol.TCP, IPv4Address("0.0.0.0"), port)
    return Binding(key, "web", "c1", IPv4Address("192.0.2.2"), 80)


def test_sysctl_off_is_drift_repaired_by_its_ensure():
    desired = (EnsureSysctl("net/ipv4/ip_forward", "1"),)
    findings = SysctlsKind().diff(desired, {"net/ipv4/ip_forward": "0"})
    assert [(d.kind, d.problem, d.found) for d in findings.drifts] == [("sysctl", "value", "0")]
    assert findings.drifts[0].repair == desired
    assert SysctlsKind().diff(desired, {"net/ipv4/ip_forward": "1"}).drifts == []


def test_proxy_dead_unserved_and_stale():
    desired = (binding(8080), binding(8081))
    kind = ProxyKind()
    dead = kind.diff(desired, ObservedProxy(pid=None))
    assert [(d.object, d.problem) for d in dead.drifts] == [("netstate-proxy", "missing")]
    assert dead.drifts[0].repair == (SyncProxy(desired, None),)
    partial = kind.diff(desired, ObservedProxy(pid=7, serving=frozenset({to_mapping(binding(8080)), to_mapping(binding(9))})))
    assert [(d.object, d.problem) for d in partial.drifts] == [("0.0.0.0:8081/tcp", "missing"), ("0.0.0.0:9/tcp", "stale")]
    idle = kind.diff((), ObservedProxy(pid=7))
    assert [(d.problem, d.repair) for d in idle.drifts] == [("stale", (SyncProxy((), None),))]
    assert kind.diff(desired, ObservedProxy(pid=7, serving=frozenset(map(to_mapping, desired)))).drifts == []


def test_firewall_missing_stale_and_foreign_rules():
    rule = Rule(NAT, "NETSTATE", "RETURN")
    desired = Ruleset(chains=((NAT, "NETSTATE"),), rules=(rule,))
    stale = '-A NETSTATE -s 192.0.2.9/32 -m comment --comment "netstate old" -j RETURN'
    foreign = "-A NETSTATE -s 192.0.2.8/32 -j RETURN"
    observed = ObservedTables({(NAT, "NETSTATE"): (foreign, stale), (NAT, "NETSTATE-OLD"): ()})
    findings = FirewallKind().diff(desired, observed)
    got = {(d.kind, d.object, d.problem) for d in findings.drifts}
    assert got == {("rule", rule.text, "missing"), ("rule", stale, "stale"), ("chain", "nat/NETSTATE-OLD", "stale")}
    assert all(d.repair == (SyncFirewall(desired),) for d in findings.drifts)
    assert all(foreign not in d.object for d in findings.drifts)
