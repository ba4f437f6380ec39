"""Benchmark of check, restore and the projection rebuild on a large event log.

Builds a database of N events (1,000,000 by default) holding L live leases at the end (10,000
by default), then measures:

- the rebuild of the projections from the whole log through the Python API (`Core.rebuild`),
  in events per second;
- `netstate check` and `netstate restore` in a fresh process, with the projections intact,
  which reads no event but counts them by type;
- `netstate restore` with the checkpoint set back, which rebuilds the projections first;
- `netstate check --deep`, which folds the whole log and compares it with the projections.

The log is a churn of endpoints on ten /20 networks: each allocation is released once L newer
ones are live, and each network's cursor moves on as netstate's does. Events are built as
domain events and stored through `to_payload` with SQLAlchemy Core inserts in large
transactions, so the payloads have the real format. The projections are written from a fold
of the same events. The leases name no namespace, so the kernel work is the ten bridges,
created by the first restore inside a throwaway namespace deleted on exit.

Usage: python3 bench/recovery_scale.py [--events N] [--live L] [--runs R] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import insert, update  # noqa: E402

from netstate.bootstrap import open_service  # noqa: E402
from netstate.domain.events import (  # noqa: E402
    AddressAllocated,
    AddressReleased,
    NetworkCreated,
    PortMapped,
    Protocol,
    to_payload,
)
from netstate.domain.state import State  # noqa: E402
from netstate.store import projections  # noqa: E402
from netstate.store.engine import create_sqlite_engine, open_database  # noqa: E402
from netstate.store.schema import checkpoints  # noqa: E402
from netstate.store.schema import events as events_table  # noqa: E402

NETWORKS = 10
BATCH = 100_000


def generate_events(total: int, live: int, mappings: int = 0):
    """Yield `total` domain events that leave `live` leases held at the end.

    The last `mappings` events publish one TCP host port each (from 10000 up) for the newest
    live leases, so they are counted in `total`.
    """
    total -= mappings
    networks = []
    for number in range(NETWORKS):
        subnet = IPv4Network(f"10.{100 + number}.0.0/20")
        networks.append((f"net{number}", subnet))
        yield NetworkCreated(
            network=f"net{number}", subnet=subnet, gateway=subnet.network_address + 1, bridge=f"nsbench{number}"
        )
    allocations = (total - NETWORKS + live) // 2
    # Each live lease with the index of its network and its host number there.
    held: deque[tuple[AddressAllocated, int, int]] = deque()
    used = [set() for _ in networks]
    cursors = [2] * NETWORKS
    last = 2 ** (32 - 20) - 2  # host numbers 2..last are usable; 1 is the gateway
    emitted = NETWORKS
    for number in range(allocations):
        which = number % NETWORKS
        name, subnet = networks[which]
        host = cursors[which]
        while host in used[which]:
            host = host + 1 if host < last else 2
        cursors[which] = host + 1 if host < last else 2
        used[which].add(host)
        event = AddressAllocated(network=name, endpoint=f"e{number}", address=subnet.network_address + host)
        held.append((event, which, host))
        yield event
        emitted += 1
        if len(held) > live and emitted < total:
            old, old_network, old_host = held.popleft()
            used[old_network].discard(old_host)
            yield AddressReleased(network=old.network, endpoint=old.endpoint, address=old.address)
            emitted += 1
    newest = list(held)[-mappings:] if mappings else []
    for number, (lease, _network, _host) in enumerate(newest):
        yield PortMapped(
            network=lease.network,
            endpoint=lease.endpoint,
            protocol=Protocol.TCP,
            host_ip=IPv4Address("0.0.0.0"),
            host_port=10_000 + number,
            container_ip=lease.address,
            container_port=80,
        )


def build_database(path: Path, total: int, live: int, mappings: int = 0) -> tuple[int, float]:
    """Write the log and its projections; return the number of events and the seconds taken."""
    started = time.perf_counter()
    engine = open_database(path)
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    state = State()
    rows = []
    count = 0
    with engine.begin() as connection:
        for event in generate_events(total, live, mappings):
            state.apply(event)
            count += 1
            rows.append(
                {
                    "recorded_at": (clock + timedelta(milliseconds=count)).isoformat(timespec="microseconds"),
                    "type": event.type,
                    "schema_version": event.schema_version,
                    "network": event.network,
                    "endpoint": event.endpoint,
                    "payload": json.dumps(to_payload(event), separators=(",", ":")),
                    "actor_user": "root",
                    "actor_pid": 1000 + count % 50_000,
                    "actor_command": f"netstate {event.type} {event.endpoint or event.network}",
                }
            )
            if len(rows) == BATCH:
                connection.execute(insert(events_table), rows)
                rows = []
        if rows:
            connection.execute(insert(events_table), rows)
        projections.write_state(connection, state, count)
    engine.dispose()
    return count, time.perf_counter() - started


def set_checkpoint_back(path: Path) -> None:
    engine = create_sqlite_engine(path)
    with engine.begin() as connection:
        connection.execute(update(checkpoints).values(seq=1))
    engine.dispose()


def timed_command(db: Path, host_netns: str, *args: str) -> tuple[float, dict]:
    """Run `netstate ARGS --json` in a fresh process; return its seconds and its report."""
    command = [sys.executable, "-m", "cli.main", "--db", str(db), "--host-netns", host_netns, *args, "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    return elapsed, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=10_000)
    parser.add_argument("--mappings", type=int, default=0, help="live TCP port mappings among the events (default: 0)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the database (default: a temporary directory)")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="netstate-scale-", dir=options.dir))
    host_netns = f"nsbench-scale-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", host_netns], check=True)
    try:
        db = workdir / "netstate.db"
        count, seconds = build_database(db, options.events, options.live, options.mappings)
        print(
            f"built {count} events, {options.live} live leases, {options.mappings} live mappings, "
            f"in {seconds:.1f} s ({db.stat().st_size / 1e6:.0f} MB)"
        )

        rebuilds = []
        for _ in range(options.runs):
            service = open_service(db, kernel="fake")
            started = time.perf_counter()
            folded = service.rebuild()
            rebuilds.append(time.perf_counter() - started)
            service.close()
        rebuild = statistics.median(rebuilds)
        print(f"rebuild (API): {folded} events in {rebuild:.2f} s median of {options.runs}, {folded / rebuild:,.0f} events/s")

        first, report = timed_command(db, host_netns, "restore")
        print(f"first restore (creates {len(report['changes'])} bridges): {first:.2f} s")
        results = {}
        for name, args, prepare in (
            ("check, projections intact", ("check",), None),
            ("restore, projections intact", ("restore",), None),
            ("restore, checkpoint set back (rebuilds)", ("restore",), set_checkpoint_back),
            ("check --deep", ("check", "--deep"), None),
        ):
            times = []
            for _ in range(options.runs):
                if prepare is not None:
                    prepare(db)
                elapsed, report = timed_command(db, host_netns, *args)
                assert report["in_sync"], report
                times.append(elapsed)
            results[name] = statistics.median(times)
            print(f"{name}: {results[name]:.2f} s median of {options.runs}")

        print()
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"kernel {platform.release()}")
    finally:
        # A restore with mappings starts the proxy; it outlives the namespace's name unless ended.
        pid_file = workdir / "netstate.proxy.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        subprocess.run(["ip", "netns", "del", host_netns], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
