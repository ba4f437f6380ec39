"""Benchmarks of published ports, each compared with a baseline measured in the same run.

    sudo python3 bench/ports.py [--runs 3] [--ports 1000] [--megabytes 1024]

1. Mapping, then unmapping, PORTS ports of one endpoint with one `netstate map` / `netstate
   unmap` command (the CLI, so interpreter start-up and imports count), against applying and
   deleting the same DNAT and FORWARD rules with one `iptables-legacy-restore --noflush` batch.
   The firewall sync alone (python-iptables, in-process) is timed against the same batch too.
2. Bulk TCP throughput through the userland proxy against a direct connection between the
   same two namespaces, with the same Python sender and receiver.
3. Resident memory (VmRSS) of the proxy serving PORTS TCP ports.

Everything runs inside namespaces this script creates and deletes. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netstate.bootstrap import open_service  # noqa: E402
from netstate.firewall.rules import desired_ruleset  # noqa: E402
from netstate.kernel.netns import entered, netns_path  # noqa: E402
from netstate.kernel.proxy import process_alive  # noqa: E402

FIRST_PORT = 20000
SINK_PORT = 9000
CHUNK = 1 << 20


def sh(*command: str, input: str | None = None) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, input=input).stdout


@contextmanager
def namespaces(*names: str):
    tag = f"nsb{os.getpid()}"
    full = [f"{tag}-{name}" for name in names]
    try:
        for name in full:
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        yield full
    finally:
        for name in full:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def netstate(db: Path, host: str, *args: str) -> float:
    """Run the netstate CLI in `host`; return its wall time in seconds."""
    command = [sys.executable, "-m", "cli.main", "--db", str(db), "--host-netns", host, *args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"netstate {' '.join(args[:3])} failed: {done.stderr}")
    return elapsed


def kill_proxy(db: Path) -> None:
    pid_file = Path(f"{db.with_suffix('')}.proxy.pid")
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    if b"netstate.proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
        os.kill(pid, signal.SIGKILL)
        while process_alive(pid):
            time.sleep(0.01)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# 1. Mapping many ports


def bench_mapping(ports: int, proxy: bool) -> dict:
    spec = f"{FIRST_PORT}-{FIRST_PORT + ports - 1}:{FIRST_PORT}-{FIRST_PORT + ports - 1}"
    with namespaces("map") as (host,), tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "netstate.db"
        try:
            netstate(db, host, "network", "create", "web", "--subnet", "10.99.0.0/16", "--bridge", "nsbench0")
            netstate(db, host, "allocate", "c1", "--network", "web")
            if not proxy:
                netstate(db, host, "config", "set", "userland-proxy", "false")
            mapped = netstate(db, host, "map", "c1", spec)
            rules = _rule_count(host)
            pid_file = Path(f"{db.with_suffix('')}.proxy.pid")
            rss = rss_kib(int(pid_file.read_text())) if proxy else None
            unmapped = netstate(db, host, "unmap", "c1", spec)
        finally:
            kill_proxy(db)
    return {"map": mapped, "unmap": unmapped, "rules": rules, "rss_kib": rss}


def _rule_count(host: str) -> int:
    saved = sh("ip", "netns", "exec", host, "iptables-legacy-save")
    return sum(1 for line in saved.splitlines() if line.startswith("-A ") and "netstate web c1" in line)


def rulesets(ports: int):
    """Return netstate's rule sets for one endpoint without and with `ports` bindings."""
    with tempfile.TemporaryDirectory() as directory:
        service = open_service(Path(directory) / "netstate.db", kernel="fake")
        service.create_network("web", subnet="10.99.0.0/16", bridge="nsbench0")
        service.allocate("c1", network="web")
        base = desired_ruleset(service.state())
        service.map_ports("c1", [f"{FIRST_PORT}-{FIRST_PORT + ports - 1}:{FIRST_PORT}-{FIRST_PORT + ports - 1}"])
        full = desired_ruleset(service.state())
        service.close()
    return base, full


def per_binding_rules(full) -> tuple[list[str], list[str]]:
    """Return the DNAT and FORWARD rule texts of the bindings, as netstate writes them."""
    mine = [rule for rule in full.rules if rule.comment == "netstate web c1"]
    return [r.text for r in mine if r.table == "nat"], [r.text for r in mine if r.table == "filter"]


def bench_firewall_sync(base, full) -> dict:
    """Time the python-iptables adapter alone: adding, then removing, the bindings' rules."""
    from netstate.kernel.iptables import IptablesFirewall

    with namespaces("sync") as (host,), entered(netns_path(host)):
        firewall = IptablesFirewall()
        firewall.sync(base)
        started = time.perf_counter()
        firewall.sync(full)
        added = time.perf_counter() - started
        started = time.perf_counter()
        firewall.sync(base)
        deleted = time.perf_counter() - started
    return {"add": added, "delete": deleted}


def bench_restore(nat: list[str], filter_rules: list[str]) -> dict:
    add = "*nat\n" + "\n".join(nat) + "\nCOMMIT\n*filter\n" + "\n".join(filter_rules) + "\nCOMMIT\n"
    delete = add.replace("\n-A ", "\n-D ")
    with namespaces("restore") as (host,):
        sh("ip", "netns", "exec", host, "iptables-legacy", "-t", "nat", "-N", "NETSTATE")
        sh("ip", "netns", "exec", host, "iptables-legacy", "-N", "NETSTATE-FORWARD")
        restore = ["ip", "netns", "exec", host, "iptables-legacy-restore", "--noflush"]
        started = time.perf_counter()
        sh(*restore, input=add)
        added = time.perf_counter() - started
        started = time.perf_counter()
        sh(*restore, input=delete)
        deleted = time.perf_counter() - started
    return {"add": added, "delete": deleted}


# 2. Throughput


SINK = r"""
import socket, sys
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1]))); server.listen(8); print("ready", flush=True)
buffer = bytearray(1 << 20)
while True:
    connection, _ = server.accept()
    total = 0
    while (n := connection.recv_into(buffer)):
        total += n
    connection.sendall(f"{total}\n".encode()); connection.close()
"""


def send_bulk(host: str, address: tuple[str, int], megabytes: int) -> float:
    """Send `megabytes` MiB from inside `host`; return MiB per second, receipt confirmed."""
    with entered(netns_path(host)):
        sock = socket.socket()
    payload = memoryview(os.urandom(CHUNK))
    with sock:
        sock.connect(address)
        started = time.perf_counter()
        for _ in range(megabytes):
            sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = int(sock.makefile("rb").readline())
        elapsed = time.perf_counter() - started
    if received != megabytes * CHUNK:
        raise SystemExit(f"sink received {received} bytes, expected {megabytes * CHUNK}")
    return megabytes / elapsed


def bench_throughput(runs: int, megabytes: int) -> dict:
    with namespaces("phost", "ppeer") as (host, peer), tempfile.TemporaryDirectory() as directory:
        sh("ip", "-n", host, "link", "add", "nsb0", "type", "veth", "peer", "name", "eth0", "netns", peer)
        sh("ip", "-n", host, "addr", "add", "10.98.0.1/24", "dev", "nsb0")
        sh("ip", "-n", host, "link", "set", "nsb0", "up")
        sh("ip", "-n", peer, "addr", "add", "10.98.0.2/24", "dev", "eth0")
        sh("ip", "-n", peer, "link", "set", "eth0", "up")
        sink = subprocess.Popen(["ip", "netns", "exec", peer, sys.executable, "-c", SINK, str(SINK_PORT)], stdout=subprocess.PIPE, text=True)
        db = Path(directory) / "netstate.db"
        try:
            select.select([sink.stdout], [], [], 10)
            assert sink.stdout.readline().strip() == "ready"
            from ipaddress import IPv4Address

            from netstate.domain.events import Protocol
            from netstate.domain.state import Binding, BindingKey
            from netstate.kernel.proxy import ProxySupervisor

            supervisor = ProxySupervisor(db.with_suffix(""))
            key = BindingKey(Protocol.TCP, IPv4Address("127.0.0.1"), SINK_PORT)
            binding = Binding(key=key, network="bench", endpoint="sink", container_ip=IPv4Address("10.98.0.2"), container_port=SINK_PORT)
            with entered(netns_path(host)):
                supervisor.sync([binding])
            direct, proxied = [], []
            for _ in range(runs):
                direct.append(send_bulk(host, ("10.98.0.2", SINK_PORT), megabytes))
                proxied.append(send_bulk(host, ("127.0.0.1", SINK_PORT), megabytes))
            with entered(netns_path(host)):
                supervisor.stop()
        finally:
            sink.kill()
            sink.wait()
            kill_proxy(db)
    return {"direct": statistics.median(direct), "proxied": statistics.median(proxied)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--megabytes", type=int, default=1024)
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark creates network namespaces")

    base, full = rulesets(options.ports)
    nat, filter_rules = per_binding_rules(full)
    results = {"proxy": [], "no-proxy": [], "restore": [], "sync": []}
    for _ in range(options.runs):
        results["proxy"].append(bench_mapping(options.ports, proxy=True))
        results["no-proxy"].append(bench_mapping(options.ports, proxy=False))
        results["restore"].append(bench_restore(nat, filter_rules))
        results["sync"].append(bench_firewall_sync(base, full))
    throughput = bench_throughput(options.runs, options.megabytes)

    def median(kind: str, field: str) -> float:
        return statistics.median(r[field] for r in results[kind])

    restore_add, restore_delete = median("restore", "add"), median("restore", "delete")
    print(f"Machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, kernel {platform.release()}, Python {platform.python_version()}")
    print(f"Medians of {options.runs} runs; {options.ports} ports = {len(nat) + len(filter_rules)} rules ({len(nat)} DNAT, {len(filter_rules)} FORWARD).\n")
    print("| operation | netstate | iptables-legacy-restore batch | ratio |")
    print("|---|---|---|---|")
    for kind, label in (("proxy", "proxy on"), ("no-proxy", "proxy off")):
        mapped, unmapped = median(kind, "map"), median(kind, "unmap")
        print(f"| map {options.ports} ports, {label} | {mapped * 1000:.0f} ms | {restore_add * 1000:.1f} ms | {mapped / restore_add:.0f}x |")
        print(f"| unmap {options.ports} ports, {label} | {unmapped * 1000:.0f} ms | {restore_delete * 1000:.1f} ms | {unmapped / restore_delete:.0f}x |")
    sync_add, sync_delete = median("sync", "add"), median("sync", "delete")
    print(f"| firewall sync alone, add | {sync_add * 1000:.0f} ms | {restore_add * 1000:.1f} ms | {sync_add / restore_add:.0f}x |")
    print(f"| firewall sync alone, delete | {sync_delete * 1000:.0f} ms | {restore_delete * 1000:.1f} ms | {sync_delete / restore_delete:.0f}x |")
    print(f"\nRules per map checked in the kernel: {median('proxy', 'rules'):.0f}")
    print(f"Proxy resident memory with {options.ports} TCP ports: {median('proxy', 'rss_kib') / 1024:.1f} MiB")
    ratio = throughput["proxied"] / throughput["direct"]
    print(f"\nBulk TCP, {options.megabytes} MiB: direct {throughput['direct']:.0f} MiB/s, through the proxy {throughput['proxied']:.0f} MiB/s, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
