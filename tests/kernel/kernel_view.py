"""The record's implied state and the kernel's actual state, each read on its own path.

The kernel side is read with `ip -j` in each namespace; the record side is a fold of the event
log, read without the projections. `assert_converged` compares the two the way the crash and
fault tests need: every recorded object present and correct, nothing netstate-made left over,
no address held twice.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from netstate.domain.state import State, fold
from netstate.store import projections
from netstate.store.engine import create_sqlite_engine
from netstate.store.eventlog import EventStore, Recorded, read_events

NETNS_DIR = "/run/netns/"
OWNED_NAME = re.compile(r"(nsv|nstmp)[0-9a-f]{10}")


@dataclass(frozen=True)
class Record:
    events: list[Recorded]
    folded: State
    projected: State


def read_record(db: Path) -> Record:
    """Read the log and the projections of the database at `db`."""
    engine = create_sqlite_engine(db)
    try:
        with EventStore(engine).read() as connection:
            events = list(read_events(connection))
            projected = projections.read_state(connection)
    finally:
        engine.dispose()
    return Record(events=events, folded=fold(r.event for r in events), projected=projected)


def ip_links(netns: str) -> dict[str, dict]:
    """Return the links of a namespace by name, with addresses, as `ip -j -d addr show` gives."""
    done = subprocess.run(
        ["ip", "-j", "-d", "-n", netns, "addr", "show"], capture_output=True, text=True, check=True
    )
    return {link["ifname"]: link for link in json.loads(done.stdout)}


def ipv4(link: dict) -> list[IPv4Interface]:
    return [IPv4Interface(f"{a['local']}/{a['prefixlen']}") for a in link.get("addr_info", []) if a["family"] == "inet"]


def default_gateways(netns: str) -> list[str]:
    done = subprocess.run(
        ["ip", "-j", "-n", netns, "route", "show", "default"], capture_output=True, text=True, check=True
    )
    return [route.get("gateway") for route in json.loads(done.stdout)]


def is_netstate_link(link: dict) -> bool:
    alias = link.get("ifalias") or ""
    return alias.startswith("netstate:") or OWNED_NAME.fullmatch(link["ifname"]) is not None


def assert_record_consistent(record: Record) -> None:
    """The projections equal a fold of the log, and no address is held twice."""
    assert record.projected == record.folded, "projections differ from a fold of the log"
    seqs = [r.seq for r in record.events]
    assert seqs == sorted(set(seqs)), "event seqs are not strictly increasing"
    held: dict[tuple[str, str], str] = {}
    for lease in record.folded.leases.values():
        key = (lease.network, str(lease.address))
        assert key not in held, f"{lease.address} on {lease.network} held by {held.get(key)} and {lease.endpoint}"
        held[key] = lease.endpoint


def assert_converged(db: Path, host_ns: str, containers: list[str]) -> Record:
    """Assert that the kernel contains exactly what the record implies; return the record."""
    record = read_record(db)
    assert_record_consistent(record)
    state = record.folded
    host = ip_links(host_ns)

    # Bridges: present, up, with exactly the gateway address, marked.
    expected_links = set()
    for network in state.networks.values():
        link = host.get(network.bridge)
        assert link is not None, f"bridge {network.bridge} missing"
        assert link.get("linkinfo", {}).get("info_kind") == "bridge", f"{network.bridge} is not a bridge"
        assert "UP" in link["flags"], f"bridge {network.bridge} is down"
        gateway = IPv4Interface(f"{network.gateway}/{network.subnet.prefixlen}")
        assert ipv4(link) == [gateway], f"bridge {network.bridge} carries {ipv4(link)}"
        assert link.get("ifalias") == f"netstate:{network.name}", f"bridge {network.bridge} unmarked"
        expected_links.add(network.bridge)

    # Veths of endpoints whose namespace exists: host side on the bridge, peer configured.
    live = {name for name in containers if Path(NETNS_DIR + name).exists()}
    plumbed_in: dict[str, list[str]] = {}
    gateways: dict[str, set[str]] = {}
    for lease in state.leases.values():
        if not lease.netns or lease.netns.removeprefix(NETNS_DIR) not in live:
            continue
        network = state.networks[lease.network]
        container = lease.netns.removeprefix(NETNS_DIR)
        link = host.get(lease.host_ifname)
        assert link is not None, f"veth {lease.host_ifname} of {lease.endpoint} missing"
        assert link.get("master") == network.bridge, f"veth {lease.host_ifname} not on {network.bridge}"
        assert "UP" in link["flags"], f"veth {lease.host_ifname} is down"
        assert link.get("ifalias") == f"netstate:{lease.endpoint}", f"veth {lease.host_ifname} unmarked"
        inside = ip_links(container)
        peer = inside.get(lease.ifname)
        assert peer is not None, f"{lease.ifname} missing in {container}"
        assert peer.get("link_index") == link["ifindex"], f"{lease.ifname} in {container} is not the veth's peer"
        assert "UP" in peer["flags"], f"{lease.ifname} in {container} is down"
        assert "UP" in inside["lo"]["flags"], f"lo in {container} is down"
        address = IPv4Interface(f"{lease.address}/{network.subnet.prefixlen}")
        assert address in ipv4(peer), f"{lease.ifname} in {container} lacks {address}"
        expected_links.add(lease.host_ifname)
        plumbed_in.setdefault(container, []).append(lease.ifname)
        gateways.setdefault(container, set()).add(str(network.gateway))

    # Each container routes by default through one of its networks: the first one plumbed.
    for container, allowed in gateways.items():
        found = default_gateways(container)
        assert len(found) == 1 and found[0] in allowed, f"default routes {found} in {container}, expected one of {allowed}"

    # Nothing netstate made is left over, in the managed namespace or in a container.
    leftover = {name for name, link in host.items() if is_netstate_link(link)} - expected_links
    assert not leftover, f"links left over in {host_ns}: {sorted(leftover)}"
    seen: dict[str, str] = {}
    for container in sorted(live):
        for name, link in ip_links(container).items():
            if link.get("linkinfo", {}).get("info_kind") != "veth":
                continue
            assert name in plumbed_in.get(container, []), f"veth {name} left over in {container}"
            for address in ipv4(link):
                where = f"{container}/{name}"
                assert str(address.ip) not in seen, f"{address.ip} held by {seen.get(str(address.ip))} and {where}"
                seen[str(address.ip)] = where
    return record
