"""Property: the leases the views return for a time equal those of a fold of the log up to it."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from ipaddress import IPv4Address
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netstate.domain.events import PortMapped, PortUnmapped, Protocol
from netstate.domain.state import BindingKey
from tests.audit_script import Script, utc

ENDPOINTS = ("e1", "e2", "e3", "e4")
# A /29 with its gateway at .1 leaves .2 to .6, so four endpoints reuse them often.
SUBNET = "10.9.0.0/29"
ADDRESSES = [IPv4Address("10.9.0.0") + i for i in range(2, 7)]
PORT_KEYS = [
    BindingKey(Protocol.TCP, IPv4Address("0.0.0.0"), 80),
    BindingKey(Protocol.TCP, IPv4Address("127.0.0.1"), 80),
    BindingKey(Protocol.UDP, IPv4Address("0.0.0.0"), 80),
]

steps = st.lists(
    st.tuples(
        st.sampled_from(["allocate", "allocate-at", "release", "map", "unmap"]),
        st.sampled_from(ENDPOINTS),
        st.integers(min_value=0, max_value=len(ADDRESSES) - 1),
        st.integers(min_value=0, max_value=len(PORT_KEYS) - 1),
        # Minutes to the next step; 0 puts two steps at the same time.
        st.integers(min_value=0, max_value=2),
    ),
    min_size=1,
    max_size=25,
)


def run_step(script: Script, step) -> None:
    """Apply one step through the service, or skip it when the state does not allow it."""
    action, endpoint, address_index, key_index, _gap = step
    netstate = script.netstate
    state = netstate.state()
    lease = state.leases.get(("net", endpoint))
    key = PORT_KEYS[key_index]
    if action == "allocate" and lease is None and len(state.leases) < len(ADDRESSES):
        netstate.allocate(endpoint, network="net")
    elif action == "allocate-at" and lease is None and ADDRESSES[address_index] not in state.leases_on("net"):
        netstate.allocate(endpoint, network="net", address=ADDRESSES[address_index])
    elif action == "release" and lease is not None:
        netstate.release(endpoint)
    elif action == "map" and lease is not None and key not in state.bindings:
        script.append(
            PortMapped(
                network="net", endpoint=endpoint, protocol=key.protocol, host_ip=key.host_ip,
                host_port=key.host_port, container_ip=lease.address, container_port=8000,
            )
        )
    elif action == "unmap" and key in state.bindings and state.bindings[key].endpoint == endpoint:
        binding = state.bindings[key]
        script.append(
            PortUnmapped(
                network="net", endpoint=endpoint, protocol=key.protocol, host_ip=key.host_ip,
                host_port=key.host_port, container_ip=binding.container_ip,
                container_port=binding.container_port,
            )
        )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_who_agrees_with_fold_at_every_time(history):
    with tempfile.TemporaryDirectory() as directory:
        script = Script(Path(directory) / "netstate.db")
        script.as_user("08:00", "root", "network create net").create_network("net", subnet=SUBNET, bridge="nsnet0")
        times = [utc("08:00")]
        for step in history:
            script.now += timedelta(minutes=step[-1])
            run_step(script, step)
            times.append(script.now)
        netstate = script.netstate

        for moment in sorted(set(times)) + [times[-1] + timedelta(minutes=1)]:
            folded = netstate.state_at(moment).state
            for address in ADDRESSES:
                expected = sorted(lease.endpoint for lease in folded.leases.values() if lease.address == address)
                holders = sorted(lease.endpoint for lease in netstate.who(str(address), at=moment).holders)
                assert holders == expected, f"{address} at {moment}"
            for key in PORT_KEYS:
                spec = f"{key.host_port}/{key.protocol.value}"
                bound = [b.endpoint for k, b in folded.bindings.items() if (k.protocol, k.host_port) == (key.protocol, key.host_port)]
                found = [b.endpoint for b in netstate.who(spec, at=moment).holders]
                assert sorted(found) == sorted(bound), f"{spec} at {moment}"
        netstate.close()
