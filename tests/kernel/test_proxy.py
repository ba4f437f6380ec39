"""The userland proxy process and its supervisor, in throwaway namespaces.

The proxy runs in namespace `host`; servers run in `peer`, joined to it by a veth
(10.77.0.1 in host, 10.77.0.2 in peer). Clients are sockets opened inside `host`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from ipaddress import IPv4Address

import pytest

from netstate.domain.events import Protocol
from netstate.domain.state import Binding, BindingKey
from netstate.errors import KernelError, PortInUse
from netstate.kernel.netns import entered, netns_path
from netstate.kernel.proxy import ProxySupervisor, process_alive
from netstate.proxy.config import write_config
from tests.kernel.portnet import ip, servers  # noqa: F401 - fixture

pytestmark = pytest.mark.root

PEER_ADDRESS = "10.77.0.2"


def binding(protocol: str, host_port: int, container_port: int, host_ip: str = "0.0.0.0") -> Binding:
    key = BindingKey(Protocol(protocol), IPv4Address(host_ip), host_port)
    return Binding(key=key, network="web", endpoint="c1", container_ip=IPv4Address(PEER_ADDRESS), container_port=container_port)


@pytest.fixture
def pair(make_netns):
    host, peer = make_netns("phost"), make_netns("ppeer")
    ip("-n", host, "link", "add", "nsp0", "type", "veth", "peer", "name", "eth0", "netns", peer)
    ip("-n", host, "addr", "add", "10.77.0.1/24", "dev", "nsp0")
    ip("-n", host, "link", "set", "nsp0", "up")
    ip("-n", peer, "addr", "add", f"{PEER_ADDRESS}/24", "dev", "eth0")
    ip("-n", peer, "link", "set", "eth0", "up")
    return host, peer


@pytest.fixture
def supervisor(pair, tmp_path):
    host, _peer = pair
    supervisors = []

    def build(**options) -> ProxySupervisor:
        proxy = ProxySupervisor(tmp_path / "netstate", **options)
        supervisors.append(proxy)
        return proxy

    yield build
    with entered(netns_path(host)):
        for proxy in supervisors:
            proxy.stop()


def sctp_supported() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


def in_host(pair, function, *args):
    with entered(netns_path(pair[0])):
        return function(*args)


def connect_in(pair, address: tuple[str, int], kind=socket.SOCK_STREAM) -> socket.socket:
    with entered(netns_path(pair[0])):
        sock = socket.socket(socket.AF_INET, kind)
    sock.settimeout(5)
    sock.connect(address)
    return sock


class TestTcp:
    def test_relay_keeps_every_byte_and_half_close(self, pair, supervisor, servers):
        servers.start(pair[1], "tcp-hash", 9000)
        proxy = supervisor()
        assert in_host(pair, proxy.sync, [binding("tcp", 9000, 9000)]) is True
        payload = os.urandom(8 << 20)

        with connect_in(pair, ("127.0.0.1", 9000)) as client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            answer = client.makefile("rb").readline().decode().split()

        assert answer == [str(len(payload)), hashlib.sha256(payload).hexdigest()]

    def test_port_held_by_other_program_is_reported(self, pair, supervisor):
        with entered(netns_path(pair[0])):
            squatter = socket.socket()
        squatter.bind(("0.0.0.0", 9001))
        squatter.listen()
        proxy = supervisor()

        with squatter, pytest.raises(PortInUse, match="host port 0.0.0.0:9001/tcp is in use by another program") as caught:
            in_host(pair, proxy.sync, [binding("tcp", 9000, 9000), binding("tcp", 9001, 9001)])

        assert caught.value.holder == "another program"
        status = in_host(pair, proxy.status)
        assert [m.host_port for m in status.serving] == [9000]

    def test_failure_outside_required_bindings_is_only_logged(self, pair, supervisor, caplog):
        with entered(netns_path(pair[0])):
            squatter = socket.socket()
        squatter.bind(("0.0.0.0", 9001))
        squatter.listen()
        proxy = supervisor()
        required = frozenset({binding("tcp", 9000, 9000).key})

        with squatter:
            in_host(pair, proxy.sync, [binding("tcp", 9000, 9000), binding("tcp", 9001, 9001)], required)

        assert [m.host_port for m in in_host(pair, proxy.status).serving] == [9000]
        assert "host port 0.0.0.0:9001/tcp is in use by another program" in caplog.text

    @pytest.mark.skipif(sctp_supported(), reason="this kernel supports SCTP sockets, so the error cannot occur")
    def test_sctp_without_kernel_support_is_reported(self, pair, supervisor):
        proxy = supervisor()

        with pytest.raises(KernelError, match="does not support sctp sockets.*userland-proxy false"):
            in_host(pair, proxy.sync, [binding("sctp", 9000, 9000)])

    def test_address_not_on_host_is_reported(self, pair, supervisor):
        proxy = supervisor()

        with pytest.raises(KernelError, match="host address 192.0.2.99 is not assigned"):
            in_host(pair, proxy.sync, [binding("tcp", 9000, 9000, host_ip="192.0.2.99")])


class TestUdp:
    def test_each_client_gets_its_own_flow(self, pair, supervisor, servers):
        servers.start(pair[1], "udp", 53, "echo")
        proxy = supervisor()
        in_host(pair, proxy.sync, [binding("udp", 5353, 53)])
        first = connect_in(pair, ("127.0.0.1", 5353), socket.SOCK_DGRAM)
        second = connect_in(pair, ("127.0.0.1", 5353), socket.SOCK_DGRAM)

        with first, second:
            first.send(b"one")
            second.send(b"two")
            answers = (first.recv(100), second.recv(100))

        assert answers == (b"echo 10.77.0.1 one", b"echo 10.77.0.1 two")

    def test_idle_flow_is_closed(self, pair, supervisor, servers):
        servers.start(pair[1], "udp-port", 53)
        proxy = supervisor(udp_idle_timeout=0.3)
        in_host(pair, proxy.sync, [binding("udp", 5353, 53)])

        with connect_in(pair, ("127.0.0.1", 5353), socket.SOCK_DGRAM) as client:
            client.send(b"a")
            first = client.recv(100)
            client.send(b"b")
            same = client.recv(100)
            time.sleep(1.0)
            client.send(b"c")
            after_idle = client.recv(100)

        assert first == same
        assert after_idle != first


class TestLifecycle:
    def test_reload_follows_mappings_and_stops_when_none(self, pair, supervisor):
        proxy = supervisor()
        in_host(pair, proxy.sync, [binding("tcp", 9000, 9000)])
        pid = in_host(pair, proxy.status).pid

        changed = in_host(pair, proxy.sync, [binding("tcp", 9002, 9002), binding("udp", 9002, 9002)])
        status = in_host(pair, proxy.status)

        assert changed is True
        assert status.pid == pid
        assert [(m.protocol, m.host_port) for m in status.serving] == [("tcp", 9002), ("udp", 9002)]
        assert in_host(pair, proxy.sync, [binding("tcp", 9002, 9002), binding("udp", 9002, 9002)]) is False

        assert in_host(pair, proxy.sync, []) is True
        assert not process_alive(pid)
        assert not proxy.pid_path.exists()
        assert in_host(pair, proxy.status) is None

    def test_sighup_reloads_mapping_list(self, pair, supervisor):
        proxy = supervisor()
        in_host(pair, proxy.sync, [binding("tcp", 9000, 9000)])
        pid = int(proxy.pid_path.read_text())
        from netstate.kernel.proxy import to_mapping

        write_config(proxy.config_path, [to_mapping(binding("tcp", 9003, 9003))])
        os.kill(pid, signal.SIGHUP)

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            serving = [m.host_port for m in in_host(pair, proxy.status).serving]
            if serving == [9003]:
                break
            time.sleep(0.05)
        assert serving == [9003]

    def test_second_proxy_for_same_list_refuses_to_start(self, pair, supervisor):
        proxy = supervisor()
        in_host(pair, proxy.sync, [binding("tcp", 9000, 9000)])
        command = [sys.executable, "-m", "netstate.proxy", "--config", str(proxy.config_path), "--control", proxy.control, "--ready-fd", "1"]

        done = subprocess.run(["ip", "netns", "exec", pair[0], *command], capture_output=True, text=True, timeout=30)

        assert done.returncode == 1
        assert done.stdout.strip() == "error: another proxy already serves this mapping list"

    def test_start_failure_is_reported_with_reason(self, pair, supervisor, tmp_path):
        broken = tmp_path / "broken-python"
        broken.write_text("#!/bin/sh\necho 'cannot import netstate' >&2\nexit 3\n")
        broken.chmod(0o755)
        proxy = supervisor(python=str(broken))

        with pytest.raises(KernelError, match="the userland proxy failed to start: cannot import netstate"):
            in_host(pair, proxy.sync, [binding("tcp", 9000, 9000)])

    def test_start_without_ready_line_times_out(self, pair, supervisor, tmp_path):
        silent = tmp_path / "silent-python"
        silent.write_text("#!/bin/sh\nexec sleep 30\n")
        silent.chmod(0o755)
        proxy = supervisor(python=str(silent), ready_timeout=0.5)

        started = time.monotonic()
        with pytest.raises(KernelError, match="did not report ready within 0.5 s"):
            in_host(pair, proxy.sync, [binding("tcp", 9000, 9000)])

        assert time.monotonic() - started < 5
