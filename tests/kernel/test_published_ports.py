"""Published ports end to end: the real `netstate` command, real rules, proxy and traffic.

Topology, every part in a throwaway namespace:

    outside (198.51.100.2) --veth-- host (198.51.100.1, managed with --host-netns)
                                      |  bridge nsbr0, 10.88.0.0/24
                              ctcp (TCP server :80)   cudp (UDP echo :53)

The outside namespace plays a remote client and knows no route to the containers: it reaches
them only through published ports on the host's address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.kernel.portnet import ask, ip, marked_rules, reap_proxy, servers, sysctl  # noqa: F401 - fixtures

pytestmark = pytest.mark.root

HOST_ADDRESS = "198.51.100.1"
OUTSIDE_ADDRESS = "198.51.100.2"
TCP_PORT, UDP_PORT = 8080, 5353


@dataclass
class World:
    host: str
    outside: str
    ctcp: str
    cudp: str
    netstate: object


@pytest.fixture
def world(make_netns, host_ns, netstate_cmd, servers, reap_proxy) -> World:
    outside = make_netns("out")
    ip("-n", host_ns, "link", "add", "nsto0", "type", "veth", "peer", "name", "eth0", "netns", outside)
    ip("-n", host_ns, "addr", "add", f"{HOST_ADDRESS}/24", "dev", "nsto0")
    ip("-n", host_ns, "link", "set", "nsto0", "up")
    ip("-n", outside, "addr", "add", f"{OUTSIDE_ADDRESS}/24", "dev", "eth0")
    ip("-n", outside, "link", "set", "eth0", "up")

    ctcp, cudp = make_netns("ctcp"), make_netns("cudp")
    netstate_cmd("network", "create", "web", "--subnet", "10.88.0.0/24", "--bridge", "nsbr0")
    netstate_cmd("allocate", "tcp", "--network", "web", "--netns", ctcp)
    netstate_cmd("allocate", "udp", "--network", "web", "--netns", cudp)
    servers.start(ctcp, "tcp", 80, "tcp-server")
    servers.start(cudp, "udp", 53, "udp-server")
    netstate_cmd("map", "tcp", f"{TCP_PORT}:80")
    netstate_cmd("map", "udp", f"{UDP_PORT}:53/udp")
    return World(host_ns, outside, ctcp, cudp, netstate_cmd)


def set_proxy(world: World, enabled: bool) -> None:
    world.netstate("config", "set", "userland-proxy", "true" if enabled else "false")


def proxy_listens(world: World) -> bool:
    import subprocess

    done = subprocess.run(["ip", "netns", "exec", world.host, "ss", "-Hltn", f"sport = :{TCP_PORT}"], capture_output=True, text=True, check=True)
    return bool(done.stdout.strip())


@pytest.mark.parametrize("proxy", [True, False], ids=["proxy-on", "proxy-off"])
class TestReachability:
    def test_clients_reach_both_servers(self, world, proxy):
        set_proxy(world, proxy)

        # From outside: DNAT keeps the client's own address, so the servers see the outside host.
        assert ask(world.outside, "tcp", HOST_ADDRESS, TCP_PORT, "outside") == f"tcp-server {OUTSIDE_ADDRESS} outside"
        assert ask(world.outside, "udp", HOST_ADDRESS, UDP_PORT, "outside") == f"udp-server {OUTSIDE_ADDRESS} outside"
        # From the host through its own address: DNAT in OUTPUT, the source is that address.
        assert ask(world.host, "tcp", HOST_ADDRESS, TCP_PORT, "host") == f"tcp-server {HOST_ADDRESS} host"
        assert ask(world.host, "udp", HOST_ADDRESS, UDP_PORT, "host") == f"udp-server {HOST_ADDRESS} host"
        # From the host through 127.0.0.1: the proxy, or DNAT plus MASQUERADE to the bridge address.
        assert ask(world.host, "tcp", "127.0.0.1", TCP_PORT, "loopback") == "tcp-server 10.88.0.1 loopback"
        assert ask(world.host, "udp", "127.0.0.1", UDP_PORT, "loopback") == "udp-server 10.88.0.1 loopback"
        assert proxy_listens(world) is proxy

    def test_port_after_unmap_is_unreachable(self, world, proxy):
        set_proxy(world, proxy)
        assert ask(world.outside, "tcp", HOST_ADDRESS, TCP_PORT) is not None

        world.netstate("unmap", "tcp", f"{TCP_PORT}:80")
        world.netstate("unmap", "udp", f"{UDP_PORT}:53/udp")

        for netns, host in ((world.outside, HOST_ADDRESS), (world.host, "127.0.0.1"), (world.host, HOST_ADDRESS)):
            assert ask(netns, "tcp", host, TCP_PORT, timeout=1) is None, (netns, host)
            assert ask(netns, "udp", host, UDP_PORT, timeout=1) is None, (netns, host)


class TestRecordAndKernel:
    def test_rules_match_the_record(self, world):
        rules = marked_rules(world.host)

        assert rules[("nat", "NETSTATE")] == [
            '-A NETSTATE -i nsbr0 -m comment --comment "netstate web" -j RETURN',
            '-A NETSTATE -p tcp -m tcp --dport 8080 -m comment --comment "netstate web tcp" -j DNAT --to-destination 10.88.0.2:80',
            '-A NETSTATE -p udp -m udp --dport 5353 -m comment --comment "netstate web udp" -j DNAT --to-destination 10.88.0.3:53',
        ]
        assert sysctl(world.host, "net/ipv4/ip_forward") == "1"
        assert sysctl(world.host, "net/ipv4/conf/nsbr0/route_localnet") == "0"

    def test_proxy_off_sets_route_localnet_and_stops_proxy(self, world):
        set_proxy(world, False)

        assert sysctl(world.host, "net/ipv4/conf/nsbr0/route_localnet") == "1"
        assert not proxy_listens(world)
        assert marked_rules(world.host)[("nat", "OUTPUT")] == [
            "-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment netstate -j NETSTATE",
        ]

    def test_map_of_taken_port_leaves_nothing(self, world, servers):
        servers.start(world.host, "tcp", 7070, "squatter")
        rules_before = marked_rules(world.host)

        result = world.netstate("map", "tcp", "7070:80", "7071:80", check=False)

        assert result.returncode == 1
        assert "host port 0.0.0.0:7070/tcp is in use by another program" in result.stderr
        ports = json.loads(world.netstate("ports", "--json").stdout)
        assert sorted(p["host_port"] for p in ports) == sorted([TCP_PORT, UDP_PORT])
        assert marked_rules(world.host) == rules_before
        assert ask(world.host, "tcp", "127.0.0.1", 7070) == "squatter 127.0.0.1 hello"
        assert ask(world.host, "tcp", "127.0.0.1", 7071, timeout=1) is None

    def test_release_unmaps_and_removes_rules(self, world):
        world.netstate("release", "tcp")
        world.netstate("release", "udp")

        dnat = marked_rules(world.host)[("nat", "NETSTATE")]
        assert not any("DNAT" in rule for rule in dnat)
        assert not proxy_listens(world)
        assert json.loads(world.netstate("ports", "--json").stdout) == []


class TestUdpConntrack:
    @pytest.mark.parametrize("proxy", [True, False], ids=["proxy-on", "proxy-off"])
    def test_remapped_udp_port_reaches_new_container_at_once(self, world, make_netns, servers, proxy):
        set_proxy(world, proxy)
        other = make_netns("cudp2")
        world.netstate("allocate", "udp2", "--network", "web", "--netns", other)
        servers.start(other, "udp", 53, "udp-server-2")
        source_port = 40404
        first = ask(world.outside, "udp", HOST_ADDRESS, UDP_PORT, "one", source_port=source_port)

        world.netstate("unmap", "udp", f"{UDP_PORT}:53/udp")
        gap = ask(world.outside, "udp", HOST_ADDRESS, UDP_PORT, "gap", timeout=1, source_port=source_port)
        world.netstate("map", "udp2", f"{UDP_PORT}:53/udp")
        second = ask(world.outside, "udp", HOST_ADDRESS, UDP_PORT, "two", source_port=source_port)

        assert first == f"udp-server {OUTSIDE_ADDRESS} one"
        assert gap is None
        assert second == f"udp-server-2 {OUTSIDE_ADDRESS} two"


class TestInterContainerTraffic:
    def test_icc_off_drops_neighbours_only(self, world):
        assert ask(world.ctcp, "udp", "10.88.0.3", 53) is not None

        world.netstate("network", "icc", "web", "--off")

        assert ask(world.ctcp, "udp", "10.88.0.3", 53, timeout=1) is None
        assert ask(world.outside, "udp", HOST_ADDRESS, UDP_PORT) is not None

    def test_allow_rule_in_user_chain_survives_icc_switches(self, world):
        import subprocess

        world.netstate("network", "icc", "web", "--off")
        allow = ["-I", "NETSTATE-USER", "-s", "10.88.0.2/32", "-d", "10.88.0.3/32", "-j", "ACCEPT"]
        subprocess.run(["ip", "netns", "exec", world.host, "iptables-legacy", "-w", *allow], check=True)

        for enabled in ("--on", "--off", "--on", "--off"):
            world.netstate("network", "icc", "web", enabled)

        forward = marked_rules(world.host)[("filter", "NETSTATE-FORWARD")]
        assert ask(world.ctcp, "udp", "10.88.0.3", 53) is not None
        assert ask(world.cudp, "tcp", "10.88.0.2", 80, timeout=1) is None
        assert sum(rule.endswith("-j DROP") for rule in forward) == 1
        assert forward[-1].endswith("-j DROP")


class TestConcurrency:
    def test_parallel_maps_keep_each_others_rules(self, host_ns, netstate_cmd, db_path, reap_proxy):
        import subprocess
        import sys

        from tests.conftest import REPO

        netstate_cmd("network", "create", "web", "--subnet", "10.88.0.0/24", "--bridge", "nsbr0")
        endpoints = [f"p{i}" for i in range(6)]
        for endpoint in endpoints:
            netstate_cmd("allocate", endpoint, "--network", "web")
        command = [sys.executable, "-m", "cli.main", "--db", str(db_path), "--host-netns", host_ns]
        env = {"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

        running = [
            subprocess.Popen([*command, "map", endpoint, f"{7000 + i}:80"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
            for i, endpoint in enumerate(endpoints)
        ]
        errors = [process.communicate(timeout=60)[1] for process in running]

        assert [process.returncode for process in running] == [0] * len(endpoints), errors
        dnat = [rule for rule in marked_rules(host_ns)[("nat", "NETSTATE")] if "DNAT" in rule]
        assert sorted(int(rule.split("--dport ")[1].split()[0]) for rule in dnat) == list(range(7000, 7006))
        listening = subprocess.run(["ip", "netns", "exec", host_ns, "ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
        assert sorted(int(line.split()[3].rsplit(":", 1)[1]) for line in listening.splitlines()) == list(range(7000, 7006))
