"""The in-memory state between commands must follow what other processes append."""

from netstate.bootstrap import open_service
from netstate.store import current, projections


def projected(service):
    with service.store.read() as connection:
        return projections.read_state(connection)


def test_two_services_see_each_others_events(db_path):
    first = open_service(db_path, kernel="fake")
    second = open_service(db_path, kernel="fake")
    first.create_network("web", subnet="192.0.2.0/29", bridge="nsweb0")

    handed = []
    for i in range(5):
        service = first if i % 2 == 0 else second
        handed.append(service.allocate(f"c{i}", network="web").lease.address)
    assert len(set(handed)) == 5

    second.release("c0")
    # `first` handed out c0 itself and must learn of the release from the log.
    assert ("web", "c0") not in first.state().leases
    assert first.state() == second.state() == projected(first)
    first.close()
    second.close()


def test_far_behind_reloads_projections(db_path, monkeypatch):
    monkeypatch.setattr(current, "CATCH_UP_LIMIT", 3)
    first = open_service(db_path, kernel="fake")
    second = open_service(db_path, kernel="fake")
    first.create_network("web", subnet="192.0.2.0/24", bridge="nsweb0")
    assert first.state().networks["web"].last_address is None

    for i in range(6):
        second.allocate(f"c{i}", network="web")
    assert first.state() == projected(first)
    assert first.allocate("c9", network="web").lease.address not in {
        a.lease.address for a in second.attachments() if a.lease.endpoint != "c9"
    }
    first.close()
    second.close()


def test_returned_state_is_a_copy(db_path):
    service = open_service(db_path, kernel="fake")
    service.create_network("web", subnet="192.0.2.0/24", bridge="nsweb0")
    service.allocate("c1", network="web")
    service.state().leases.clear()
    service.state().networks.clear()
    assert [a.lease.endpoint for a in service.attachments()] == ["c1"]
    service.close()
