"""Benchmark of the audit lookups on a large event log.

Builds a database of N events (1,000,000 by default) in the stored format, then measures:

- `who ADDRESS --at T`, `who PORT/PROTO --at T` and `history --address A` through the Python
  API, as median and 95th percentile over many random lookups;
- `who` and `history --address` through the `netstate` command in a fresh process (median),
  beside two references: starting Python with SQLAlchemy and Typer imported, and
  `netstate db upgrade`, which opens the database and reads its schema revision, the fixed
  cost of every command;
- the same API lookups on a copy of the database without the indexes that the audit migration
  adds, to show what they buy;
- the cost of those indexes when appending: bulk inserts into an empty log with and without
  them;
- `state --at` on the whole log, a fold of every event.

The log is a steady churn of containers on four /18 networks: each allocation is later
released, about a third of them publish a port, and the address cursor wraps, so each address
is held by several endpoints over the log's lifetime. Events are built as domain events and
stored through `to_payload`, so the payloads have the real format, and the projections are
written from the same fold, so the database is a valid netstate database.

Usage: python3 bench/audit_bench.py [--events N] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from netstate.domain.events import (  # noqa: E402
    AddressAllocated,
    AddressReleased,
    NetworkCreated,
    PortMapped,
    PortUnmapped,
    Protocol,
    to_payload,
)
from netstate.domain.state import BindingKey, State  # noqa: E402
from netstate.store import projections  # noqa: E402
from netstate.store.engine import create_sqlite_engine, open_database  # noqa: E402
from netstate.store.schema import events as events_table  # noqa: E402

AUDIT_INDEXES = ("events_pairing", "events_allocated_address", "events_mapped_port")
NETWORKS = {f"net{i}": IPv4Network(f"10.{100 + i}.0.0/18") for i in range(4)}
USERS = ("root", "ci-runner", "alice", "bob")
# Leases held at the same time once the churn is steady.
LIVE_LEASES = 20_000
START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 50_000


class Generator:
    """Produces a valid history: leases, mappings and their ends, in time order."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.state = State()
        self.now = START
        self.cursors = {name: subnet.network_address + 1 for name, subnet in NETWORKS.items()}
        self.live: list[tuple[str, str]] = []
        self.held: dict[str, set[IPv4Address]] = {name: set() for name in NETWORKS}
        # The host ports each endpoint published, because State.bindings_of scans every binding.
        self.keys_of: dict[str, list[BindingKey]] = {}
        self.next_endpoint = 0
        self.next_dynamic = 49152

    def events(self, count: int):
        """Yield (time, user, event) until `count` events were produced."""
        produced = 0
        for name, subnet in NETWORKS.items():
            yield self._emit(NetworkCreated(network=name, subnet=subnet, gateway=subnet.network_address + 1, bridge=f"ns-{name}"))
            produced += 1
        while produced < count:
            if len(self.live) < LIVE_LEASES or self.random.random() < 0.5:
                batch = self._allocate()
            else:
                batch = self._release()
            for item in batch:
                yield item
                produced += 1
                if produced >= count:
                    return

    def _emit(self, event):
        self.now += timedelta(microseconds=self.random.randint(0, 2_000_000))
        self.state.apply(event)
        return self.now, self.random.choice(USERS), event

    def _allocate(self):
        network = self.random.choice(list(NETWORKS))
        endpoint = f"c{self.next_endpoint:07d}"
        self.next_endpoint += 1
        address = self._next_address(network)
        out = [self._emit(AddressAllocated(network=network, endpoint=endpoint, address=address))]
        self.live.append((network, endpoint))
        self.held[network].add(address)
        if self.random.random() < 0.35:
            mapping = self._mapping(network, endpoint, address)
            out.append(self._emit(mapping))
            self.keys_of[endpoint] = [BindingKey(mapping.protocol, mapping.host_ip, mapping.host_port)]
        return out

    def _next_address(self, network: str) -> IPv4Address:
        # Like the real allocator: continue after the last address handed out, and wrap.
        subnet = NETWORKS[network]
        candidate = self.cursors[network]
        while True:
            candidate += 1
            if candidate >= subnet.broadcast_address:
                candidate = subnet.network_address + 2
            if candidate not in self.held[network]:
                self.cursors[network] = candidate
                return candidate

    def _mapping(self, network: str, endpoint: str, address: IPv4Address) -> PortMapped:
        if self.random.random() < 0.2:
            # A well-known port on one of a few host addresses, when it is free.
            key = BindingKey(Protocol.TCP, IPv4Address(f"192.0.2.{self.random.randint(1, 50)}"), self.random.choice((80, 443, 8080, 5432)))
            if key not in self.state.bindings:
                return PortMapped(network=network, endpoint=endpoint, protocol=key.protocol, host_ip=key.host_ip, host_port=key.host_port, container_ip=address, container_port=key.host_port)
        protocol = Protocol.TCP if self.random.random() < 0.8 else Protocol.UDP
        while True:
            self.next_dynamic = 49153 if self.next_dynamic >= 65535 else self.next_dynamic + 1
            key = BindingKey(protocol, IPv4Address("0.0.0.0"), self.next_dynamic)
            if key not in self.state.bindings:
                break
        return PortMapped(network=network, endpoint=endpoint, protocol=protocol, host_ip=key.host_ip, host_port=key.host_port, container_ip=address, container_port=8000, dynamic=True)

    def _release(self):
        index = self.random.randrange(len(self.live))
        self.live[index], self.live[-1] = self.live[-1], self.live[index]
        network, endpoint = self.live.pop()
        lease = self.state.leases[(network, endpoint)]
        out = []
        for key in self.keys_of.pop(endpoint, ()):
            binding = self.state.bindings[key]
            unmapped = PortUnmapped(
                network=network, endpoint=endpoint, protocol=key.protocol, host_ip=key.host_ip,
                host_port=key.host_port, container_ip=binding.container_ip,
                container_port=binding.container_port, reason="released",
            )
            out.append(self._emit(unmapped))
        out.append(self._emit(AddressReleased(network=network, endpoint=endpoint, address=lease.address)))
        self.held[network].discard(lease.address)
        return out


def build(path: Path, count: int, seed: int) -> tuple[float, Generator]:
    """Create the database at `path` with `count` events; return seconds taken and the generator."""
    engine = open_database(path)
    generator = Generator(seed)
    started = time.perf_counter()
    rows = []
    seq = 0
    for moment, user, event in generator.events(count):
        rows.append(_row(moment, user, event))
        seq += 1
        if len(rows) >= BATCH:
            _flush(engine, rows)
    _flush(engine, rows)
    with engine.begin() as connection:
        projections.write_state(connection, generator.state, seq)
    engine.dispose()
    return time.perf_counter() - started, generator


def _row(moment: datetime, user: str, event) -> dict:
    return {
        "recorded_at": moment.isoformat(timespec="microseconds"),
        "type": event.type,
        "schema_version": event.schema_version,
        "network": event.network,
        "endpoint": event.endpoint,
        "payload": json.dumps(to_payload(event), separators=(",", ":")),
        "actor_user": user,
        "actor_pid": 4242,
        "actor_command": f"netstate {event.type}",
    }


def _flush(engine, rows: list[dict]) -> None:
    if not rows:
        return
    with engine.begin() as connection:
        connection.execute(insert(events_table), rows)
    rows.clear()


def sample_lookups(path: Path, count: int, seed: int):
    """Pick (address, time) and (port, time) pairs from real leases, and addresses to trace."""
    rng = random.Random(seed)
    with sqlite3.connect(path) as connection:
        (last,) = connection.execute("SELECT max(seq) FROM events").fetchone()
        picks = []
        while len(picks) < count:
            row = connection.execute(
                "SELECT type, recorded_at, payload FROM events WHERE seq = ?", (rng.randint(1, last),)
            ).fetchone()
            if row[0] in ("AddressAllocated", "PortMapped"):
                picks.append(row)
    addresses, ports = [], []
    for kind, recorded_at, payload in picks:
        fields = json.loads(payload)
        # A moment a little after the allocation, usually inside the lease.
        at = (datetime.fromisoformat(recorded_at) + timedelta(seconds=rng.randint(0, 600))).isoformat()
        if kind == "AddressAllocated":
            addresses.append((fields["address"], at))
        else:
            ports.append((f"{fields['host_port']}/{fields['protocol']}", at))
    return addresses, ports


def time_calls(function, arguments) -> list[float]:
    """Return the milliseconds of `function(*args)` for each args in `arguments`."""
    found = []
    for args in arguments:
        started = time.perf_counter()
        function(*args)
        found.append((time.perf_counter() - started) * 1000)
    return found


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return {"n": len(samples), "median_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2)}


def measure_api(path: Path, addresses, ports, label: str) -> dict:
    from netstate.bootstrap import open_service

    service = open_service(path, kernel="fake")
    try:
        service.who(*addresses[0][:1], at=addresses[0][1])  # warm the connection pool and caches
        results = {
            "who_address": summary(time_calls(lambda a, t: service.who(a, at=t), addresses)),
            "who_port": summary(time_calls(lambda p, t: service.who(p, at=t), ports)),
            "history_address": summary(time_calls(lambda a, _t: service.history(address=a), addresses)),
        }
        holders = sum(bool(service.who(a, at=t).holders) for a, t in addresses)
        results["who_address_found"] = f"{holders}/{len(addresses)}"
    finally:
        service.close()
    print(f"{label}: {json.dumps(results)}", flush=True)
    return results


def measure_cli(path: Path, addresses, runs: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NETSTATE_KERNEL": "fake"}
    base = [sys.executable, "-m", "cli.main", "--db", str(path)]

    def run(command):
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=REPO, capture_output=True, check=False)
        return (time.perf_counter() - started) * 1000

    # The commands take turns, so that drift in the machine's speed touches each alike.
    samples: dict[str, list[float]] = {
        "python_with_sqlalchemy_and_typer": [],
        "db_upgrade": [],
        "who_address": [],
        "history_address": [],
    }
    for address, at in addresses[:runs]:
        samples["python_with_sqlalchemy_and_typer"].append(run([sys.executable, "-c", "import sqlalchemy, typer"]))
        samples["db_upgrade"].append(run([*base, "db", "upgrade"]))
        samples["who_address"].append(run([*base, "who", address, "--at", at]))
        samples["history_address"].append(run([*base, "history", "--address", address]))
    results = {name: summary(values) for name, values in samples.items()}
    print(f"cli: {json.dumps(results)}", flush=True)
    return results


def measure_state_fold(path: Path) -> dict:
    from netstate.bootstrap import open_service

    service = open_service(path, kernel="fake")
    try:
        started = time.perf_counter()
        past = service.state_at("now")
        seconds = time.perf_counter() - started
    finally:
        service.close()
    results = {"seconds": round(seconds, 1), "events": past.seq, "leases": len(past.state.leases)}
    print(f"state --at now: {json.dumps(results)}", flush=True)
    return results


def measure_append_cost(directory: Path, count: int, seed: int, rounds: int = 3) -> dict:
    """Bulk-insert the same `count` events into an empty log with and without the audit indexes.

    The two variants alternate for `rounds` rounds and the median rate of each is reported.
    """
    rows = [_row(moment, user, event) for moment, user, event in Generator(seed).events(count)]
    rates: dict[str, list[float]] = {"with_audit_indexes": [], "without_audit_indexes": []}
    for _ in range(rounds):
        for label in rates:
            path = directory / f"append-{label}.db"
            open_database(path).dispose()
            engine = create_sqlite_engine(path)
            if label == "without_audit_indexes":
                with engine.begin() as connection:
                    for name in AUDIT_INDEXES:
                        connection.exec_driver_sql(f"DROP INDEX {name}")
            started = time.perf_counter()
            for start in range(0, len(rows), BATCH):
                with engine.begin() as connection:
                    connection.execute(insert(events_table), rows[start:start + BATCH])
            rates[label].append(count / (time.perf_counter() - started))
            engine.dispose()
            for leftover in directory.glob(f"append-{label}.db*"):
                leftover.unlink()
    results = {
        label: {"events_per_second": round(statistics.median(values)), "us_per_event": round(1e6 / statistics.median(values), 1)}
        for label, values in rates.items()
    }
    print(f"append: {json.dumps(results)}", flush=True)
    return results


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log (default 1,000,000)")
    parser.add_argument("--lookups", type=int, default=300, help="random API lookups of each kind")
    parser.add_argument("--cli-runs", type=int, default=15, help="runs of each CLI command")
    parser.add_argument("--unindexed-lookups", type=int, default=5, help="API lookups on the copy without indexes")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the databases (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()

    directory = options.dir or Path(tempfile.mkdtemp(prefix="netstate-audit-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "audit.db"
    if path.exists():
        path.unlink()
    report: dict = {
        "machine": f"{os.cpu_count()} vCPU ({_cpu_model()}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "events": options.events,
    }
    try:
        seconds, generator = build(path, options.events, options.seed)
        report["build"] = {
            "seconds": round(seconds, 1),
            "events_per_second": round(options.events / seconds),
            "database_mb": round(path.stat().st_size / 1e6),
            "leases_created": generator.next_endpoint,
        }
        print(f"build: {json.dumps(report['build'])}", flush=True)

        addresses, ports = sample_lookups(path, options.lookups * 3, options.seed)
        addresses, ports = addresses[: options.lookups], ports[: options.lookups]
        report["api"] = measure_api(path, addresses, ports, "api")
        report["cli"] = measure_cli(path, addresses, options.cli_runs)
        report["state_fold"] = measure_state_fold(path)

        unindexed = directory / "audit-unindexed.db"
        shutil.copy(path, unindexed)
        with sqlite3.connect(unindexed) as connection:
            for name in AUDIT_INDEXES:
                connection.execute(f"DROP INDEX {name}")
        few = options.unindexed_lookups
        report["api_without_audit_indexes"] = measure_api(unindexed, addresses[:few], ports[:few], "api without audit indexes")
        unindexed.unlink()

        report["append"] = measure_append_cost(directory, min(options.events, 200_000), options.seed)
    finally:
        if not options.keep:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
