"""Every query of the docs/audit.md cookbook, run against the scripted day, with its answer."""

from __future__ import annotations

import re

import pytest

from netstate.store.readonly import run_readonly_query
from tests.audit_script import build_history, stamp
from tests.conftest import REPO

COOKBOOK = REPO / "docs" / "audit.md"
_BLOCK = re.compile(r"```sql\n(.*?)```", re.S)
_NAME = re.compile(r"-- name: (\S+)\n")

WEB = "web"
EXPECTED: dict[str, tuple[list[str], list[tuple]]] = {
    "who-held-address": (
        ["network", "endpoint", "allocated_at", "released_at"],
        [(WEB, "worker-9", stamp("14:03"), stamp("16:00"))],
    ),
    "endpoints-that-published-port": (
        ["endpoint", "host_ip", "container_ip", "container_port", "mapped_at", "unmapped_at"],
        [
            ("web-1", "0.0.0.0", "10.44.0.2", 80, stamp("09:10"), stamp("12:00")),
            ("web-3", "0.0.0.0", "10.44.0.2", 80, stamp("12:31"), stamp("16:20")),
            ("web-1", "0.0.0.0", "10.44.0.5", 80, stamp("18:01"), None),
        ],
    ),
    "lease-durations-of-endpoint": (
        ["network", "address", "allocated_at", "released_at", "held_seconds"],
        [
            (WEB, "10.44.0.2", stamp("09:05"), stamp("12:00"), 10500.0),
            (WEB, "10.44.0.5", stamp("18:00"), None, None),
        ],
    ),
    "mappings-created-by-user": (
        ["protocol", "host_ip", "host_port", "endpoint", "mapped_at", "unmapped_by", "unmap_reason"],
        [
            ("tcp", "0.0.0.0", 49153, "api-1", stamp("10:01"), "bob", "released"),
            ("udp", "127.0.0.1", 5353, "api-1", stamp("10:02"), "bob", "released"),
            ("tcp", "0.0.0.0", 8080, "web-3", stamp("12:31"), "bob", "released"),
        ],
    ),
    "changes-between-times": (
        ["recorded_at", "type", "network", "endpoint", "summary", "actor_user"],
        [
            (stamp("14:00"), "PortUnmapped", WEB, "api-1", "unmapped 0.0.0.0:49153/tcp: released", "bob"),
            (stamp("14:00"), "PortUnmapped", WEB, "api-1", "unmapped 127.0.0.1:5353/udp: released", "bob"),
            (stamp("14:00"), "AddressReleased", WEB, "api-1", "released 10.44.0.7: released", "bob"),
            (stamp("14:03"), "AddressAllocated", WEB, "worker-9", "allocated 10.44.0.7", "carol"),
            (stamp("14:30"), "AddressAllocated", WEB, "batch-1", "allocated 10.44.0.4", "dave"),
            (
                stamp("14:30"), "AddressReleased", WEB, "batch-1",
                "released 10.44.0.4: effect failed: fake failure of EnsureVeth", "dave",
            ),
        ],
    ),
    "addresses-reused-within-an-hour": (
        ["network", "address", "released_by_endpoint", "released_at", "next_endpoint", "allocated_at", "minutes_free"],
        [
            (WEB, "10.44.0.2", "web-1", stamp("12:00"), "web-3", stamp("12:30"), 30.0),
            (WEB, "10.44.0.7", "api-1", stamp("14:00"), "worker-9", stamp("14:03"), 3.0),
        ],
    ),
    "addresses-held-at-time": (
        ["address", "endpoint", "allocated_at", "allocated_by"],
        [
            ("10.44.0.3", "web-2", stamp("09:06"), "alice"),
            ("10.44.0.7", "api-1", stamp("10:00"), "bob"),
            ("10.44.0.2", "web-3", stamp("12:30"), "bob"),
        ],
    ),
    "why-this-subnet": (
        ["chosen_subnet", "position", "subnet", "reason"],
        [
            ("10.1.0.0/16", 1, "172.17.0.0/16", "overlaps route 172.17.0.0/16 dev docker0"),
            ("10.1.0.0/16", 2, "10.0.0.0/16", "contains nameserver 10.0.0.2"),
        ],
    ),
    "network-lifecycle": (
        ["network", "change", "recorded_at", "subnet", "icc", "auto_subnet", "rejected_count", "reason", "actor_user"],
        [
            (WEB, "created", stamp("09:00"), "10.44.0.0/24", 1, 0, 0, None, "root"),
            ("db", "created", stamp("09:00:30"), "10.1.0.0/16", 1, 1, 2, None, "root"),
            (WEB, "icc changed", stamp("15:00"), "10.44.0.0/24", 0, None, None, None, "root"),
            ("db", "removed", stamp("17:05"), "10.1.0.0/16", None, None, None, "removed", "root"),
        ],
    ),
    "ports-of-endpoint-at-time": (
        ["protocol", "host_ip", "host_port", "container_ip", "container_port", "dynamic"],
        [
            ("tcp", "0.0.0.0", 49153, "10.44.0.7", 9000, 1),
            ("udp", "127.0.0.1", 5353, "10.44.0.7", 53, 0),
        ],
    ),
    "allocations-undone-by-failures": (
        ["network", "endpoint", "address", "allocated_at", "allocated_by", "release_reason"],
        [(WEB, "batch-1", "10.44.0.4", stamp("14:30"), "dave", "effect failed: fake failure of EnsureVeth")],
    ),
    "addresses-with-several-holders": (
        ["network", "address", "leases", "endpoints"],
        [(WEB, "10.44.0.2", 2, "web-1, web-3"), (WEB, "10.44.0.7", 2, "api-1, worker-9")],
    ),
    "changes-per-user": (
        ["actor_user", "type", "events"],
        [
            ("alice", "AddressAllocated", 3),
            ("alice", "AddressReleased", 2),
            ("alice", "PortMapped", 2),
            ("alice", "PortUnmapped", 1),
            ("bob", "AddressAllocated", 2),
            ("bob", "AddressReleased", 2),
            ("bob", "PortMapped", 3),
            ("bob", "PortUnmapped", 3),
            ("carol", "AddressAllocated", 2),
            ("carol", "AddressReleased", 2),
            ("dave", "AddressAllocated", 1),
            ("dave", "AddressReleased", 1),
            ("root", "IccChanged", 1),
            ("root", "NetworkCreated", 2),
            ("root", "NetworkRemoved", 1),
            ("root", "SettingChanged", 1),
        ],
    ),
    "setting-changes": (
        ["recorded_at", "summary", "actor_user", "actor_command"],
        [(stamp("15:30"), "set dynamic_ports = 50000-50999", "root", "netstate config set")],
    ),
    "open-leases-against-current-state": (
        ["network", "address", "endpoint", "in_current_state"],
        [(WEB, "10.44.0.5", "web-1", 1)],
    ),
}


def cookbook_queries() -> dict[str, str]:
    """Return the cookbook's SQL blocks keyed by the name on their first line."""
    found: dict[str, str] = {}
    for block in _BLOCK.findall(COOKBOOK.read_text()):
        name = _NAME.match(block)
        assert name is not None, f"cookbook query without a '-- name:' first line:\n{block}"
        assert name.group(1) not in found, f"cookbook query name {name.group(1)!r} is used twice"
        found[name.group(1)] = block
    return found


@pytest.fixture(scope="module")
def history_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cookbook") / "netstate.db"
    script = build_history(path)
    script.netstate.close()
    return path


def test_cookbook_has_ten_or_more_questions():
    assert len(cookbook_queries()) >= 10


def test_cookbook_queries_all_have_expected_answers():
    assert sorted(cookbook_queries()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cookbook_query_answers(history_db, name):
    query = cookbook_queries()[name]
    expected_columns, expected_rows = EXPECTED[name]

    result = run_readonly_query(history_db, query)

    assert result.columns == expected_columns
    assert result.rows == expected_rows
