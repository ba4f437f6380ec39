"""Projections against a fold of the log: after rebuild, and under random command sequences."""

import shutil
import sqlite3
import tempfile
from collections import Counter
from ipaddress import IPv4Address
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from netstate.bootstrap import open_service
from netstate.domain.state import State
from netstate.errors import NetstateError, StoreError
from netstate.store import projections
from netstate.store.eventlog import read_events


def fold_log(service) -> tuple[State, list[State]]:
    """Fold the whole log from scratch; also return the state after each event."""
    state = State()
    history = []
    with service.store.read() as connection:
        for recorded in read_events(connection):
            state.apply(recorded.event)
            history.append(State(dict(state.networks), dict(state.leases)))
    return state, history


def projected(service) -> State:
    with service.store.read() as connection:
        return projections.read_state(connection)


def assert_one_holder_per_address(state: State) -> None:
    holders = Counter((lease.network, lease.address) for lease in state.leases.values())
    doubled = [key for key, count in holders.items() if count > 1]
    assert doubled == []


def test_rebuild_equals_incremental_projections(db_path):
    service = open_service(db_path, kernel="fake")
    service.create_network("web", subnet="192.0.2.0/29")
    for endpoint in ("c1", "c2", "c3"):
        service.allocate(endpoint, network="web")
    service.release("c2")
    service.allocate("c4", network="web", address="192.0.2.6")
    service.allocate("c5")
    service.set_icc("web", False)
    before = projected(service)

    # Damage the projections behind netstate's back; rebuild must restore them from the log.
    with sqlite3.connect(db_path) as connection:
        connection.execute("DELETE FROM leases WHERE endpoint = 'c1'")
        connection.execute("UPDATE networks SET last_address = NULL")
    assert projected(service) != before

    assert service.rebuild() == 9
    assert projected(service) == before == fold_log(service)[0]
    service.close()


# Mostly "a", which always exists, so that allocations run into each other and into the limits.
NETWORKS = st.sampled_from(["a", "a", "a", "b"])
SUBNETS = st.sampled_from(["192.0.2.0/29", "192.0.2.8/30", "198.51.100.0/31", "203.0.113.0/28", "192.0.2.0/28"])
ENDPOINTS = st.sampled_from(["e1", "e2", "e3", "e4", "e5", "e6"])


class CommandSequences(RuleBasedStateMachine):
    """Random commands through the service on a real SQLite file (fake kernel)."""

    def __init__(self):
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="netstate-prop-")
        self.service = open_service(Path(self.directory) / "netstate.db", kernel="fake")
        self.refused = Counter()

    def teardown(self):
        self.service.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, command, *args, **kwargs):
        try:
            return command(*args, **kwargs)
        except StoreError:
            raise  # a unique constraint caught what the decision let through
        except NetstateError as err:
            self.refused[type(err).__name__] += 1
            return None

    @initialize(subnet=SUBNETS)
    def first_network(self, subnet):
        self.service.create_network("a", subnet=subnet, bridge="br-a")

    @rule(name=NETWORKS, subnet=SUBNETS)
    def create_network(self, name, subnet):
        self._run(self.service.create_network, name, subnet=subnet, bridge=f"br-{name}")

    @rule(name=NETWORKS)
    def remove_network(self, name):
        self._run(self.service.remove_network, name)

    @rule(endpoint=ENDPOINTS, network=NETWORKS | st.none())
    def allocate(self, endpoint, network):
        attachment = self._run(self.service.allocate, endpoint, network=network)
        if attachment is not None:
            assert attachment.lease.address in attachment.network.subnet
            assert attachment.lease.address != attachment.network.gateway

    @rule(endpoint=ENDPOINTS, network=NETWORKS, offset=st.integers(min_value=-1, max_value=16))
    def allocate_address(self, endpoint, network, offset):
        """Request an address by its offset in the network's subnet; -1 and large ones lie outside."""
        known = self.service.state().networks.get(network)
        base = known.subnet.network_address if known is not None else IPv4Address("192.0.2.0")
        address = str(base + offset) if offset >= 0 else str(base - 1)
        attachment = self._run(self.service.allocate, endpoint, network=network, address=address)
        if attachment is not None:
            assert str(attachment.lease.address) == address

    @rule(endpoint=ENDPOINTS, network=NETWORKS | st.none())
    def release(self, endpoint, network):
        self._run(self.service.release, endpoint, network=network)

    @invariant()
    def fold_equals_projections(self):
        folded, history = fold_log(self.service)
        assert folded == projected(self.service)
        # What the service decides from: the projections folded forward in memory.
        assert self.service.state() == folded
        for state in history:
            assert_one_holder_per_address(state)

    @invariant()
    def leases_only_on_recorded_networks(self):
        state = projected(self.service)
        assert {lease.network for lease in state.leases.values()} <= set(state.networks)


CommandSequences.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_command_sequences = CommandSequences.TestCase
