"""Property: after any sequence of port commands, the projections equal a fold of the log."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netstate.bootstrap import open_service
from netstate.domain.portspec import WILDCARD
from netstate.domain.state import State
from netstate.errors import NetstateError
from netstate.store import projections
from netstate.store.eventlog import read_events

ENDPOINTS = ("c1", "c2", "c3")
specs = st.one_of(
    st.builds(lambda ip, port, proto: f"{ip}:{port}:80/{proto}", st.sampled_from(["0.0.0.0", "192.0.2.10"]), st.integers(60000, 60003), st.sampled_from(["tcp", "udp"])),
    st.builds(lambda n, proto: f"1-{n}/{proto}", st.integers(1, 3), st.sampled_from(["tcp", "udp", "sctp"])),
    st.sampled_from(["abc", "70000", "80/icmp"]),
)
commands = st.one_of(
    st.tuples(st.just("map"), st.sampled_from(ENDPOINTS), st.lists(specs, min_size=1, max_size=3)),
    st.tuples(st.just("unmap"), st.sampled_from(ENDPOINTS), st.lists(specs, min_size=1, max_size=2)),
    st.tuples(st.just("release"), st.sampled_from(ENDPOINTS), st.just(None)),
    st.tuples(st.just("allocate"), st.sampled_from(ENDPOINTS), st.just(None)),
    st.tuples(st.just("range"), st.sampled_from(["60000-60003", "60002-60005", "65535-65535"]), st.just(None)),
    st.tuples(st.just("proxy"), st.sampled_from(["true", "false"]), st.just(None)),
)


def run(service, command) -> None:
    kind, name, argument = command
    if kind == "map":
        service.map_ports(name, argument)
    elif kind == "unmap":
        service.unmap_ports(name, argument)
    elif kind == "release":
        service.release(name)
    elif kind == "allocate":
        service.allocate(name, network="web")
    elif kind == "range":
        service.set_setting("port-range", name)
    else:
        service.set_setting("userland-proxy", name)


def fold_log(service) -> State:
    state = State()
    with service.store.read() as connection:
        for recorded in read_events(connection):
            state.apply(recorded.event)
    return state


def assert_same(projected: State, folded: State) -> None:
    assert projected.bindings == folded.bindings
    assert projected.port_cursors == folded.port_cursors
    assert projected.settings == folded.settings
    assert projected.leases == folded.leases


def assert_one_holder_per_port(state: State) -> None:
    held = sorted(state.bindings)
    for i, a in enumerate(held):
        for b in held[i + 1:]:
            if a.protocol == b.protocol and a.host_port == b.host_port:
                assert a.host_ip != b.host_ip and WILDCARD not in (a.host_ip, b.host_ip), (a, b)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands, max_size=15))
def test_port_projections_equal_fold_of_log(sequence):
    with tempfile.TemporaryDirectory() as directory:
        service = open_service(Path(directory) / "netstate.db", kernel="fake")
        try:
            service.create_network("web", subnet="10.44.0.0/24", bridge="nsweb0")
            for endpoint in ENDPOINTS[:2]:
                service.allocate(endpoint, network="web")
            for command in sequence:
                try:
                    run(service, command)
                except NetstateError:
                    pass
                projected = service.state()
                assert_same(projected, fold_log(service))
                assert_one_holder_per_port(projected)

            before = service.state()
            service.rebuild()
            assert_same(service.state(), before)
            with service.store.read() as connection:
                assert projections.checkpoint(connection) > 0
        finally:
            service.close()
