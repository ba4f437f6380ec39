"""`netstate check` and `netstate restore` through Typer, on the fake kernel.

Each invocation builds a new service and so a new, empty fake kernel: a network recorded by an
earlier invocation always shows as a missing bridge, which is what these tests use.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.recovery import StderrProgress


@pytest.fixture
def netstate(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSTATE_KERNEL", "fake")
    runner = CliRunner()
    db = str(tmp_path / "netstate.db")

    def run(*args: str):
        return runner.invoke(app, ["--db", db, *args], catch_exceptions=False)

    assert run("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0").exit_code == 0
    return run


def test_check_exits_1_and_lists_drift(netstate):
    result = netstate("check")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "OBJECT", "PROBLEM", "EXPECTED", "FOUND"]
    assert lines[1].split()[:3] == ["bridge", "nsweb0", "missing"]
    assert "check --repair" in lines[-1]


def test_check_json_fields(netstate):
    result = netstate("check", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["in_sync"] is False
    assert report["checked"] == {"bridge": 1, "veth": 0, "sysctl": 2, "mapping": 0, "rule": 10}
    # The fake kernel of a new process also lacks ip_forward and every rule.
    drift = report["drift"][0]
    assert {d["kind"] for d in report["drift"]} == {"bridge", "sysctl", "chain", "rule"}
    assert drift == {
        "kind": "bridge",
        "object": "nsweb0",
        "problem": "missing",
        "expected": "bridge up with 192.0.2.1/24",
        "found": "absent",
        "message": "bridge nsweb0 of network web is missing",
        "repairable": True,
    }
    assert report["remaining"] is None


def test_check_repair_exits_0_when_repaired(netstate):
    result = netstate("check", "--repair", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["in_sync"] is True
    assert report["remaining"] == []
    assert [c["action"] for c in report["changes"]] == ["EnsureBridge", "EnsureSysctl", "SyncFirewall"]


def test_restore_prints_changes(netstate):
    result = netstate("restore")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "bridge nsweb0 of network web ensured with 192.0.2.1/24",
        "sysctl net/ipv4/ip_forward set to 1",
        "netstate firewall rules synced (10 rule(s) in 4 chain(s))",
        "3 change(s), kernel matches the record (1 bridge(s), 0 veth(s), 2 sysctl(s), 0 mapping(s), 10 rule(s))",
    ]


@pytest.mark.parametrize("command", ["check", "restore"])
def test_help_has_an_example(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"Example: netstate {command}" in result.stdout


def test_progress_bar_draws_only_on_a_terminal(capsys):
    quiet = StderrProgress()
    quiet.enabled = False
    quiet("repairing", 5, 10)
    quiet.close()
    assert capsys.readouterr().err == ""

    bar = StderrProgress()
    bar.enabled = True
    bar("repairing", 10, 10)
    bar.close()
    err = capsys.readouterr().err
    assert err.startswith("\rrepairing [##############################] 10/10")
    assert err.endswith("\n")
