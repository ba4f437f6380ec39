"""The proxy's event loop: TCP and SCTP listeners relayed with splice(2), UDP with client flows.

TCP bytes never enter Python: each direction of a connection moves through a pipe with
splice(2), socket to pipe and pipe to socket, so throughput stays close to a direct connection.

UDP has no connections, so the proxy keeps a flow per client (address and port, and the host
address it wrote to): a socket connected to the container carries the client's datagrams there
and the replies back. A flow idle for `udp_idle_timeout` seconds is closed; beyond
MAX_UDP_FLOWS per port the least recently used flow is closed. Replies leave from the host
address the client wrote to (IP_PKTINFO), even on a wildcard listener.

Design limitations:
- SCTP is relayed as a byte stream over one-to-one sockets; message boundaries are not kept.
  NOTE: the SCTP relay has only run on kernels without SCTP sockets, where listening fails.
- A mapping whose container address changes keeps its listener, but its open connections and
  flows are closed, since they lead to the old container.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
import struct
import time
from collections import OrderedDict

from netstate.proxy.config import ProxyMapping

log = logging.getLogger("netstate.proxy")

LISTEN_BACKLOG = 1024
CONNECT_TIMEOUT_S = 10.0
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031
# Splice rounds per wake-up of one direction before other connections get a turn.
BURST = 16
DEFAULT_UDP_IDLE_TIMEOUT_S = 90.0
MAX_UDP_FLOWS = 4096
UDP_BUFFER = 65535
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("=i4s4s")
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "sctp": getattr(socket, "IPPROTO_SCTP", 132)}


class RateLimitedLog:
    """Logs a repeated warning at most once per `interval` seconds, with the count since."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        skipped = self._suppressed.pop(key, 0)
        self._last[key] = now
        suffix = f" ({skipped} more since the last report)" if skipped else ""
        log.warning(message + suffix, *args)


_warnings = RateLimitedLog()


# TCP and SCTP


class _Direction:
    """One direction of a relayed connection: `source` to `sink` through a pipe."""

    def __init__(self, relay: _StreamRelay, source: socket.socket, sink: socket.socket) -> None:
        self.relay = relay
        self.loop = relay.loop
        self.source, self.sink = source, sink
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.write_fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: the default 64 KiB pipe still works
        self.pending = 0
        self.eof = False
        self.done = False

    def start(self) -> None:
        self.loop.add_reader(self.source, self.on_readable)

    def on_readable(self) -> None:
        for _ in range(BURST):
            try:
                moved = os.splice(self.source.fileno(), self.write_fd, PIPE_SIZE, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                return  # the pipe is drained after every round, so the socket is empty
            except OSError as err:
                self.relay.close(f"read failed: {err.strerror}")
                return
            if moved == 0:
                self.eof = True
                self.loop.remove_reader(self.source)
                if self.pending == 0:
                    self.finish()
                return
            self.pending += moved
            if not self.drain():
                if not self.relay.closed:
                    # The sink is full: stop reading until it takes the pipe's bytes.
                    self.loop.remove_reader(self.source)
                    self.loop.add_writer(self.sink, self.on_writable)
                return

    def on_writable(self) -> None:
        if not self.drain():
            return
        self.loop.remove_writer(self.sink)
        if self.eof:
            self.finish()
        else:
            self.loop.add_reader(self.source, self.on_readable)

    def drain(self) -> bool:
        """Move the pipe's bytes to the sink; return False while some are left."""
        while self.pending:
            try:
                moved = os.splice(self.read_fd, self.sink.fileno(), self.pending, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                return False
            except OSError as err:
                self.relay.close(f"write failed: {err.strerror}")
                return False
            self.pending -= moved
        return True

    def finish(self) -> None:
        try:
            self.sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer is gone already; closing follows
        self.done = True
        self.relay.direction_done()

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            os.close(fd)


class _StreamRelay:
    """A client connection and its upstream connection, relayed both ways."""

    def __init__(self, listener: StreamListener, client: socket.socket, upstream: socket.socket) -> None:
        self.listener = listener
        self.loop = listener.loop
        self.client, self.upstream = client, upstream
        self.closed = False
        self.directions = (_Direction(self, client, upstream), _Direction(self, upstream, client))

    def start(self) -> None:
        for direction in self.directions:
            direction.start()

    def direction_done(self) -> None:
        if all(direction.done for direction in self.directions):
            self.close(None)

    def close(self, reason: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        if reason:
            log.debug("connection through %s closed: %s", self.listener.mapping.describe(), reason)
        for sock in (self.client, self.upstream):
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
            sock.close()
        for direction in self.directions:
            direction.close()
        self.listener.relays.discard(self)


class StreamListener:
    """Accepts TCP (or SCTP) connections on a host port and relays each to the container."""

    def __init__(self, loop: asyncio.AbstractEventLoop, mapping: ProxyMapping) -> None:
        self.loop = loop
        self.mapping = mapping
        self.relays: set[_StreamRelay] = set()
        self.connecting: set[asyncio.Task] = set()
        self.sock: socket.socket | None = None

    def open(self) -> None:
        proto = _PROTOCOLS[self.mapping.protocol]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.mapping.host_ip, self.mapping.host_port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.loop.add_reader(sock, self._accept)

    def _accept(self) -> None:
        for _ in range(BURST):
            try:
                client, _address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                _warnings.warning(f"accept {self.mapping.key}", "accept on %s failed: %s", self.mapping.describe(), err.strerror)
                return
            client.setblocking(False)
            task = self.loop.create_task(self._connect(client))
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)

    async def _connect(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM, _PROTOCOLS[self.mapping.protocol])
        upstream.setblocking(False)
        target = (self.mapping.container_ip, self.mapping.container_port)
        try:
            await asyncio.wait_for(self.loop.sock_connect(upstream, target), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as err:
            reason = getattr(err, "strerror", None) or "timed out"
            _warnings.warning(f"connect {self.mapping.key}", "cannot connect %s: %s", self.mapping.describe(), reason)
            client.close()
            upstream.close()
            return
        except asyncio.CancelledError:
            client.close()
            upstream.close()
            raise
        if self.sock is None:  # the listener was closed while connecting
            client.close()
            upstream.close()
            return
        relay = _StreamRelay(self, client, upstream)
        self.relays.add(relay)
        relay.start()

    def retarget(self, mapping: ProxyMapping) -> None:
        self.mapping = mapping
        self._close_connections("the mapping now leads elsewhere")

    def _close_connections(self, reason: str) -> None:
        for task in list(self.connecting):
            task.cancel()
        for relay in list(self.relays):
            relay.close(reason)

    def close(self) -> None:
        if self.sock is not None:
            self.loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None
        self._close_connections("the mapping was removed")


# UDP


class _UdpFlow:
    """One client's datagrams to the container and the replies back."""

    def __init__(self, listener: UdpListener, client: tuple[str, int], local: str | None) -> None:
        self.listener = listener
        self.client = client
        self.local = local
        self.last_active = listener.loop.time()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect((listener.mapping.container_ip, listener.mapping.container_port))
        listener.loop.add_reader(self.sock, self.on_reply)

    def send(self, data: bytes) -> None:
        self.last_active = self.listener.loop.time()
        try:
            self.sock.send(data)
        except OSError as err:
            # ECONNREFUSED reports an earlier datagram that found no listener.
            _warnings.warning(f"udp send {self.listener.mapping.key}", "datagram to %s not sent: %s", self.listener.mapping.describe(), err.strerror)

    def on_reply(self) -> None:
        for _ in range(BURST):
            try:
                data = self.sock.recv(UDP_BUFFER)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.ECONNREFUSED:
                    continue
                _warnings.warning(f"udp recv {self.listener.mapping.key}", "reply on %s lost: %s", self.listener.mapping.describe(), err.strerror)
                return
            self.last_active = self.listener.loop.time()
            self.listener.reply(data, self.client, self.local)

    def close(self) -> None:
        self.listener.loop.remove_reader(self.sock)
        self.sock.close()


class UdpListener:
    """Receives datagrams on a host port and keeps one flow per client."""

    def __init__(self, loop: asyncio.AbstractEventLoop, mapping: ProxyMapping, idle_timeout: float) -> None:
        self.loop = loop
        self.mapping = mapping
        self.idle_timeout = idle_timeout
        self.flows: OrderedDict[tuple, _UdpFlow] = OrderedDict()
        self.sock: socket.socket | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.wildcard = mapping.host_ip == "0.0.0.0"

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.mapping.host_ip, self.mapping.host_port))
            sock.setblocking(False)
            if self.wildcard:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.loop.add_reader(sock, self._on_datagram)
        self._schedule_sweep()

    def _on_datagram(self) -> None:
        for _ in range(BURST):
            try:
                data, ancillary, _flags, client = self.sock.recvmsg(UDP_BUFFER, socket.CMSG_SPACE(_PKTINFO.size))
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.ECONNREFUSED:
                    continue
                _warnings.warning(f"udp listen {self.mapping.key}", "receive on %s failed: %s", self.mapping.describe(), err.strerror)
                return
            local = _destination(ancillary)
            key = (client, local)
            flow = self.flows.get(key)
            if flow is None:
                flow = self._open_flow(client, local)
                if flow is None:
                    continue
            else:
                self.flows.move_to_end(key)
            flow.send(data)

    def _open_flow(self, client, local) -> _UdpFlow | None:
        if len(self.flows) >= MAX_UDP_FLOWS:
            _key, oldest = self.flows.popitem(last=False)
            oldest.close()
            _warnings.warning(f"udp flows {self.mapping.key}", "%s has %d UDP flows; closed the least recently used", self.mapping.describe(), MAX_UDP_FLOWS)
        try:
            flow = _UdpFlow(self, client, local)
        except OSError as err:
            _warnings.warning(f"udp flow {self.mapping.key}", "cannot open a flow for %s: %s", self.mapping.describe(), err.strerror)
            return None
        self.flows[(client, local)] = flow
        return flow

    def reply(self, data: bytes, client: tuple[str, int], local: str | None) -> None:
        try:
            if local is None:
                self.sock.sendto(data, client)
            else:
                info = _PKTINFO.pack(0, socket.inet_aton(local), b"\0\0\0\0")
                self.sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, client)
        except OSError as err:
            _warnings.warning(f"udp reply {self.mapping.key}", "reply to %s:%d on %s lost: %s", client[0], client[1], self.mapping.describe(), err.strerror)

    def _schedule_sweep(self) -> None:
        self._sweeper = self.loop.call_later(max(self.idle_timeout / 2, 0.05), self._sweep)

    def _sweep(self) -> None:
        deadline = self.loop.time() - self.idle_timeout
        for key in [k for k, flow in self.flows.items() if flow.last_active < deadline]:
            self.flows.pop(key).close()
        self._schedule_sweep()

    def retarget(self, mapping: ProxyMapping) -> None:
        self.mapping = mapping
        self._close_flows()

    def _close_flows(self) -> None:
        while self.flows:
            _key, flow = self.flows.popitem()
            flow.close()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.sock is not None:
            self.loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None
        self._close_flows()


def _destination(ancillary) -> str | None:
    """Return the destination address of a datagram from its IP_PKTINFO, if present."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            _ifindex, _spec_dst, address = _PKTINFO.unpack(data[: _PKTINFO.size])
            return socket.inet_ntoa(address)
    return None


# The whole proxy


class ProxyServer:
    """Every listener of the proxy, reconciled with a mapping list on each reload."""

    def __init__(self, loop: asyncio.AbstractEventLoop, udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT_S) -> None:
        self.loop = loop
        self.udp_idle_timeout = udp_idle_timeout
        self.listeners: dict[tuple[str, str, int], StreamListener | UdpListener] = {}

    def apply(self, mappings: list[ProxyMapping]) -> dict:
        """Listen on exactly `mappings`; return how many were opened and which ones failed.

        A mapping that cannot be served (the port is taken, the address is not local) is
        reported and skipped; every other mapping is served regardless.
        """
        requested = {m.key: m for m in mappings}
        closed = 0
        for key in [k for k in self.listeners if k not in requested]:
            self.listeners.pop(key).close()
            closed += 1

        opened, failed = 0, []
        for key, mapping in requested.items():
            existing = self.listeners.get(key)
            if existing is not None:
                if existing.mapping != mapping:
                    existing.retarget(mapping)
                continue
            listener = self._listener(mapping)
            try:
                listener.open()
            except OSError as err:
                log.warning("cannot listen on %s: %s", mapping.describe(), err.strerror)
                failed.append({"mapping": _mapping_dict(mapping), "errno": err.errno, "error": err.strerror})
                continue
            self.listeners[key] = listener
            opened += 1
        if opened or closed or failed:
            log.info("serving %d mapping(s): %d opened, %d closed, %d failed", len(self.listeners), opened, closed, len(failed))
        return {"serving": len(self.listeners), "opened": opened, "closed": closed, "failed": failed}

    def _listener(self, mapping: ProxyMapping):
        if mapping.protocol == "udp":
            return UdpListener(self.loop, mapping, self.udp_idle_timeout)
        return StreamListener(self.loop, mapping)

    def serving(self) -> list[dict]:
        return [_mapping_dict(listener.mapping) for listener in self.listeners.values()]

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()


def _mapping_dict(mapping: ProxyMapping) -> dict:
    return {
        "protocol": mapping.protocol,
        "host_ip": mapping.host_ip,
        "host_port": mapping.host_port,
        "container_ip": mapping.container_ip,
        "container_port": mapping.container_port,
    }
