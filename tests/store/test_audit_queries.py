"""The audit API over the scripted day: who, history, state at a time, the raw log, read-only SQL."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from datetime import timedelta
from ipaddress import IPv4Address

import pytest

from netstate.store.readonly import run_readonly_query
from netstate.domain.state import fold
from netstate.errors import (
    InvalidAddress,
    InvalidInput,
    InvalidName,
    InvalidPortSpec,
    InvalidQuery,
    InvalidTime,
    QueryRejected,
    StoreError,
)
from netstate.store import projections
from netstate.store.engine import create_sqlite_engine, downgrade
from netstate.store.eventlog import read_events
from tests.audit_script import build_history, utc

EVENT_COUNT = 29


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    """The scripted day, with the clock left at its last step (18:01)."""
    built = build_history(tmp_path_factory.mktemp("audit") / "netstate.db")
    yield built
    built.netstate.close()


@pytest.fixture(scope="module")
def netstate(script):
    return script.netstate


@pytest.fixture
def fresh_script(tmp_path):
    """A scripted day of its own, for tests that append to the log."""
    built = build_history(tmp_path / "netstate.db")
    yield built
    built.netstate.close()


def seqs(changes) -> list[int]:
    return [change.seq for change in changes]


class TestWho:
    def test_who_finds_address_holder_with_lease_span(self, netstate):
        answer = netstate.who("10.44.0.7", at=utc("14:05"))

        assert [lease.endpoint for lease in answer.holders] == ["worker-9"]
        lease = answer.holders[0]
        assert lease.network == "web"
        assert lease.address == IPv4Address("10.44.0.7")
        assert lease.allocated_at == utc("14:03")
        assert lease.released_at == utc("16:00")
        assert lease.allocated_by == "carol"
        assert lease.released_by == "carol"
        assert lease.release_reason == "released"

    def test_who_counts_allocation_instant_as_held(self, netstate):
        answer = netstate.who("10.44.0.7", at=utc("10:00"))

        assert [lease.endpoint for lease in answer.holders] == ["api-1"]

    def test_who_counts_release_instant_as_free(self, netstate):
        answer = netstate.who("10.44.0.7", at=utc("14:00"))

        assert answer.holders == []
        assert answer.previous is not None
        assert answer.previous.endpoint == "api-1"
        assert answer.previous.released_at == utc("14:00")

    def test_who_reports_still_held_lease_without_end(self, netstate):
        answer = netstate.who("10.44.0.5", at="now")

        assert [lease.endpoint for lease in answer.holders] == ["web-1"]
        assert answer.holders[0].released_at is None
        assert answer.holders[0].release_seq is None

    def test_who_returns_no_holder_for_address_never_allocated(self, netstate):
        answer = netstate.who("10.44.0.99", at="now")

        assert answer.holders == []
        assert answer.previous is None

    def test_who_counts_relative_time_back_from_clock(self, netstate):
        # The clock is at 18:01, so 4h ago is 14:01, between api-1 and worker-9.
        answer = netstate.who("10.44.0.7", at="4h")

        assert answer.at == utc("14:01")
        assert answer.holders == []
        assert answer.previous.endpoint == "api-1"

    def test_who_limits_lookup_to_network(self, netstate):
        answer = netstate.who("10.44.0.7", at=utc("14:05"), network="db")

        assert answer.holders == []

    def test_who_finds_port_holder_on_any_host_address(self, netstate):
        answer = netstate.who("8080/tcp", at=utc("12:45"))

        assert [(b.endpoint, str(b.host_ip), b.container_port) for b in answer.holders] == [("web-3", "0.0.0.0", 80)]
        assert answer.holders[0].mapped_at == utc("12:31")
        assert answer.holders[0].unmapped_at == utc("16:20")
        assert answer.previous.endpoint == "web-1"

    def test_who_matches_wildcard_binding_for_host_address(self, netstate):
        answer = netstate.who("192.0.2.10:8080/tcp", at=utc("12:45"))

        assert [b.endpoint for b in answer.holders] == ["web-3"]

    def test_who_ignores_binding_on_other_host_address(self, netstate):
        answer = netstate.who("192.0.2.10:5353/udp", at=utc("11:00"))

        assert answer.holders == []

    def test_who_matches_any_protocol_for_bare_port(self, netstate):
        answer = netstate.who("5353", at=utc("11:00"))

        assert [(b.endpoint, b.protocol.value) for b in answer.holders] == [("api-1", "udp")]

    def test_who_distinguishes_protocols(self, netstate):
        answer = netstate.who("5353/tcp", at=utc("11:00"))

        assert answer.holders == []

    @pytest.mark.parametrize(
        ("target", "at", "error"),
        [
            ("10.44.0.7", "tomorrow", InvalidTime),
            ("10.44.0.300", "now", InvalidAddress),
            ("8080/icmp", "now", InvalidPortSpec),
        ],
    )
    def test_who_rejects_bad_input(self, netstate, target, at, error):
        with pytest.raises(error):
            netstate.who(target, at=at)

    def test_who_rejects_bad_network_name(self, netstate):
        with pytest.raises(InvalidName, match="invalid network name"):
            netstate.who("10.44.0.7", network="no spaces")


class TestHistory:
    def test_history_filters_by_endpoint(self, netstate):
        found = netstate.history(endpoint="web-1")

        assert seqs(found) == [3, 5, 9, 10, 28, 29]
        assert [c.type for c in found][:2] == ["AddressAllocated", "PortMapped"]

    def test_history_of_address_covers_its_leases_and_their_ports(self, netstate):
        found = netstate.history(address="10.44.0.7")

        assert seqs(found) == [6, 7, 8, 14, 15, 16, 17, 22]
        assert {c.endpoint for c in found} == {"api-1", "worker-9"}

    def test_history_of_port_covers_every_binding(self, netstate):
        found = netstate.history(port="8080/tcp")

        assert seqs(found) == [5, 9, 12, 24, 29]

    def test_history_of_port_on_host_address_includes_wildcard(self, netstate):
        assert seqs(netstate.history(port="127.0.0.1:5353/udp")) == [8, 15]
        assert seqs(netstate.history(port="192.0.2.10:5353/udp")) == []

    def test_history_intersects_address_and_port(self, netstate):
        found = netstate.history(address="10.44.0.2", port="8080/tcp")

        assert seqs(found) == [5, 9, 12, 24]

    def test_history_filters_by_network(self, netstate):
        assert seqs(netstate.history(network="db")) == [2, 13, 26, 27]

    def test_history_time_window_is_inclusive(self, netstate):
        found = netstate.history(since=utc("14:00"), until=utc("14:30"))

        assert seqs(found) == [14, 15, 16, 17, 18, 19]

    def test_history_refuses_since_after_until(self, netstate):
        # An empty answer here would read as "nothing happened" rather than "wrong window".
        with pytest.raises(InvalidInput, match="is after --until"):
            netstate.history(since=utc("14:30"), until=utc("14:00"))

    def test_history_combines_endpoint_and_time(self, netstate):
        found = netstate.history(endpoint="web-1", since="2026-03-02T13:00:00+00:00")

        assert seqs(found) == [28, 29]

    def test_history_records_actor_and_payload(self, netstate):
        (released,) = netstate.history(endpoint="batch-1", until=utc("23:59"))[1:]

        assert released.type == "AddressReleased"
        assert released.actor.user == "dave"
        assert released.actor.command == "netstate allocate batch-1"
        assert released.payload["reason"] == "effect failed: fake failure of EnsureVeth"
        assert released.summary == "released 10.44.0.4: effect failed: fake failure of EnsureVeth"

    def test_history_of_unknown_endpoint_is_empty(self, netstate):
        assert netstate.history(endpoint="nobody") == []

    @pytest.mark.parametrize(
        ("filters", "error"),
        [
            ({"endpoint": "bad name"}, InvalidName),
            ({"network": ""}, InvalidName),
            ({"address": "10.44.0"}, InvalidAddress),
            ({"port": "99999/tcp"}, InvalidPortSpec),
            ({"since": "last tuesday"}, InvalidTime),
            ({"until": "2026-02-30"}, InvalidTime),
        ],
    )
    def test_history_rejects_bad_filter(self, netstate, filters, error):
        with pytest.raises(error):
            netstate.history(**filters)


class TestStateAt:
    def test_state_at_now_equals_live_projections(self, netstate):
        past = netstate.state_at("now")

        with netstate.store.read() as connection:
            live = projections.read_state(connection)
            folded = fold(recorded.event for recorded in read_events(connection))
        assert past.state == live
        assert past.state == folded
        assert past.seq == EVENT_COUNT

    def test_state_at_time_shows_what_stood_then(self, netstate):
        past = netstate.state_at(utc("13:00"))

        assert past.seq == 13
        assert sorted(past.state.networks) == ["db", "web"]
        held = {(lease.endpoint, str(lease.address)) for lease in past.state.leases.values()}
        assert held == {("web-2", "10.44.0.3"), ("api-1", "10.44.0.7"), ("web-3", "10.44.0.2"), ("cache-1", "10.1.0.1")}
        ports = {(b.key.protocol.value, b.key.host_port, b.endpoint) for b in past.state.bindings.values()}
        assert ports == {("tcp", 8080, "web-3"), ("tcp", 49153, "api-1"), ("udp", 5353, "api-1")}

    def test_state_at_time_reflects_removal_and_settings(self, netstate):
        past = netstate.state_at(utc("17:30"))

        assert sorted(past.state.networks) == ["web"]
        assert past.state.networks["web"].icc is False
        assert past.state.settings == {"dynamic_ports": "50000-50999"}
        assert past.state.leases == {}

    def test_state_before_first_event_is_empty(self, netstate):
        past = netstate.state_at(utc("08:59"))

        assert past.seq == 0
        assert past.state.networks == {}

    def test_state_at_rejects_bad_time(self, netstate):
        with pytest.raises(InvalidTime):
            netstate.state_at("at noon")


class TestEvents:
    def test_events_lists_whole_log_in_order(self, netstate):
        assert seqs(netstate.events()) == list(range(1, EVENT_COUNT + 1))

    def test_events_starts_after_sequence_number(self, netstate):
        assert seqs(netstate.events(after=26)) == [27, 28, 29]

    def test_events_filters_by_time_and_limit(self, netstate):
        assert seqs(netstate.events(since=utc("16:00"), limit=2)) == [22, 23]

    @pytest.mark.parametrize(("options", "message"), [({"after": -1}, "sequence number"), ({"limit": 0}, "limit")])
    def test_events_rejects_bad_option(self, netstate, options, message):
        with pytest.raises(InvalidInput, match=message):
            netstate.events(**options)

    def test_follow_events_yields_appended_event(self, fresh_script):
        netstate = fresh_script.netstate
        stop = threading.Event()
        received = []

        def consume() -> None:
            for change in netstate.follow_events(stop, after=EVENT_COUNT - 1, interval=0.02):
                received.append(change)

        follower = threading.Thread(target=consume)
        follower.start()
        try:
            _wait_for(lambda: len(received) == 1)
            fresh_script.as_user("19:00", "erin", "allocate late-1").allocate("late-1", network="web")
            _wait_for(lambda: len(received) == 2)
        finally:
            stop.set()
            follower.join(timeout=5)

        assert not follower.is_alive()
        assert [(c.seq, c.endpoint) for c in received] == [(EVENT_COUNT, "web-1"), (EVENT_COUNT + 1, "late-1")]
        assert received[1].actor.user == "erin"

    def test_follow_events_rejects_interval_out_of_range(self, netstate):
        with pytest.raises(InvalidInput, match="poll interval"):
            next(netstate.follow_events(threading.Event(), interval=0))


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the follower"
        time.sleep(0.01)


class TestReadOnlySql:
    def test_sql_returns_columns_and_rows(self, script, netstate):
        db = _db_path(netstate)

        result = run_readonly_query(db, "SELECT count(*) AS events, max(seq) AS last FROM changes")

        assert result.columns == ["events", "last"]
        assert result.rows == [(EVENT_COUNT, EVENT_COUNT)]

    def test_sql_allows_schema_pragma(self, netstate):
        result = run_readonly_query(_db_path(netstate), "PRAGMA table_info(address_leases)")

        assert "address" in [row[1] for row in result.rows]

    @pytest.mark.parametrize(
        ("query", "shown"),
        [
            ("INSERT INTO settings VALUES ('k', 'v')", "INSERT on 'settings'"),
            ("UPDATE leases SET address = '10.44.0.9'", "UPDATE on 'leases'"),
            ("DELETE FROM events", "DELETE on 'events'"),
            ("DROP VIEW changes", "a schema change"),
            ("CREATE TABLE notes (text)", "a schema change"),
            ("CREATE TEMP TABLE notes (text)", "a schema change"),
            ("ALTER TABLE events ADD COLUMN note", "ALTER TABLE"),
            ("ATTACH DATABASE ':memory:' AS other", "ATTACH"),
            ("PRAGMA user_version = 7", "PRAGMA user_version"),
            ("PRAGMA journal_mode = DELETE", "PRAGMA journal_mode"),
            ("REINDEX", "REINDEX"),
            ("ANALYZE", "a schema change"),
            ("BEGIN", "TRANSACTION BEGIN"),
            ("SELECT load_extension('/tmp/evil')", "function load_extension()"),
            ("VACUUM", "ATTACH"),
        ],
    )
    def test_sql_rejects_statement_that_is_not_a_read(self, netstate, query, shown):
        db = _db_path(netstate)
        before = db.read_bytes()

        with pytest.raises(QueryRejected, match="read-only") as caught:
            run_readonly_query(db, query)

        assert shown in str(caught.value)
        assert db.read_bytes() == before
        assert run_readonly_query(db, "SELECT count(*) FROM events").rows == [(EVENT_COUNT,)]

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("SELECT 1; SELECT 2", "single statement"),
            ("   ", "empty query"),
            ("SELEC 1", "syntax error"),
            ("SELECT nope FROM changes", "no such column"),
            ("SELECT * FROM missing_view", "no such table"),
            ("SELECT ?", "bindings"),
        ],
    )
    def test_sql_rejects_invalid_query(self, netstate, query, message):
        with pytest.raises(InvalidQuery, match=message):
            run_readonly_query(_db_path(netstate), query)

    def test_sql_reports_missing_database_without_creating_it(self, tmp_path):
        missing = tmp_path / "absent.db"

        with pytest.raises(StoreError, match="not found"):
            run_readonly_query(missing, "SELECT 1")

        assert not missing.exists()

    def test_sql_hints_upgrade_on_old_schema(self, netstate, tmp_path):
        old = tmp_path / "old.db"
        with netstate.store.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
        shutil.copy(_db_path(netstate), old)
        engine = create_sqlite_engine(old)
        downgrade(engine, "0001")
        engine.dispose()

        with pytest.raises(InvalidQuery, match="schema revision 0001, not 0002: run `netstate db upgrade`"):
            run_readonly_query(old, "SELECT * FROM address_leases")

        with sqlite3.connect(old) as connection:
            (count,) = connection.execute("SELECT count(*) FROM events").fetchone()
        assert count == EVENT_COUNT


def _db_path(netstate):
    from pathlib import Path

    return Path(netstate.store.engine.url.database)


def test_scripted_clock_ends_at_last_step(script):
    assert script.now == utc("18:01")
    assert script.now - utc("18:00") == timedelta(minutes=1)
