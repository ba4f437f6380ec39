"""Shared fixtures: throwaway network namespaces and a runner for the real `netstate` command.

Every kernel test runs inside namespaces these fixtures create and delete, even on failure; no
test changes a link, address, route, rule or sysctl of the namespace pytest runs in.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def can_make_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


requires_root = pytest.mark.skipif(not can_make_netns(), reason="requires root and iproute2 to create namespaces")


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def make_netns():
    """Return a factory of fresh namespaces (names), all deleted when the test ends."""
    if not can_make_netns():
        pytest.skip("requires root and iproute2 to create namespaces")
    created: list[str] = []

    def factory(tag: str = "ns") -> str:
        name = f"nst{os.getpid() % 100000}-{next(_counter)}-{tag}"[:40]
        _ip("netns", "add", name)
        created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    yield factory
    for name in reversed(created):
        _end_processes_in(name)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _end_processes_in(name: str) -> None:
    """End, by PID, every process still running in a namespace this test created.

    Deleting a namespace's name does not end its processes: a proxy a test forgot to stop
    would keep running after the test.
    """
    listed = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    pids = [int(word) for word in listed.stdout.split() if word.isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def host_ns(make_netns) -> str:
    """A fresh namespace for netstate to manage with --host-netns."""
    return make_netns("host")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "netstate.db"


def run_netstate(*args: str, db: Path, host_netns: str | None = None, env: dict | None = None, timeout: float = 60) -> CliResult:
    """Run the real `netstate` command in a child process and capture its output."""
    command = [sys.executable, "-m", "cli.main", "--db", str(db)]
    if host_netns:
        command += ["--host-netns", host_netns]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("NETSTATE_DB", None)
    done = subprocess.run([*command, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO)
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def netstate_cmd(db_path, host_ns):
    """Return a function running `netstate --db DB --host-netns NS ARGS...` as a subprocess."""

    def run(*args: str, env: dict | None = None, check: bool = True) -> CliResult:
        result = run_netstate(*args, db=db_path, host_netns=host_ns, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"netstate {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    return run


def in_netns(name: str, *command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command inside a namespace created by a fixture."""
    return subprocess.run(["ip", "netns", "exec", name, *command], capture_output=True, text=True, check=check, timeout=timeout)
