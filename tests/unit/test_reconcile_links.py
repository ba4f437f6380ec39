"""The pure side of the links kind: desired links from a State, and the diff against facts."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from netstate.actions import EnsureBridge, EnsureVeth, RemoveStaleLink
from netstate.domain.decide import veth_name
from netstate.domain.state import Lease, Network, State
from netstate.kernel.marks import owner_alias, staging_name
from netstate.reconcile import Drift, plan_repair
from netstate.reconcile.links import LinkFacts, LinksKind, ObservedLinks, PeerFacts

KIND = LinksKind()
NETNS = "/run/netns/c1"
HOST = veth_name("web", "c1")


def one_endpoint_state() -> State:
    state = State()
    state.networks["web"] = Network(
        name="web", subnet=IPv4Network("192.0.2.0/24"), gateway=IPv4Address("192.0.2.1"), bridge="nsweb0"
    )
    state.leases[("web", "c1")] = Lease(
        network="web", endpoint="c1", address=IPv4Address("192.0.2.2"),
        netns=NETNS, ifname="eth0", host_ifname=HOST,
    )
    state.leases[("web", "c2")] = Lease(network="web", endpoint="c2", address=IPv4Address("192.0.2.3"))
    return state


def bridge_facts(**changes) -> LinkFacts:
    facts = LinkFacts(
        name="nsweb0", kind="bridge", index=2, up=True, alias=owner_alias("web"),
        addresses=(IPv4Interface("192.0.2.1/24"),),
    )
    return replace(facts, **changes)


def veth_facts(**changes) -> LinkFacts:
    facts = LinkFacts(
        name=HOST, kind="veth", index=3, up=True, alias=owner_alias("c1"), master="nsweb0", peer_index=7,
    )
    return replace(facts, **changes)


def peer_facts(**changes) -> PeerFacts:
    facts = PeerFacts(
        index=7, peer_index=3, up=True, loopback_up=True,
        addresses=(IPv4Interface("192.0.2.2/24"),), gateways=(IPv4Address("192.0.2.1"),),
    )
    return replace(facts, **changes)


def diff(links: list[LinkFacts], peer: PeerFacts | None = None, gone: frozenset = frozenset()):
    desired = KIND.desired(one_endpoint_state())
    peers = {HOST: peer if peer is not None else peer_facts()}
    observed = ObservedLinks(links={l.name: l for l in links}, peers=peers, gone=gone)
    return KIND.diff(desired, observed)


def problems(findings) -> list[tuple[str, str, str]]:
    return [(d.kind, d.object, d.problem) for d in findings.drifts]


class TestDesired:
    def test_desired_has_one_bridge_per_network(self):
        desired = KIND.desired(one_endpoint_state())
        assert [b.name for b in desired.bridges] == ["nsweb0"]
        assert desired.bridges[0].address == IPv4Interface("192.0.2.1/24")

    def test_desired_plumbs_only_leases_with_namespace(self):
        desired = KIND.desired(one_endpoint_state())
        assert [v.endpoint for v in desired.veths] == ["c1"]
        assert desired.veths[0].address == IPv4Interface("192.0.2.2/24")
        assert desired.recorded == {HOST}


class TestDiffInSync:
    def test_in_sync_reports_nothing(self):
        findings = diff([bridge_facts(), veth_facts()])
        assert findings.drifts == []
        assert findings.notices == []
        assert findings.checked == {"bridge": 1, "veth": 1}

    def test_foreign_links_are_ignored(self):
        foreign = [
            LinkFacts(name="docker0", kind="bridge", index=10, up=True),
            LinkFacts(name="veth1234", kind="veth", index=11, up=True, master="docker0"),
            LinkFacts(name="nsv0123456789", kind="dummy", index=12, up=True),
            LinkFacts(name="lo", kind="", index=1, up=True),
        ]
        assert diff([bridge_facts(), veth_facts(), *foreign]).drifts == []

    def test_adopted_bridge_without_mark_is_in_sync(self):
        assert diff([bridge_facts(alias=None), veth_facts()]).drifts == []


class TestBridgeDrift:
    @pytest.mark.parametrize(
        ("bridge", "problem"),
        [
            (None, "missing"),
            (bridge_facts(up=False), "down"),
            (bridge_facts(addresses=(IPv4Interface("198.51.100.1/24"),)), "address"),
            (bridge_facts(addresses=()), "address"),
            (bridge_facts(addresses=(IPv4Interface("192.0.2.1/24"), IPv4Interface("198.51.100.1/24"))), "address"),
        ],
    )
    def test_bridge_drift_is_repaired_by_ensure(self, bridge, problem):
        links = [veth_facts()] + ([bridge] if bridge else [])
        findings = diff(links)
        assert problems(findings) == [("bridge", "nsweb0", problem)]
        (drift,) = findings.drifts
        assert drift.repair == (KIND.desired(one_endpoint_state()).bridges[0],)

    def test_bridge_name_taken_by_other_kind_is_not_repairable(self):
        findings = diff([bridge_facts(kind="dummy"), veth_facts()])
        (drift,) = findings.drifts
        assert drift.problem == "conflict"
        assert drift.repair == ()
        assert "delete or rename" in drift.message


class TestVethDrift:
    @pytest.mark.parametrize(
        ("veth", "problem"),
        [
            (None, "missing"),
            (veth_facts(master=None), "detached"),
            (veth_facts(master="other0"), "detached"),
            (veth_facts(up=False), "down"),
            (veth_facts(alias=None), "unmarked"),
        ],
    )
    def test_host_side_drift_is_repaired_by_ensure(self, veth, problem):
        links = [bridge_facts()] + ([veth] if veth else [])
        findings = diff(links)
        assert problems(findings) == [("veth", HOST, problem)]
        assert isinstance(findings.drifts[0].repair[0], EnsureVeth)

    @pytest.mark.parametrize(
        ("peer", "problem"),
        [
            (peer_facts(index=None), "peer-missing"),
            (peer_facts(index=9), "peer-missing"),
            (peer_facts(peer_index=4), "peer-missing"),
            (peer_facts(addresses=()), "peer-address"),
            (peer_facts(up=False), "peer-down"),
            (peer_facts(loopback_up=False), "peer-down"),
            (peer_facts(gateways=()), "peer-route"),
        ],
    )
    def test_peer_drift_is_repaired_by_ensure(self, peer, problem):
        findings = diff([bridge_facts(), veth_facts()], peer)
        assert problems(findings) == [("veth", HOST, problem)]
        assert isinstance(findings.drifts[0].repair[0], EnsureVeth)

    @pytest.mark.parametrize("gateway", [IPv4Address("198.51.100.1"), None], ids=["other-gateway", "no-gateway"])
    def test_other_default_route_is_left_alone(self, gateway):
        assert diff([bridge_facts(), veth_facts()], peer_facts(gateways=(gateway,))).drifts == []

    def test_extra_container_address_is_not_drift(self):
        peer = peer_facts(addresses=(IPv4Interface("192.0.2.2/24"), IPv4Interface("203.0.113.5/24")))
        assert diff([bridge_facts(), veth_facts()], peer).drifts == []

    def test_unreadable_namespace_is_not_repairable(self):
        findings = diff([bridge_facts(), veth_facts()], peer_facts(error="cannot enter namespace: Invalid argument"))
        (drift,) = findings.drifts
        assert drift.problem == "unreadable"
        assert drift.repair == ()

    def test_gone_namespace_is_a_notice_not_drift(self):
        findings = diff([bridge_facts()], gone=frozenset({NETNS}))
        assert findings.drifts == []
        (notice,) = findings.notices
        assert notice.object == "c1"
        assert NETNS in notice.message

    def test_recorded_veth_of_gone_namespace_is_not_stale(self):
        findings = diff([bridge_facts(), veth_facts()], gone=frozenset({NETNS}))
        assert findings.drifts == []


class TestStaleLinks:
    @pytest.mark.parametrize(
        "link",
        [
            LinkFacts(name="nsold0", kind="bridge", index=20, up=True, alias=owner_alias("old")),
            LinkFacts(name=staging_name("nsweb0"), kind="bridge", index=21, up=False),
            LinkFacts(name=staging_name("nsnew0"), kind="bridge", index=22, up=False, alias=owner_alias("new")),
            LinkFacts(name=veth_name("web", "gone"), kind="veth", index=23, up=True, alias=owner_alias("gone")),
            LinkFacts(name=veth_name("web", "half"), kind="veth", index=24, up=False),
        ],
        ids=["marked-bridge", "staging-unmarked", "staging-marked", "marked-veth", "unmarked-veth"],
    )
    def test_stale_netstate_link_is_removed(self, link):
        findings = diff([bridge_facts(), veth_facts(), link])
        assert problems(findings) == [(link.kind, link.name, "stale")]
        assert findings.drifts[0].repair == (RemoveStaleLink(name=link.name, kind=link.kind),)

    def test_stale_removal_runs_before_ensures(self):
        stale = LinkFacts(name=veth_name("web", "gone"), kind="veth", index=23, up=True, alias=owner_alias("gone"))
        findings = diff([stale])
        actions = plan_repair(findings.drifts)
        assert [type(a) for a in actions] == [RemoveStaleLink, EnsureBridge, EnsureVeth]


class TestPlanRepair:
    def test_shared_action_is_planned_once(self):
        findings = diff([bridge_facts(up=False, addresses=()), veth_facts()])
        assert len(findings.drifts) == 2
        assert plan_repair(findings.drifts) == [findings.drifts[0].repair[0]]

    def test_unrepairable_drift_plans_nothing(self):
        drift = Drift("bridge", "x", "conflict", "bridge", "dummy", "x is a dummy")
        assert plan_repair([drift]) == []
