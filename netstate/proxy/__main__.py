"""Entry point of the userland proxy process.

    python3 -m netstate.proxy --config FILE --control NAME [--pid-file FILE] [--ready-fd N]

Start-up handshake: once the control socket listens, the pid file is written and the mapping
list is loaded, the proxy writes "ready" and a newline to the file descriptor given with
--ready-fd and closes it; if start-up fails it writes "error: " and the reason instead. The
supervisor waits for that line with a timeout.

Signals: SIGTERM and SIGINT stop the proxy, SIGHUP reloads the mapping list.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import resource
import signal
import socket
import struct
import sys
from pathlib import Path

from netstate.proxy.config import MAX_MESSAGE, encode_message, read_config
from netstate.proxy.server import DEFAULT_UDP_IDLE_TIMEOUT_S, ProxyServer

log = logging.getLogger("netstate.proxy")

_PEERCRED = struct.Struct("3i")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m netstate.proxy", description="netstate's userland proxy")
    parser.add_argument("--config", type=Path, required=True, help="mapping list file (JSON)")
    parser.add_argument("--control", required=True, help="abstract Unix socket name, without the leading NUL")
    parser.add_argument("--pid-file", type=Path, help="file to write this process's pid to")
    parser.add_argument("--ready-fd", type=int, help="file descriptor to report readiness on")
    parser.add_argument(
        "--udp-idle-timeout", type=float, default=DEFAULT_UDP_IDLE_TIMEOUT_S,
        help="seconds after which an idle UDP client flow is closed (default: %(default)s)",
    )
    return parser.parse_args(argv)


class Proxy:
    """The proxy process: listeners, the control socket and signal handling."""

    def __init__(self, options: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self.options = options
        self.loop = loop
        self.server = ProxyServer(loop, options.udp_idle_timeout)
        self.stopped = asyncio.Event()
        self.control: socket.socket | None = None

    def reload(self) -> dict:
        try:
            mappings = read_config(self.options.config)
        except (OSError, ValueError, TypeError) as err:
            log.error("cannot read mapping list %s: %s", self.options.config, err)
            return {"error": f"cannot read {self.options.config}: {err}"}
        return self.server.apply(mappings)

    async def start(self) -> None:
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.bind("\0" + self.options.control)
        control.listen(16)
        control.setblocking(False)
        self.control = control
        await asyncio.start_unix_server(self._handle, sock=control)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stopped.set)
        self.loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        if self.options.pid_file:
            _write_pid(self.options.pid_file)
        result = self.reload()
        log.info("started, pid %d, serving %d mapping(s)", os.getpid(), result.get("serving", 0))

    def _reload_on_signal(self) -> None:
        result = self.reload()
        log.info("reloaded on SIGHUP: %s", json.dumps(result))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _peer_allowed(writer.get_extra_info("socket")):
                writer.write(encode_message({"error": "permission denied"}))
                return
            line = await reader.readline()
            if len(line) > MAX_MESSAGE:
                return
            request = json.loads(line or b"{}")
            op = request.get("op")
            if op == "reload":
                reply = self.reload()
            elif op == "status":
                reply = {"pid": os.getpid(), "serving": self.server.serving()}
            else:
                reply = {"error": f"unknown op {op!r}"}
            writer.write(encode_message(reply))
            await writer.drain()
        except (OSError, ValueError) as err:
            log.warning("control request failed: %s", err)
        finally:
            writer.close()

    def stop(self) -> None:
        self.server.close()
        if self.control is not None:
            self.control.close()
        pid_file = self.options.pid_file
        if pid_file and _read_pid(pid_file) == os.getpid():
            pid_file.unlink(missing_ok=True)
        log.info("stopped")


def _peer_allowed(sock) -> bool:
    if sock is None:
        return False
    _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid in (0, os.getuid())


def _write_pid(path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{os.getpid()}\n")
    os.replace(temporary, path)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _report(fd: int | None, message: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, message.encode() + b"\n")
        os.close(fd)
    except OSError:
        pass  # the supervisor gave up waiting; the log has the reason


async def _run(options: argparse.Namespace) -> int:
    proxy = Proxy(options, asyncio.get_running_loop())
    try:
        await proxy.start()
    except OSError as err:
        reason = "another proxy already serves this mapping list" if err.errno == errno.EADDRINUSE else err.strerror
        log.error("cannot start: %s", reason)
        _report(options.ready_fd, f"error: {reason}")
        proxy.stop()
        return 1
    _report(options.ready_fd, "ready")
    await proxy.stopped.wait()
    proxy.stop()
    return 0


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit and return it.

    Each listener takes one descriptor and each relayed TCP connection six (two sockets, two
    pipes), so the common soft limit of 1,024 would cap the proxy near 1,000 ports.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s netstate-proxy[%(process)d] %(levelname)s: %(message)s")
    limit = raise_open_files_limit()
    log.info("open files limit %d", limit)
    return asyncio.run(_run(options))


if __name__ == "__main__":
    sys.exit(main())
