"""Supervising the userland proxy: start with a readiness handshake, reload, status, stop.

The proxy's files sit next to the database, named after it: for /var/lib/netstate/netstate.db
they are netstate.proxy.json (the mapping list), netstate.proxy.pid and netstate.proxy.log.
`restore` and `check` find a running proxy through its control socket or its pid file.

The proxy process runs in the network namespace of the process that starts it, which is the
managed one with `--host-netns`, and outlives that process.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import netstate
from netstate.crash import crashpoint
from netstate.domain.events import Protocol
from netstate.domain.state import Binding, BindingKey
from netstate.errors import KernelError, PortInUse
from netstate.proxy.config import ProxyMapping, control_name, encode_message, read_config, write_config

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """A running proxy: its pid and the mappings it listens on."""

    pid: int
    serving: tuple[ProxyMapping, ...]


def to_mapping(binding: Binding) -> ProxyMapping:
    """Return the proxy's view of a binding."""
    key = binding.key
    return ProxyMapping(
        protocol=key.protocol.value,
        host_ip=str(key.host_ip),
        host_port=key.host_port,
        container_ip=str(binding.container_ip),
        container_port=binding.container_port,
    )


class ProxySupervisor:
    """Keeps one proxy process serving exactly the given bindings, or none when there are none."""

    def __init__(
        self,
        state_prefix: Path,
        *,
        python: str = sys.executable,
        udp_idle_timeout: float | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.config_path = Path(f"{state_prefix}.proxy.json")
        self.pid_path = Path(f"{state_prefix}.proxy.pid")
        self.log_path = Path(f"{state_prefix}.proxy.log")
        self.control = control_name(self.config_path)
        self.python = python
        self.udp_idle_timeout = udp_idle_timeout
        self.ready_timeout = ready_timeout
        self._started: subprocess.Popen | None = None

    def sync(self, bindings: Iterable[Binding], required: frozenset[BindingKey] | None = None) -> bool:
        """Serve exactly `bindings`, starting or stopping the proxy as needed.

        Returns True when a listener was opened or closed, or the process started or stopped.

        Raises:
            PortInUse: another program holds the host port of a required binding (every binding
                when `required` is None); other failures are logged as warnings.
            KernelError: the proxy cannot start, or cannot listen on a required binding's port
                for another reason.
        """
        mappings = sorted((to_mapping(b) for b in bindings), key=lambda m: m.key)
        if read_config(self.config_path) != mappings:
            self.config_path.parent.mkdir(parents=True, exist_ok=True)
            write_config(self.config_path, mappings)
        if not mappings:
            return self.stop()

        started = False
        if self.status() is None:
            self._start()
            started = True
            crashpoint("proxy:started")
        reply = self._request({"op": "reload"})
        if "error" in reply:
            raise KernelError(f"the userland proxy cannot reload: {reply['error']}; see {self.log_path}")
        failures = reply.get("failed", [])
        fatal = [f for f in failures if required is None or _failure_key(f) in required]
        for failure in failures:
            if failure not in fatal:
                log.warning("userland proxy cannot serve a recorded port: %s", _failure_error([failure]))
        if fatal:
            raise _failure_error(fatal)
        return started or bool(reply.get("opened") or reply.get("closed"))

    def status(self) -> ProxyStatus | None:
        """Return the running proxy's pid and mappings, or None when no proxy responds."""
        try:
            reply = self._request({"op": "status"})
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        serving = tuple(sorted((ProxyMapping(**m) for m in reply.get("serving", [])), key=lambda m: m.key))
        return ProxyStatus(pid=int(reply["pid"]), serving=serving)

    def stop(self) -> bool:
        """Stop the proxy if one runs; return True when one was stopped."""
        try:
            status = self.status()
        except KernelError:
            status = None  # it does not respond, so the pid file has to find it
        pid = status.pid if status is not None else _read_pid(self.pid_path)
        if pid is None:
            return False
        if status is None and not self._is_proxy(pid):
            self.pid_path.unlink(missing_ok=True)
            return False
        _signal(pid, signal.SIGTERM)
        if not self._wait_gone(pid, STOP_TIMEOUT_S):
            log.warning("userland proxy (pid %d) ignored SIGTERM for %.0f s; killing it", pid, STOP_TIMEOUT_S)
            _signal(pid, signal.SIGKILL)
            self._wait_gone(pid, STOP_TIMEOUT_S)
        self.pid_path.unlink(missing_ok=True)
        log.info("userland proxy stopped (pid %d)", pid)
        return True

    def _start(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        command = [
            self.python, "-m", "netstate.proxy",
            "--config", str(self.config_path),
            "--control", self.control,
            "--pid-file", str(self.pid_path),
            "--ready-fd", str(write_fd),
        ]
        if self.udp_idle_timeout is not None:
            command += ["--udp-idle-timeout", str(self.udp_idle_timeout)]
        package_root = str(Path(netstate.__file__).resolve().parent.parent)
        python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        try:
            with open(self.log_path, "ab") as log_file:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                    pass_fds=(write_fd,), start_new_session=True, cwd="/",
                    env={**os.environ, "PYTHONPATH": python_path},
                )
        except OSError as err:
            os.close(read_fd)
            raise KernelError(f"cannot start the userland proxy: {err.strerror}") from err
        finally:
            os.close(write_fd)
        self._await_ready(read_fd, process)
        self._started = process
        log.info("userland proxy started (pid %d), log %s", process.pid, self.log_path)

    def _await_ready(self, read_fd: int, process: subprocess.Popen) -> None:
        """Wait for the proxy's "ready" line; kill it and raise if it fails or times out."""
        deadline = time.monotonic() + self.ready_timeout
        received = b""
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    process.kill()
                    process.wait()
                    msg = f"the userland proxy did not report ready within {self.ready_timeout:g} s; see {self.log_path}"
                    raise KernelError(msg)
                readable, _, _ = select.select([read_fd], [], [], remaining)
                if not readable:
                    continue
                chunk = os.read(read_fd, 4096)
                if not chunk:
                    break
                received += chunk
        finally:
            os.close(read_fd)
        message = received.decode(errors="replace").strip()
        if message == "ready":
            return
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reason = message.removeprefix("error: ") or _last_line(self.log_path) or "it exited without a reason"
        raise KernelError(f"the userland proxy failed to start: {reason}; see {self.log_path}")

    def _request(self, request: dict) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONTROL_TIMEOUT_S)
            try:
                sock.connect("\0" + self.control)
                sock.sendall(encode_message(request))
                received = b""
                while not received.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except TimeoutError as err:
                raise KernelError(f"the userland proxy did not respond within {CONTROL_TIMEOUT_S:g} s; see {self.log_path}") from err
        try:
            return json.loads(received)
        except ValueError as err:
            raise KernelError(f"the userland proxy sent an unreadable reply; see {self.log_path}") from err

    def _is_proxy(self, pid: int) -> bool:
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"netstate.proxy" in command_line and self.control.encode() in command_line

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._started is not None and self._started.pid == pid:
            try:
                self._started.wait(timeout=timeout)
                self._started = None
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return True
            time.sleep(0.01)
        return False


def _failure_key(failure: dict) -> BindingKey:
    mapping = failure["mapping"]
    return BindingKey(Protocol(mapping["protocol"]), IPv4Address(mapping["host_ip"]), mapping["host_port"])


def _failure_error(failures: list[dict]) -> Exception:
    """Turn the proxy's list of mappings it could not serve into one error about the first."""
    first = failures[0]
    mapping = ProxyMapping(**first["mapping"])
    where = f"{mapping.host_ip}:{mapping.host_port}/{mapping.protocol}"
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    number = first.get("errno")
    if number == errno.EADDRINUSE:
        msg = f"host port {where} is in use by another program{more}; stop it or pick another port"
        return PortInUse(msg, holder="another program")
    if number == errno.EADDRNOTAVAIL:
        msg = f"host address {mapping.host_ip} is not assigned to any interface of the managed namespace; cannot publish {where}{more}"
        return KernelError(msg)
    if number in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT):
        msg = (
            f"this kernel does not support {mapping.protocol} sockets, so the userland proxy cannot "
            f"serve {where}{more}; turn the proxy off with `netstate config set userland-proxy false`"
        )
        return KernelError(msg)
    return KernelError(f"the userland proxy cannot listen on {where}: {first.get('error')}{more}")


def process_alive(pid: int) -> bool:
    """Return whether a process exists and has not exited; a zombie counts as exited.

    The proxy outlives the command that started it, so its parent is init, which may reap it
    late (or, in some containers, never).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may contain spaces.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
