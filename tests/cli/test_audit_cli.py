"""The audit commands run as the real `netstate` program over the scripted day."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

from tests.audit_script import build_history
from tests.conftest import REPO, run_netstate

EVENT_COUNT = 29
FAKE_KERNEL = {"NETSTATE_KERNEL": "fake"}
TIME_FORMS = "a duration ago such as 90s, 15m, 2h, 3d or 1w"


@pytest.fixture(scope="module")
def history_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("audit-cli") / "netstate.db"
    build_history(path).netstate.close()
    return path


def netstate(db, *args, env=None):
    return run_netstate(*args, db=db, env={**FAKE_KERNEL, **(env or {})})


class TestHistoryCommand:
    def test_history_prints_table_of_endpoint_events(self, history_db):
        result = netstate(history_db, "history", "--endpoint", "web-1")

        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["SEQ", "TIME", "TYPE", "NETWORK", "ENDPOINT", "SUMMARY", "USER"]
        assert len(lines) == 7
        assert lines[1].split() == ["3", "2026-03-02T09:05:00Z", "AddressAllocated", "web", "web-1", "allocated", "10.44.0.2", "alice"]

    def test_history_prints_json_of_address_events(self, history_db):
        result = netstate(history_db, "history", "--address", "10.44.0.7", "--since", "2026-03-02T14:00:00Z", "--json")

        assert result.returncode == 0, result.stderr
        found = json.loads(result.stdout)
        assert [event["seq"] for event in found] == [14, 15, 16, 17, 22]
        assert found[3]["payload"]["address"] == "10.44.0.7"
        assert found[3]["actor"]["user"] == "carol"
        assert found[3]["recorded_at"] == "2026-03-02T14:03:00.000000+00:00"

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--since", "yesterday"], "invalid time 'yesterday'"),
            (["--until", "2026-02-30T10:00"], TIME_FORMS),
            (["--port", "70000/tcp"], "outside 1-65535"),
            (["--address", "10.44.0.256"], "invalid IPv4 address"),
            (["--endpoint", "no/slash"], "invalid endpoint name"),
        ],
    )
    def test_history_rejects_bad_input(self, history_db, args, message):
        result = netstate(history_db, "history", *args)

        assert result.returncode == 2
        assert message in result.stderr
        assert result.stdout == ""


class TestWhoCommand:
    def test_who_prints_holder_with_lease_span(self, history_db):
        result = netstate(history_db, "who", "10.44.0.7", "--at", "2026-03-02T14:05:00Z")

        assert result.returncode == 0, result.stderr
        assert result.stdout == "10.44.0.7 on web: worker-9 from 2026-03-02T14:03:00Z to 2026-03-02T16:00:00Z\n"

    def test_who_reads_zoneless_time_as_local(self, history_db):
        # 19:35 in Kolkata (UTC+05:30) is 14:05 UTC.
        result = netstate(history_db, "who", "10.44.0.7", "--at", "2026-03-02T19:35:00", env={"TZ": "Asia/Kolkata"})

        assert result.returncode == 0, result.stderr
        assert "worker-9" in result.stdout

    def test_who_reports_nobody_with_last_holder(self, history_db):
        result = netstate(history_db, "who", "10.44.0.7", "--at", "2026-03-02T14:01:00Z")

        assert result.returncode == 1
        assert result.stdout == (
            "nobody held 10.44.0.7 at 2026-03-02T14:01:00Z; the last holder was api-1 "
            "(10.44.0.7 on web) until 2026-03-02T14:00:00Z\n"
        )

    def test_who_json_lists_no_holders_when_nobody(self, history_db):
        result = netstate(history_db, "who", "10.44.0.99", "--json")

        assert result.returncode == 1
        answer = json.loads(result.stdout)
        assert answer["holders"] == []
        assert answer["previous"] is None

    def test_who_prints_port_holder_as_json(self, history_db):
        result = netstate(history_db, "who", "8080/tcp", "--at", "2026-03-02T12:45:00Z", "--json")

        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["target"] == "8080/tcp"
        assert [(h["endpoint"], h["from"], h["to"]) for h in answer["holders"]] == [
            ("web-3", "2026-03-02T12:31:00.000000+00:00", "2026-03-02T16:20:00.000000+00:00")
        ]

    def test_who_says_still_held(self, history_db):
        result = netstate(history_db, "who", "10.44.0.5")

        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith("from 2026-03-02T18:00:00Z, still held\n")

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["10.44.0.777"], "invalid IPv4 address"),
            (["8080/ipx"], "unknown protocol 'ipx'"),
            (["10.44.0.7", "--at", "soon"], TIME_FORMS),
        ],
    )
    def test_who_rejects_bad_input(self, history_db, args, message):
        result = netstate(history_db, "who", *args)

        assert result.returncode == 2
        assert message in result.stderr


class TestStateCommand:
    def test_state_prints_tables_as_they_stood(self, history_db):
        result = netstate(history_db, "state", "--at", "2026-03-02T13:00:00Z")

        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("state at 2026-03-02T13:00:00Z, after event 13\n")
        endpoints = result.stdout.split("\nENDPOINTS\n")[1].split("\n\n")[0].splitlines()
        assert [line.split()[:3] for line in endpoints[1:]] == [
            ["cache-1", "db", "10.1.0.1/16"],
            ["web-3", "web", "10.44.0.2/24"],
            ["web-2", "web", "10.44.0.3/24"],
            ["api-1", "web", "10.44.0.7/24"],
        ]
        assert "udp    127.0.0.1  5353       api-1" in result.stdout

    def test_state_at_now_equals_live_listings(self, history_db):
        past = json.loads(netstate(history_db, "state", "--json").stdout)
        endpoints = json.loads(netstate(history_db, "ls", "--json").stdout)
        networks = json.loads(netstate(history_db, "network", "ls", "--json").stdout)

        assert past["seq"] == EVENT_COUNT
        assert past["endpoints"] == endpoints
        assert past["networks"] == networks
        assert past["ports"] == [
            {
                "protocol": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "network": "web",
                "endpoint": "web-1", "container_ip": "10.44.0.5", "container_port": 80,
            }
        ]
        assert past["settings"] == {"dynamic_ports": "50000-50999"}

    def test_state_before_any_event_is_empty(self, history_db):
        result = netstate(history_db, "state", "--at", "2026-03-01", "--json")

        assert result.returncode == 0, result.stderr
        past = json.loads(result.stdout)
        assert (past["seq"], past["networks"], past["endpoints"], past["ports"]) == (0, [], [], [])

    def test_state_rejects_bad_time(self, history_db):
        result = netstate(history_db, "state", "--at", "noon")

        assert result.returncode == 2
        assert "invalid time 'noon'" in result.stderr


class TestEventsCommand:
    def test_events_prints_one_line_per_event(self, history_db):
        result = netstate(history_db, "events")

        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == EVENT_COUNT
        assert lines[2] == (
            '3 2026-03-02T09:05:00.000000+00:00 AddressAllocated web web-1 alice '
            '{"address":"10.44.0.2","netns":null,"ifname":null,"host_ifname":null,"requested":false}'
        )

    def test_events_prints_json_lines_after_seq(self, history_db):
        result = netstate(history_db, "events", "--after", "27", "--json")

        assert result.returncode == 0, result.stderr
        found = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(e["seq"], e["type"]) for e in found] == [(28, "AddressAllocated"), (29, "PortMapped")]

    @pytest.mark.parametrize(
        ("args", "message"),
        [(["--after", "-1"], "--after"), (["--since", "later"], TIME_FORMS), (["--follow", "--interval", "0"], "--interval")],
    )
    def test_events_rejects_bad_input(self, history_db, args, message):
        result = netstate(history_db, "events", *args)

        assert result.returncode == 2
        assert message in result.stderr

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_events_follow_prints_appended_events_until_signal(self, tmp_path, signum):
        db = tmp_path / "netstate.db"
        script = build_history(db)
        env = {**os.environ, **FAKE_KERNEL, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "cli.main", "--db", str(db), "events", "--follow", "--after", "28", "--interval", "0.05"]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True)
        reader.start()
        try:
            first = lines.get(timeout=30)
            script.as_user("19:00", "erin", "allocate late-1").allocate("late-1", network="web")
            second = lines.get(timeout=10)
            child.send_signal(signum)
            returncode = child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            script.netstate.close()

        assert first.startswith("29 ")
        assert second.startswith("30 2026-03-02T19:00:00.000000+00:00 AddressAllocated web late-1 erin ")
        assert returncode == 0, child.stderr.read()


class TestSqlCommand:
    def test_sql_prints_table_with_null(self, history_db):
        result = netstate(history_db, "sql", "SELECT endpoint, released_at FROM address_leases WHERE address = '10.44.0.5'")

        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["endpoint  released_at", "web-1     NULL"]

    def test_sql_prints_json_objects(self, history_db):
        result = netstate(history_db, "sql", "SELECT network, count(*) AS leases FROM address_leases GROUP BY network ORDER BY network", "--json")

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [{"network": "db", "leases": 1}, {"network": "web", "leases": 7}]

    @pytest.mark.parametrize("query", ["DELETE FROM events", "INSERT INTO settings VALUES ('a', 'b')", "DROP VIEW changes"])
    def test_sql_rejects_write_and_changes_nothing(self, history_db, query):
        before = history_db.read_bytes()

        result = netstate(history_db, "sql", query)

        assert result.returncode == 1
        assert "query rejected" in result.stderr
        assert "read-only" in result.stderr
        assert history_db.read_bytes() == before

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["SELECT 1; DELETE FROM events"], "single statement"),
            (["SELEKT 1"], "syntax error"),
            (["SELECT seq, seq FROM events", "--json"], "column 'seq' appears twice"),
        ],
    )
    def test_sql_rejects_invalid_query(self, history_db, args, message):
        result = netstate(history_db, "sql", *args)

        assert result.returncode == 2
        assert message in result.stderr

    def test_sql_reports_missing_database(self, tmp_path):
        missing = tmp_path / "none.db"

        result = netstate(missing, "sql", "SELECT 1")

        assert result.returncode == 1
        assert "not found" in result.stderr
        assert not missing.exists()


@pytest.mark.parametrize("command", ["history", "who", "state", "events", "sql"])
def test_audit_command_help_has_example(tmp_path, command):
    result = netstate(tmp_path / "unused.db", command, "--help")

    assert result.returncode == 0, result.stderr
    assert "Example: netstate " + command in " ".join(result.stdout.split())
