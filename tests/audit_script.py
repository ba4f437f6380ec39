"""A scripted history for the audit tests: one day of networks, leases and port mappings.

Every step runs at a chosen UTC time as a chosen user, through the service with the fake
kernel where a command exists, and through the store for port mappings. The docs/audit.md
cookbook and the CLI tests assert answers about this history, so changing a step changes
their expected answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path

from netstate.actions import EnsureVeth
from netstate.domain.events import PortMapped, Protocol, SettingChanged
from netstate.domain.subnets import HostFacts, parse_subnet
from netstate.errors import KernelError
from netstate.kernel.fake import FakeLinks, fake_forwarding
from netstate.service import Kernel, Netstate
from netstate.store.engine import open_database
from netstate.store.eventlog import Actor, EventStore, append

DAY = "2026-03-02"
# What the fake host looks like when network "db" picks its subnet.
FACTS = HostFacts(
    routes=((parse_subnet("172.17.0.0/16")[0], "docker0"),),
    nameservers=(IPv4Address("10.0.0.2"),),
)


def utc(clock_time: str) -> datetime:
    """Return the time HH:MM[:SS] of the scripted day in UTC."""
    return datetime.fromisoformat(f"{DAY}T{clock_time}").replace(tzinfo=UTC)


def stamp(clock_time: str) -> str:
    """Return the time HH:MM[:SS] of the scripted day as the events table stores it."""
    return utc(clock_time).isoformat(timespec="microseconds")


class FixedFactsKernel(Kernel):
    """The fake kernel with fixed routes and nameservers, so subnet choice is reproducible."""

    def host_facts(self) -> HostFacts:
        return FACTS


class Script:
    """A Netstate on a fake kernel whose clock and actor each step sets."""

    def __init__(self, db: Path) -> None:
        self.now = utc("00:00")
        self.links = FakeLinks()
        kernel = FixedFactsKernel(self.links, None, fake_forwarding)
        store = EventStore(open_database(db))
        self.netstate = Netstate(store, lambda: kernel, Actor("root", 1, "netstate"), lambda: self.now)

    def as_user(self, clock_time: str, user: str, command: str) -> Netstate:
        """Set the clock and the actor for the next step and return the service."""
        self.now = utc(clock_time)
        self.netstate.actor = Actor(user=user, pid=1000 + len(user), command=f"netstate {command}")
        return self.netstate

    def append(self, *events) -> None:
        """Record events directly, as a command without a service method would."""
        with self.netstate.store.write() as connection:
            append(connection, events, self.netstate.actor, self.now)

    def map_port(self, network: str, endpoint: str, spec: str, container: str, dynamic: bool = False) -> None:
        """Record a mapping; `spec` is HOST_IP:PORT/PROTO and `container` is IP:PORT."""
        host, protocol = spec.split("/")
        host_ip, host_port = host.split(":")
        container_ip, container_port = container.split(":")
        self.append(
            PortMapped(
                network=network, endpoint=endpoint, protocol=Protocol(protocol),
                host_ip=IPv4Address(host_ip), host_port=int(host_port),
                container_ip=IPv4Address(container_ip), container_port=int(container_port),
                dynamic=dynamic,
            )
        )


def build_history(db: Path) -> Script:
    """Record the scripted day in the database at `db` and return the script."""
    script = Script(db)
    step = script.as_user

    step("09:00", "root", "network create web").create_network("web", subnet="10.44.0.0/24", bridge="nsweb0")
    step("09:00:30", "root", "network create db").create_network("db", bridge="nsdb0")
    step("09:05", "alice", "allocate web-1").allocate("web-1", network="web")
    step("09:06", "alice", "allocate web-2").allocate("web-2", network="web")
    step("09:10", "alice", "map web-1 8080:80")
    script.map_port("web", "web-1", "0.0.0.0:8080/tcp", "10.44.0.2:80")
    step("10:00", "bob", "allocate api-1").allocate("api-1", network="web", address="10.44.0.7")
    step("10:01", "bob", "map api-1 9000")
    script.map_port("web", "api-1", "0.0.0.0:49153/tcp", "10.44.0.7:9000", dynamic=True)
    step("10:02", "bob", "map api-1 5353:53/udp")
    script.map_port("web", "api-1", "127.0.0.1:5353/udp", "10.44.0.7:53")
    step("12:00", "alice", "release web-1").release("web-1")
    step("12:30", "bob", "allocate web-3").allocate("web-3", network="web", address="10.44.0.2")
    step("12:31", "bob", "map web-3 8080:80")
    script.map_port("web", "web-3", "0.0.0.0:8080/tcp", "10.44.0.2:80")
    step("13:00", "carol", "allocate cache-1").allocate("cache-1", network="db")
    step("14:00", "bob", "release api-1").release("api-1")
    step("14:03", "carol", "allocate worker-9").allocate("worker-9", network="web", address="10.44.0.7")

    # The veth of batch-1 fails, so the service records the release that undoes the lease.
    # The namespace is this process's own, which the fake kernel never touches.
    script.links.fail_on.add(EnsureVeth)
    try:
        step("14:30", "dave", "allocate batch-1").allocate("batch-1", network="web", netns="/proc/self/ns/net")
    except KernelError:
        pass
    else:
        raise AssertionError("the scripted veth failure did not happen")
    script.links.fail_on.clear()

    step("15:00", "root", "network icc web --off").set_icc("web", False)
    step("15:30", "root", "config set")
    script.append(SettingChanged(network="", key="dynamic_ports", value="50000-50999"))
    step("16:00", "carol", "release worker-9").release("worker-9")
    step("16:10", "alice", "release web-2").release("web-2")
    step("16:20", "bob", "release web-3").release("web-3")
    step("17:00", "carol", "release cache-1").release("cache-1")
    step("17:05", "root", "network rm db").remove_network("db")
    step("18:00", "alice", "allocate web-1").allocate("web-1", network="web")
    step("18:01", "alice", "map web-1 8080:80")
    script.map_port("web", "web-1", "0.0.0.0:8080/tcp", "10.44.0.5:80")
    return script

