"""Many `netstate allocate` processes at once: distinct addresses and no "database is locked"."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.helpers import event_types

pytestmark = pytest.mark.root

PROCESSES = 30


def start_allocations(db, host_ns, extra=()):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NETSTATE_DB", None)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--db", str(db), "--host-netns", host_ns,
             "allocate", f"c{i}", *extra, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )
        for i in range(PROCESSES)
    ]


def collect(processes):
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        results.append((process.returncode, stdout, stderr))
    return results


def check_distinct(results, db, network):
    failures = [(code, stderr) for code, _out, stderr in results if code != 0]
    assert failures == []
    assert not any("locked" in stderr for _code, _out, stderr in results)
    answers = [json.loads(stdout) for _code, stdout, _err in results]
    assert sorted(a["endpoint"] for a in answers) == sorted(f"c{i}" for i in range(PROCESSES))
    assert {a["network"] for a in answers} == {network}
    assert len({a["address"] for a in answers}) == PROCESSES


def test_thirty_allocations_on_one_database(netstate_cmd, host_ns, db_path):
    netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0")
    results = collect(start_allocations(db_path, host_ns, ("--network", "web")))
    check_distinct(results, db_path, "web")
    assert event_types(db_path) == ["NetworkCreated"] + ["AddressAllocated"] * PROCESSES


def test_thirty_allocations_on_a_new_database(host_ns, db_path):
    # Every process finds no schema and no default network: the migration and the default
    # network must each happen exactly once.
    assert not db_path.exists()
    results = collect(start_allocations(db_path, host_ns))
    check_distinct(results, db_path, "default")
    assert event_types(db_path) == ["NetworkCreated"] + ["AddressAllocated"] * PROCESSES


def test_concurrent_first_allocations_with_netns(host_ns, db_path, make_netns):
    # All processes plan the default network's bridge before their veth; whichever creates
    # it, the others must find it, not fail with "File exists" or "bridge not found".
    containers = [make_netns(f"c{i}") for i in range(8)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NETSTATE_DB", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--db", str(db_path), "--host-netns", host_ns,
             "allocate", f"c{i}", "--netns", netns, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )
        for i, netns in enumerate(containers)
    ]
    results = collect(processes)
    assert [(code, err) for code, _out, err in results if code != 0] == []
    answers = [json.loads(out) for _code, out, _err in results]
    assert len({a["address"] for a in answers}) == len(containers)
    for answer, netns in zip(answers, containers):
        done = subprocess.run(
            ["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "2", answer["gateway"]],
            capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert event_types(db_path) == ["NetworkCreated"] + ["AddressAllocated"] * len(containers)
