"""Benchmark the core of netstate against its floors, side by side in one run.

(a) Allocations plus releases per second through the Python API, against the rate of plain
    sqlite3 commits with the same settings (WAL, synchronous=FULL) on the same disk, and
    against plain sqlite3 running the statements netstate runs, on netstate's schema.
(b) Wall time of one `netstate allocate` process, against a process that only imports
    SQLAlchemy and Typer; `-X importtime` shows which heavy modules the command loads.

Runs alternate between the two sides of each comparison so that drift in disk or CPU speed
hits both. Nothing touches the kernel: the API side uses the fake kernel, and the command
allocates on an existing network without --netns, a path that never opens netlink.

Usage: python3 bench/run_core.py [--dir DIR] [--ops N] [--slices S] [--held H ...] [--runs K]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HEAVY = ("pyroute2", "iptc", "alembic", "rich", "pydantic")


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


# (a) Commit rate


class RawCommits:
    """Plain sqlite3 with netstate's settings: one event-sized row inserted per transaction."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, recorded_at TEXT, type TEXT, "
            "schema_version INTEGER, network TEXT, endpoint TEXT, payload TEXT, actor_user TEXT, "
            "actor_pid INTEGER, actor_command TEXT)"
        )
        payload = json.dumps({"address": "10.128.0.2", "netns": None, "ifname": None, "host_ifname": None, "requested": False})
        self.row = ("2026-01-01T00:00:00.000000+00:00", "AddressAllocated", 1, "bench", "e", payload, "root", 1, "bench")

    def run(self, commits: int) -> float:
        """Return the seconds `commits` transactions took."""
        start = time.perf_counter()
        for _ in range(commits):
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.execute(
                "INSERT INTO events (recorded_at, type, schema_version, network, endpoint, payload, "
                "actor_user, actor_pid, actor_command) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.row,
            )
            self.connection.execute("COMMIT")
        return time.perf_counter() - start

    def close(self) -> None:
        self.connection.close()


class RawSameStatements:
    """Plain sqlite3 on netstate's schema, running the statements an allocate and a release run.

    This separates what the schema costs (pages written per commit) from what Python costs.
    """

    def __init__(self, path: Path) -> None:
        from netstate.store.engine import open_database

        open_database(path).dispose()
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute(
            "INSERT INTO networks (name, subnet, gateway, bridge, icc, last_address, seq) "
            "VALUES ('bench', '10.128.0.0/12', '10.128.0.1', 'nsbench0', 1, NULL, 0)"
        )
        self.next = 0

    def _command(self, endpoint: str, address: str, allocate: bool) -> None:
        run = self.connection.execute
        run("BEGIN IMMEDIATE")
        run("SELECT max(seq) FROM events").fetchone()
        payload = json.dumps({"address": address, "netns": None, "ifname": None, "host_ifname": None, "requested": False})
        seq = run(
            "INSERT INTO events (recorded_at, type, schema_version, network, endpoint, payload, "
            "actor_user, actor_pid, actor_command) VALUES (?, ?, 1, 'bench', ?, ?, 'root', 1, 'bench')",
            ("2026-01-01T00:00:00.000000+00:00", "AddressAllocated" if allocate else "AddressReleased", endpoint, payload),
        ).lastrowid
        if allocate:
            run(
                "INSERT INTO leases (network, endpoint, address, netns, ifname, host_ifname, seq) "
                "VALUES ('bench', ?, ?, NULL, NULL, NULL, ?)",
                (endpoint, address, seq),
            )
            run("UPDATE networks SET last_address = ? WHERE name = 'bench'", (address,))
        else:
            run("DELETE FROM leases WHERE network = 'bench' AND endpoint = ?", (endpoint,))
        run(
            "INSERT INTO checkpoints (name, seq) VALUES ('projections', ?) "
            "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            (seq,),
        )
        run("COMMIT")

    def run(self, ops: int) -> float:
        """Return the seconds `ops` commands took, as ApiCommands.run counts them."""
        start = time.perf_counter()
        for _ in range(ops // 2):
            endpoint = f"e{self.next}"
            address = f"10.{128 + self.next // 65536 % 16}.{self.next // 256 % 256}.{self.next % 256}"
            self.next += 1
            self._command(endpoint, address, allocate=True)
            self._command(endpoint, address, allocate=False)
        return time.perf_counter() - start

    def close(self) -> None:
        self.connection.close()


class ApiCommands:
    """The Python API on the fake kernel, with `held` addresses held throughout."""

    def __init__(self, path: Path, held: int) -> None:
        from netstate.bootstrap import open_service

        self.service = open_service(path, kernel="fake")
        self.service.create_network("bench", subnet="10.128.0.0/12", bridge="nsbench0")
        for i in range(held):
            self.service.allocate(f"pre{i}", network="bench")
        self.next = 0

    def run(self, ops: int) -> float:
        """Return the seconds `ops` commands took: allocate, then release, of fresh endpoints."""
        start = time.perf_counter()
        for _ in range(ops // 2):
            endpoint = f"e{self.next}"
            self.next += 1
            self.service.allocate(endpoint, network="bench")
            self.service.release(endpoint)
        return time.perf_counter() - start

    def close(self) -> None:
        self.service.close()


def commit_rates(directory: Path, ops: int, held: int, slices: int) -> dict:
    """Alternate slices of the three sides; return each side's rate.

    The disk's sync speed drifts within seconds, so the sides take turns in small slices and
    each side's rate is its total count over its total time.
    """
    sides = {
        "raw": RawCommits(directory / f"raw-{held}.db"),
        "same_statements": RawSameStatements(directory / f"same-{held}.db"),
        "api": ApiCommands(directory / f"api-{held}.db", held),
    }
    per_slice = max(2, ops // slices // 2 * 2)
    seconds = dict.fromkeys(sides, 0.0)
    ratios = []
    try:
        for side in sides.values():
            side.run(per_slice)  # warm-up
        for _ in range(slices):
            taken = {name: side.run(per_slice) for name, side in sides.items()}
            for name, value in taken.items():
                seconds[name] += value
            ratios.append(taken["raw"] / taken["api"])
    finally:
        for side in sides.values():
            side.close()
    count = per_slice * slices
    return {
        **{f"{name}_per_second": count / value for name, value in seconds.items()},
        "ratio": seconds["raw"] / seconds["api"],
        "slice_ratio_median": statistics.median(ratios),
        "slice_ratio_min": min(ratios),
        "slice_ratio_max": max(ratios),
    }


# (b) One command from the shell


def command_env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NETSTATE_KERNEL": "fake"}
    env.pop("NETSTATE_DB", None)
    return env


def timed_run(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - start


def imported_modules(argv: list[str], env: dict) -> set[str]:
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, check=True, capture_output=True, text=True, cwd=REPO
    )
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def command_times(directory: Path, runs: int) -> dict:
    db = directory / "cli.db"
    env = command_env()
    python = sys.executable
    netstate = [python, "-m", "cli.main", "--db", str(db)]
    subprocess.run([*netstate, "network", "create", "bench", "--subnet", "10.128.0.0/12", "--bridge", "nsbench0"],
                   env=env, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    floor = [python, "-c", "import sqlalchemy, typer"]

    # Warm the page cache and the bytecode caches once.
    for argv in (floor, [*netstate, "allocate", "warm", "--network", "bench"]):
        timed_run(argv, env)

    samples: dict[str, list[float]] = {"floor": [], "allocate": []}
    for i in range(runs):
        samples["floor"].append(timed_run(floor, env))
        samples["allocate"].append(timed_run([*netstate, "allocate", f"c{i}", "--network", "bench"], env))

    loaded = imported_modules([*netstate, "allocate", "probe", "--network", "bench"], env)
    heavy = {name: any(m == name or m.startswith(name + ".") for m in loaded) for name in HEAVY}
    return {"samples": samples, "heavy_imported": heavy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="directory on the disk to measure (default: /var/tmp)")
    parser.add_argument("--ops", type=int, default=4000, help="commits per side in (a) (default: 4000)")
    parser.add_argument("--held", type=int, nargs="+", default=[100, 2000], help="addresses held while (a) runs, one run of (a) each (default: 100 2000)")
    parser.add_argument("--slices", type=int, default=40, help="alternating slices per side in (a) (default: 40)")
    parser.add_argument("--runs", type=int, default=15, help="process starts per side in (b) (default: 15)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="netstate-bench-", dir=args.dir))
    try:
        results = {"machine": machine(), "dir": str(args.dir), "commit_rate": {}}
        for held in args.held:
            results["commit_rate"][held] = commit_rates(directory, args.ops, held, args.slices)
        results["command"] = command_times(directory, args.runs)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    m = results["machine"]
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}")
    print(f"disk: {args.dir}")
    print("\n(a) commits per second, both sides in alternating slices (target: API >= 0.5 x raw)")
    for held, rate in results["commit_rate"].items():
        print(
            f"  {held:>5} held: raw sqlite3 {rate['raw_per_second']:7.0f}/s   "
            f"sqlite3 with netstate's statements {rate['same_statements_per_second']:7.0f}/s   "
            f"API allocate+release {rate['api_per_second']:7.0f}/s"
        )
        print(
            f"             API / raw: {rate['ratio']:.2f} (per slice: median {rate['slice_ratio_median']:.2f}, "
            f"{rate['slice_ratio_min']:.2f} to {rate['slice_ratio_max']:.2f})"
        )
    samples = results["command"]["samples"]
    floor = statistics.median(samples["floor"])
    allocate = statistics.median(samples["allocate"])
    print(f"\n(b) one process, median of {args.runs} (target: allocate <= 1.3 x floor)")
    print(f"  python -c 'import sqlalchemy, typer'  {floor * 1000:6.0f} ms")
    print(f"  netstate allocate                     {allocate * 1000:6.0f} ms   ratio {allocate / floor:.2f}")
    heavy = results["command"]["heavy_imported"]
    print("  imported by allocate: " + ", ".join(f"{name} {'yes' if loaded else 'no'}" for name, loaded in heavy.items()))


if __name__ == "__main__":
    main()
