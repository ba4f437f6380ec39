"""Independent views of what netstate did: `ip -j` for the kernel, sqlite3 for the record."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path


def ip_json(netns: str, *args: str) -> list[dict]:
    """Run `ip -j -n NETNS ARGS` and return its parsed output."""
    done = subprocess.run(["ip", "-j", "-n", netns, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout or "[]")


def link_names(netns: str) -> set[str]:
    return {link["ifname"] for link in ip_json(netns, "link", "show")}


def link(netns: str, name: str) -> dict | None:
    found = [entry for entry in ip_json(netns, "-d", "addr", "show") if entry["ifname"] == name]
    return found[0] if found else None


def ipv4_addresses(netns: str, name: str) -> list[str]:
    entry = link(netns, name)
    assert entry is not None, f"no link {name} in {netns}"
    return [f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", []) if a["family"] == "inet"]


def is_up(netns: str, name: str) -> bool:
    entry = link(netns, name)
    assert entry is not None, f"no link {name} in {netns}"
    return "UP" in entry["flags"]


def kernel_snapshot(netns: str) -> list[tuple]:
    """Links with their flags and addresses, to compare before and after a refused command."""
    return sorted(
        (e["ifname"], tuple(sorted(e["flags"])), tuple(sorted(a["local"] for a in e.get("addr_info", []))))
        for e in ip_json(netns, "addr", "show")
    )


def event_types(db: Path) -> list[str]:
    """Types of the stored events in order; empty when the database was never created."""
    if not Path(db).exists():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return [t for (t,) in connection.execute("SELECT type FROM events ORDER BY seq")]
        except sqlite3.OperationalError:
            return []
