"""Benchmark of `netstate restore` onto an empty namespace against a raw pyroute2 and iptables floor.

Records one network and N endpoints, each plumbed into a container namespace of its own and
publishing two host ports, then restores them onto a managed namespace without links or
rules, as after a reboot: links, ip_forward, the firewall rules and the userland proxy serving
all 2N mappings. The floor, in the same run, creates the same links with pyroute2 directly in
a second managed namespace and a second set of containers: the bridge with its address, and
for each endpoint a veth whose peer is created inside the container, attached to the bridge
and up, then inside the container the address, lo and the peer up, and the default route. It
then applies the same rules, as `iptables-legacy-save` prints them, with one
`iptables-legacy-restore --noflush` batch. The floor starts no proxy. Measured:

- restore through the Python API, timed inside a process that has already imported pyroute2
  and entered the managed namespace, as the floor is timed;
- `netstate restore` end to end in a fresh process, with its imports;
- `netstate restore` again (nothing to change) and `netstate check`, which enter every
  container namespace to compare its side of each veth.

The runs alternate between the floor and netstate; the figures are medians. Every namespace is
created by this script and deleted before it exits.

Usage: python3 bench/restore_bench.py [--endpoints N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SUBNET = "10.200.0.0/16"
GATEWAY = "10.200.0.1"
BRIDGE = "nsbench0"
TAG = f"nsrb{os.getpid()}"
# Host ports FIRST_PORT + 2k (tcp) and FIRST_PORT + 2k + 1 (udp) go to endpoint k.
FIRST_PORT = 20000

# Runs inside a child process: enter the managed namespace, import pyroute2, then time the
# creation of the same links netstate creates, with no bookkeeping.
FLOOR = r"""
import json, os, sys, time
from netstate.kernel.netns import enter_host_netns, entered
from pyroute2 import IPRoute
host, containers = sys.argv[1], json.loads(sys.argv[2])
enter_host_netns(host)
ipr = IPRoute()
started = time.perf_counter()
ipr.link("add", ifname="nsbench0", kind="bridge")
bridge = ipr.link("get", ifname="nsbench0")[0]["index"]
ipr.addr("add", index=bridge, address="10.200.0.1", prefixlen=16)
ipr.link("set", index=bridge, state="up")
for number, container in enumerate(containers):
    path = f"/run/netns/{container}"
    fd = os.open(path, os.O_RDONLY)
    name = f"nsv{number:010x}"
    ipr.link("add", ifname=name, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
    os.close(fd)
    index = ipr.link("get", ifname=name)[0]["index"]
    ipr.link("set", index=index, master=bridge, state="up")
    with entered(path):
        inside = IPRoute()
    peer = inside.link("get", ifname="eth0")[0]["index"]
    address = f"10.200.{(number + 2) // 256}.{(number + 2) % 256}"
    inside.addr("add", index=peer, address=address, prefixlen=16)
    inside.link("set", index=1, state="up")
    inside.link("set", index=peer, state="up")
    inside.route("add", dst="0.0.0.0/0", gateway="10.200.0.1")
    inside.close()
import subprocess
with open(sys.argv[3]) as rules:
    subprocess.run(["iptables-legacy-restore", "--noflush"], stdin=rules, check=True)
print(time.perf_counter() - started)
"""

# Runs inside a child process: open the service on the managed namespace, build the kernel
# adapters (importing pyroute2), then time the restore alone.
NETSTATE_API = r"""
import json, sys, time
from netstate.bootstrap import open_service
service = open_service(sys.argv[1], host_netns=sys.argv[2])
service.kernel
started = time.perf_counter()
report = service.restore()
elapsed = time.perf_counter() - started
assert report.in_sync, report.to_dict()
print(json.dumps({"seconds": elapsed, "changes": len(report.changes)}))
"""


def netns_batch(verb: str, names: list[str]) -> None:
    subprocess.run(["ip", "-batch", "-"], input="".join(f"netns {verb} {n}\n" for n in names), text=True, check=True)


def python(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return done.stdout


def netstate(db: Path, host: str, *args: str) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "cli.main", "--db", str(db), "--host-netns", host, *args, "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"netstate {' '.join(args)} failed: {done.stderr}{done.stdout[:2000]}")
    return elapsed, json.loads(done.stdout)


def record(db: Path, containers: list[str], rules_path: Path) -> None:
    """Record the network and one plumbed endpoint with two mappings per container, touching no
    kernel; write the rules the record needs to `rules_path` as `iptables-legacy-restore` input."""
    from netstate.bootstrap import open_service
    from netstate.firewall.rules import TABLES, desired_ruleset

    service = open_service(db, kernel="fake")
    service.create_network("bench", subnet=SUBNET, bridge=BRIDGE)
    for number, container in enumerate(containers):
        service.allocate(f"e{number}", network="bench", netns=container)
        service.map_ports(f"e{number}", [f"{FIRST_PORT + 2 * number}:80", f"{FIRST_PORT + 2 * number + 1}:53/udp"])
    ruleset = desired_ruleset(service.state())
    service.close()
    lines = []
    for table in TABLES:
        lines.append(f"*{table}")
        lines += [f":{chain} - [0:0]" for chain_table, chain in ruleset.chains if chain_table == table]
        lines += [rule.text for rule in ruleset.rules if rule.table == table]
        lines.append("COMMIT")
    rules_path.write_text("\n".join(lines) + "\n")


def stop_proxy(db: Path) -> None:
    """Kill the proxy that a restore from `db` started, by the pid in its pid file."""
    from netstate.kernel.proxy import process_alive

    pid_file = db.with_suffix(".proxy.pid")
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    if b"netstate.proxy" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        return
    os.kill(pid, 9)
    while process_alive(pid):
        time.sleep(0.01)
    pid_file.unlink()


class Namespaces:
    """A managed namespace and N containers, recreated empty for each run."""

    def __init__(self, role: str, count: int) -> None:
        self.host = f"{TAG}-{role}"
        self.containers = [f"{TAG}-{role}{number}" for number in range(count)]

    def fresh(self) -> None:
        self.delete()
        netns_batch("add", [self.host, *self.containers])

    def delete(self) -> None:
        present = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        gone = [name for name in [self.host, *self.containers] if name in present]
        if gone:
            netns_batch("del", gone)


def settle(limit: float = 120.0) -> None:
    """Wait until the CPUs are idle: the kernel tears down deleted namespaces in the background."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = _cpu_times()
        time.sleep(1.0)
        after = _cpu_times()
        busy = (after[0] - before[0]) / max(1, after[1] - before[1])
        if busy < 0.05:
            return


def _cpu_times() -> tuple[int, int]:
    """Return (busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="netstate-restore-"))
    ours = Namespaces("ns", options.endpoints)
    floor = Namespaces("raw", options.endpoints)
    db = workdir / "netstate.db"
    rules = workdir / "rules.txt"
    results: dict[str, list[float]] = {"floor": [], "api": [], "cli": [], "again": [], "check": []}
    try:
        ours.fresh()
        record(db, ours.containers, rules)
        for run in range(options.runs):
            floor.fresh()
            settle()
            results["floor"].append(float(python(FLOOR, floor.host, json.dumps(floor.containers), str(rules))))

            for mode in ("api", "cli"):
                stop_proxy(db)
                ours.fresh()
                settle()
                if mode == "api":
                    outcome = json.loads(python(NETSTATE_API, str(db), ours.host))
                    seconds, changes = outcome["seconds"], outcome["changes"]
                else:
                    seconds, report = netstate(db, ours.host, "restore")
                    changes = len(report["changes"])
                # The bridge, N veths, ip_forward, the proxy and one firewall sync.
                assert changes == options.endpoints + 4, f"restore made {changes} changes"
                results[mode].append(seconds)

            seconds, report = netstate(db, ours.host, "restore")
            assert report["changes"] == [], report["changes"]
            results["again"].append(seconds)
            seconds, report = netstate(db, ours.host, "check")
            assert report["in_sync"], report["drift"][:3]
            results["check"].append(seconds)
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items()), flush=True)
    finally:
        stop_proxy(db)
        ours.delete()
        floor.delete()
        shutil.rmtree(workdir, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in results.items()}
    spread = {name: f"{min(values):.2f}-{max(values):.2f} s" for name, values in results.items()}
    n = options.endpoints
    print()
    print(f"{n} endpoints with {2 * n} mappings, median of {options.runs} runs (range in brackets)")
    print(f"raw pyroute2+iptables floor:  {median['floor']:.2f} s [{spread['floor']}], {median['floor'] / n * 1000:.1f} ms per endpoint")
    print(f"restore, API:                 {median['api']:.2f} s [{spread['api']}], {median['api'] / n * 1000:.1f} ms per endpoint, "
          f"ratio {median['api'] / median['floor']:.2f}")
    print(f"netstate restore, process:    {median['cli']:.2f} s [{spread['cli']}], ratio {median['cli'] / median['floor']:.2f}")
    print(f"netstate restore, no change:  {median['again']:.2f} s [{spread['again']}]")
    print(f"netstate check, in sync:      {median['check']:.2f} s [{spread['check']}]")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"kernel {platform.release()}")


if __name__ == "__main__":
    main()
