"""Helpers and fixtures for the published-port kernel tests: traffic peers and proxy clean-up.

Test modules import the fixtures they use from here. Every process a fixture starts is killed by
its PID when the test ends.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netstate.firewall.sync import is_marked, parse_save
from netstate.kernel.proxy import process_alive

PEER = Path(__file__).with_name("peer.py")
READY_TIMEOUT_S = 10.0


class Servers:
    """Traffic servers started inside namespaces; `stop_all` kills each by its PID."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, netns: str, kind: str, port: int, name: str = "") -> subprocess.Popen:
        command = ["ip", "netns", "exec", netns, sys.executable, str(PEER), f"{kind}-server", str(port)]
        if name:
            command.append(name)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(process)
        readable, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT_S)
        line = process.stdout.readline().strip() if readable else ""
        if line != "ready":
            raise AssertionError(f"{kind} server {name} in {netns} did not start: {line or process.stderr.read()}")
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture
def servers(make_netns):
    started = Servers()
    yield started
    started.stop_all()


def proxy_pid_file(db_path: Path) -> Path:
    return Path(f"{db_path.with_suffix('')}.proxy.pid")


def kill_proxy(db_path: Path) -> None:
    """Kill the proxy that netstate started for `db_path`, if it still runs."""
    try:
        pid = int(proxy_pid_file(db_path).read_text())
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"netstate.proxy" not in command_line:
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def reap_proxy(db_path, host_ns):
    """Kill the proxy of the test's database when the test ends, whatever its outcome."""
    yield
    kill_proxy(db_path)


def ask(
    netns: str, protocol: str, host: str, port: int, message: str = "hello",
    *, timeout: float = 3.0, source_port: int | None = None,
) -> str | None:
    """Send one request from inside `netns`; return the answer, or None when none came."""
    command = ["ip", "netns", "exec", netns, sys.executable, str(PEER), f"{protocol}-ask", host, str(port), message, str(timeout)]
    if source_port is not None:
        command.append(str(source_port))
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else None


def iptables_save(netns: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, "iptables-legacy-save"], capture_output=True, text=True, check=True)
    return done.stdout


def marked_rules(netns: str) -> dict[tuple[str, str], list[str]]:
    """Return netstate's rules in the namespace, by chain, as iptables-legacy-save prints them."""
    chains = parse_save(iptables_save(netns)).chains
    found = {chain: [t for t in texts if is_marked(t)] for chain, texts in chains.items()}
    return {chain: texts for chain, texts in found.items() if texts}


def sysctl(netns: str, key: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, "cat", f"/proc/sys/{key}"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)
