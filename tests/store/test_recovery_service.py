"""Check, restore and the effect sequence, on a real SQLite file and the fake kernel."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update

from netstate.actions import EnsureVeth, RemoveVeth
from netstate.bootstrap import open_service
from netstate.domain.decide import veth_name
from netstate.domain.state import fold
from netstate.errors import KernelError, TeardownFailed
from netstate.kernel.fake import FakeLink
from netstate.kernel.marks import owner_alias
from netstate.store import projections
from netstate.store.eventlog import read_events
from netstate.store.schema import checkpoints, leases


@pytest.fixture
def service(tmp_path):
    netstate = open_service(tmp_path / "netstate.db", kernel="fake")
    yield netstate
    netstate.close()


@pytest.fixture
def netns(tmp_path):
    """A path that stands for a container namespace; the fake kernel only needs it to exist."""
    path = tmp_path / "c1"
    path.touch()
    return str(path)


@pytest.fixture
def plumbed(service, netns):
    service.create_network("web", subnet="192.0.2.0/24", bridge="nsweb0")
    service.allocate("c1", network="web", netns=netns)
    service.allocate("c2", network="web")
    return service


def events_of(service) -> list:
    with service.store.read() as connection:
        return [r.event for r in read_events(connection)]


def problems(report) -> list[tuple[str, str]]:
    return [(d.kind, d.problem) for d in report.drifts]


class TestCheck:
    def test_check_in_sync_after_commands(self, plumbed):
        report = plumbed.check()
        assert report.in_sync
        assert report.drifts == []
        assert report.checked == {"bridge": 1, "veth": 1, "sysctl": 2, "mapping": 0, "rule": 10}

    def test_check_reports_missing_bridge_and_changes_nothing(self, plumbed):
        del plumbed.kernel.links.links["nsweb0"]
        report = plumbed.check()
        assert not report.in_sync
        assert problems(report) == [("bridge", "missing")]
        assert "nsweb0" not in plumbed.kernel.links.links

    def test_repair_restores_bridge_and_second_repair_changes_nothing(self, plumbed):
        del plumbed.kernel.links.links["nsweb0"]
        first = plumbed.check(repair=True)
        assert first.in_sync
        assert first.remaining == []
        assert len(first.changes) == 1
        second = plumbed.check(repair=True)
        assert second.drifts == []
        assert second.changes == []

    def test_repair_removes_stale_netstate_veth_only(self, plumbed):
        links = plumbed.kernel.links.links
        stale = veth_name("web", "old")
        links[stale] = FakeLink(stale, "veth", up=True, alias=owner_alias("old"), master="nsweb0")
        links["veth-foreign"] = FakeLink("veth-foreign", "veth", up=True, master="nsweb0")
        report = plumbed.check(repair=True)
        assert problems(report) == [("veth", "stale")]
        assert stale not in links
        assert "veth-foreign" in links

    def test_gone_namespace_is_noticed_but_in_sync(self, plumbed, netns):
        plumbed.kernel.links.gone_netns.add(netns)
        del plumbed.kernel.links.links[veth_name("web", "c1")]
        report = plumbed.check()
        assert report.in_sync
        assert [n.object for n in report.notices] == ["c1"]


class TestProjections:
    def test_checkpoint_behind_is_reported_and_rebuilt(self, plumbed):
        with plumbed.store.write() as connection:
            connection.execute(update(checkpoints).values(seq=1))
        report = plumbed.check()
        assert problems(report) == [("projections", "behind")]
        restored = plumbed.restore()
        assert restored.rebuilt == len(events_of(plumbed))
        assert restored.in_sync
        assert plumbed.check().drifts == []

    def test_missing_lease_row_is_found_by_count(self, plumbed):
        with plumbed.store.write() as connection:
            connection.execute(delete(leases).where(leases.c.endpoint == "c1"))
        report = plumbed.check()
        assert problems(report) == [("projections", "count")]
        # The kernel is compared with a fold of the log, so c1's veth is not taken for stale.
        assert not any(d.problem == "stale" for d in report.drifts)
        plumbed.restore()
        assert plumbed.attachment("c1", "web").lease.netns is not None

    def test_changed_row_is_found_only_by_deep_check(self, plumbed):
        with plumbed.store.write() as connection:
            connection.execute(update(leases).where(leases.c.endpoint == "c2").values(address="192.0.2.200"))
        assert plumbed.check().drifts == []
        report = plumbed.check(deep=True)
        assert problems(report) == [("projections", "differs")]
        plumbed.restore(deep=True)
        assert str(plumbed.attachment("c2", "web").lease.address) == "192.0.2.3"

    def test_dropped_table_is_rebuilt(self, plumbed):
        with plumbed.store.write() as connection:
            connection.execute(text("DROP TABLE leases"))
        report = plumbed.check()
        assert problems(report) == [("projections", "unreadable")]
        plumbed.restore()
        assert {a.lease.endpoint for a in plumbed.attachments()} == {"c1", "c2"}

    def test_rebuild_equals_fold_of_log(self, plumbed):
        plumbed.release("c2")
        plumbed.rebuild()
        with plumbed.store.read() as connection:
            assert projections.read_state(connection) == fold(events_of(plumbed))


class TestEffects:
    def test_failed_veth_is_compensated(self, service, netns):
        service.create_network("web", subnet="192.0.2.0/24", bridge="nsweb0")
        service.kernel.links.fail_on.add(EnsureVeth)
        with pytest.raises(KernelError):
            service.allocate("c1", network="web", netns=netns)
        last = events_of(service)[-1]
        assert last.type == "AddressReleased"
        assert last.reason.startswith("effect failed")
        assert service.attachments() == []

    def test_release_attempts_every_step_and_raises_all(self, service, tmp_path):
        service.create_network("a", subnet="192.0.2.0/24", bridge="nsa0")
        service.create_network("b", subnet="198.51.100.0/24", bridge="nsb0")
        for network in ("a", "b"):
            path = tmp_path / network
            path.touch()
            service.allocate("c1", network=network, netns=str(path))
        service.kernel.links.fail_on.add(RemoveVeth)
        with pytest.raises(TeardownFailed) as caught:
            service.release("c1")
        assert len(caught.value.exceptions) == 2
        # The record says released; the veths left behind are stale and repair removes them.
        assert service.attachments() == []
        service.kernel.links.fail_on.clear()
        report = service.check(repair=True)
        assert problems(report) == [("veth", "stale"), ("veth", "stale")]
        assert report.in_sync

    def test_repeated_allocate_converges_links(self, plumbed, netns):
        links = plumbed.kernel.links.links
        del links["nsweb0"]
        del links[veth_name("web", "c1")]
        count = len(events_of(plumbed))
        plumbed.allocate("c1", network="web", netns=netns)
        assert len(events_of(plumbed)) == count
        assert {"nsweb0", veth_name("web", "c1")} <= set(links)

    def test_allocate_without_namespace_touches_no_kernel(self, plumbed):
        applied = len(plumbed.kernel.links.applied)
        plumbed.allocate("c3", network="web")
        assert len(plumbed.kernel.links.applied) == applied
