"""The folded state and its lease table, whose indexes must always agree with the leases."""

import copy
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netstate.domain.state import Lease, LeaseTable, State

A = IPv4Address

_leases = st.builds(
    Lease,
    network=st.sampled_from(["web", "db"]),
    endpoint=st.sampled_from(["c1", "c2", "c3"]),
    address=st.integers(min_value=1, max_value=4).map(lambda i: A("192.0.2.0") + i),
)
_steps = st.lists(st.one_of(_leases, st.tuples(st.sampled_from(["web", "db"]), st.sampled_from(["c1", "c2", "c3"]))))


def assert_indexes_agree(table: LeaseTable, model: dict) -> None:
    assert dict(table.items()) == model
    for network in ("web", "db"):
        expected = {lease.address: lease for lease in model.values() if lease.network == network}
        assert dict(table.on_network(network)) == expected
    for endpoint in ("c1", "c2", "c3"):
        expected = {lease.network: lease for lease in model.values() if lease.endpoint == endpoint}
        assert dict(table.of_endpoint(endpoint)) == expected


@given(_steps)
def test_lease_table_indexes_follow_every_change(steps):
    """A Lease sets (replacing any lease of that endpoint on that network); a key deletes."""
    table, model = LeaseTable(), {}
    for step in steps:
        if isinstance(step, Lease):
            key = (step.network, step.endpoint)
            # Keep addresses unique per network, as the decisions do.
            if any(l.address == step.address and l.network == step.network and k != key for k, l in model.items()):
                continue
            table[key] = model[key] = step
        elif step in model:
            del table[step]
            del model[step]
        assert_indexes_agree(table, model)

    copied, deep = table.copy(), copy.deepcopy(table)
    for key in list(model):
        del copied[key]
        del deep[key]
    assert_indexes_agree(table, model)
    assert_indexes_agree(copied, {})
    assert_indexes_agree(deep, {})


def test_lease_stored_under_wrong_key_rejected():
    with pytest.raises(ValueError, match="stored under"):
        LeaseTable()[("db", "c1")] = Lease("web", "c1", A("192.0.2.2"))


def test_views_are_read_only():
    table = LeaseTable({("web", "c1"): Lease("web", "c1", A("192.0.2.2"))})
    with pytest.raises(TypeError):
        table.on_network("web")[A("192.0.2.3")] = None


def test_state_from_plain_dict_equals_state_from_table():
    lease = Lease("web", "c1", A("192.0.2.2"))
    assert State(leases={("web", "c1"): lease}) == State(leases=LeaseTable({("web", "c1"): lease}))
    assert State(leases={("web", "c1"): lease}).leases_of("c1") == [lease]
