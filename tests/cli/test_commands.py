"""Every command through the real `netstate` process, managing a throwaway namespace."""

import json
import os
import sqlite3
import subprocess

import pytest

from netstate.store.schema import SCHEMA_HEAD
from tests.conftest import can_make_netns, run_netstate
from tests.helpers import event_types, kernel_snapshot, link_names

pytestmark = pytest.mark.root


def as_json(result):
    return json.loads(result.stdout)


class TestNetwork:
    def test_create_ls_icc_rm(self, netstate_cmd, host_ns, db_path):
        created = as_json(netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0", "--json"))
        assert created == {"name": "web", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1", "bridge": "nsweb0", "icc": True}

        text = netstate_cmd("network", "create", "db", "--subnet", "198.51.100.0/24", "--gateway", "198.51.100.254").stdout
        assert text == "network db: 198.51.100.0/24 gateway 198.51.100.254 bridge ns-db\n"

        listed = as_json(netstate_cmd("network", "ls", "--json"))
        assert [n["name"] for n in listed] == ["db", "web"]
        table = netstate_cmd("network", "ls").stdout.splitlines()
        assert table[0].split() == ["NAME", "SUBNET", "GATEWAY", "BRIDGE", "ICC"]
        assert table[2].split() == ["web", "192.0.2.0/24", "192.0.2.1", "nsweb0", "yes"]

        assert as_json(netstate_cmd("network", "icc", "web", "--off", "--json"))["icc"] is False
        assert netstate_cmd("network", "icc", "web", "--on").stdout == "network web: inter-container traffic on\n"

        assert as_json(netstate_cmd("network", "rm", "db", "--json")) == {"removed": "db"}
        assert netstate_cmd("network", "rm", "web").stdout == "network web removed\n"
        assert as_json(netstate_cmd("network", "ls", "--json")) == []
        assert {"nsweb0", "ns-db"} & link_names(host_ns) == set()
        assert event_types(db_path) == [
            "NetworkCreated", "NetworkCreated", "IccChanged", "IccChanged", "NetworkRemoved", "NetworkRemoved",
        ]

    def test_create_without_subnet_records_rejected_candidates(self, netstate_cmd, host_ns, db_path):
        netstate_cmd("network", "create", "one", "--bridge", "br-one")
        second = as_json(netstate_cmd("network", "create", "two", "--bridge", "br-two", "--json"))
        assert second["subnet"] == "10.0.0.0/16"
        with sqlite3.connect(db_path) as connection:
            payload = json.loads(connection.execute("SELECT payload FROM events WHERE network = 'two'").fetchone()[0])
        assert payload["auto_subnet"] is True
        assert payload["rejected"][0]["subnet"] == "172.17.0.0/16"
        assert "overlaps" in payload["rejected"][0]["reason"]

    def test_rm_refused_while_held(self, netstate_cmd, db_path):
        netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0")
        netstate_cmd("allocate", "c1", "--network", "web")
        result = netstate_cmd("network", "rm", "web", check=False)
        assert result.returncode == 1
        assert result.stderr == (
            "netstate: error: network 'web' still has 1 address(es) held (c1); release them first\n"
        )
        assert event_types(db_path) == ["NetworkCreated", "AddressAllocated"]


class TestEndpoints:
    def test_allocate_json_contract(self, netstate_cmd):
        netstate_cmd("network", "create", "web", "--subnet", "192.0.2.0/24", "--bridge", "nsweb0")
        got = as_json(netstate_cmd("allocate", "c2", "--network", "web", "--ip", "192.0.2.9", "--json"))
        assert {k: got[k] for k in ("endpoint", "network", "address", "prefix_length", "gateway", "bridge")} == {
            "endpoint": "c2", "network": "web", "address": "192.0.2.9",
            "prefix_length": 24, "gateway": "192.0.2.1", "bridge": "nsweb0",
        }
        assert isinstance(got["prefix_length"], int)

    def test_allocate_default_network_on_first_use(self, netstate_cmd, host_ns, db_path):
        text = netstate_cmd("allocate", "c1").stdout
        assert text == "c1: 172.17.0.1/16 on default (gateway 172.17.42.1)\n"
        assert "netstate0" in link_names(host_ns)
        assert event_types(db_path) == ["NetworkCreated", "AddressAllocated"]

    def test_allocate_again_appends_nothing(self, netstate_cmd, db_path):
        first = as_json(netstate_cmd("allocate", "c1", "--json"))
        assert as_json(netstate_cmd("allocate", "c1", "--json")) == first
        assert event_types(db_path) == ["NetworkCreated", "AddressAllocated"]

    def test_release_and_ls(self, netstate_cmd, db_path):
        netstate_cmd("allocate", "c1")
        netstate_cmd("allocate", "c2")
        listed = as_json(netstate_cmd("ls", "--json"))
        assert [(a["endpoint"], a["address"]) for a in listed] == [("c1", "172.17.0.1"), ("c2", "172.17.0.2")]
        table = netstate_cmd("ls").stdout.splitlines()
        assert table[0].split() == ["ENDPOINT", "NETWORK", "ADDRESS", "NETNS", "IFNAME"]
        assert table[1].split() == ["c1", "default", "172.17.0.1/16", "-", "-"]

        assert netstate_cmd("release", "c1").stdout == "c1: released 172.17.0.1 on default\n"
        assert as_json(netstate_cmd("release", "c2", "--json")) == [
            {"endpoint": "c2", "network": "default", "address": "172.17.0.2"}
        ]
        assert as_json(netstate_cmd("ls", "--json")) == []
        # The cursor continues after c2, so the released addresses are not reused at once.
        assert as_json(netstate_cmd("allocate", "c3", "--json"))["address"] == "172.17.0.3"

    def test_release_unknown_endpoint(self, netstate_cmd, db_path):
        result = netstate_cmd("release", "c9", check=False)
        assert result.returncode == 1
        assert result.stderr == "netstate: error: endpoint 'c9' holds no address; `netstate ls` lists the endpoints\n"
        assert event_types(db_path) == []


class TestMaintenance:
    def test_rebuild(self, netstate_cmd, db_path):
        netstate_cmd("allocate", "c1")
        with sqlite3.connect(db_path) as connection:
            connection.execute("DELETE FROM leases")
        assert as_json(netstate_cmd("ls", "--json")) == []
        assert as_json(netstate_cmd("rebuild", "--json")) == {"events": 2}
        assert [a["endpoint"] for a in as_json(netstate_cmd("ls", "--json"))] == ["c1"]
        assert netstate_cmd("rebuild").stdout == "projections rebuilt from 2 events\n"

    def test_db_upgrade(self, netstate_cmd, db_path):
        assert as_json(netstate_cmd("db", "upgrade", "--json")) == {"revision": SCHEMA_HEAD}
        assert netstate_cmd("db", "upgrade").stdout == f"database at schema revision {SCHEMA_HEAD}\n"


# Each bad input: the arguments, the exit status and a text the one stderr line must contain.
BAD_INPUTS = [
    (("network", "create", "web", "--subnet", "10.44.0.0/33"), 2, "invalid subnet '10.44.0.0/33'"),
    (("network", "create", "web", "--subnet", "banana"), 2, "invalid subnet 'banana'"),
    (("network", "create", "web", "--subnet", "10.44.0.7/32"), 2, "invalid subnet '10.44.0.7/32': a /32 has no address"),
    (("network", "create", "web", "--subnet", "127.0.0.0/24"), 2, "invalid subnet '127.0.0.0/24': it overlaps 127.0.0.0/8"),
    (("network", "create", "web", "--subnet", "224.0.0.0/24"), 2, "invalid subnet '224.0.0.0/24': it overlaps 224.0.0.0/4"),
    (("network", "create", "web", "--subnet", "10.44.0.0/24", "--bridge", "abcdefghijklmnop"), 2,
     "invalid interface name 'abcdefghijklmnop': 16 bytes, the kernel allows at most 15"),
    (("network", "create", "web", "--subnet", "10.44.0.0/24", "--gateway", "10.44.0.255"), 2,
     "gateway 10.44.0.255 is the broadcast address of 10.44.0.0/24"),
    (("network", "create", "web", "--gateway", "10.44.0.1"), 2, "--gateway 10.44.0.1 needs --subnet"),
    (("network", "create", "bad/name", "--subnet", "10.44.0.0/24"), 2, "invalid network name 'bad/name'"),
    (("network", "create", "existing", "--subnet", "192.0.2.128/25"), 1, "network 'existing' already exists"),
    (("network", "create", "web", "--subnet", "192.0.2.128/25"), 1, "overlaps network 'existing'"),
    (("network", "rm", "nope"), 1, "network 'nope' not found"),
    (("network", "icc", "nope", "--off"), 1, "network 'nope' not found"),
    (("network", "icc", "existing"), 2, "network icc existing needs --on or --off"),
    (("allocate", "c1", "--network", "nope"), 1, "network 'nope' not found"),
    (("allocate", ""), 2, "invalid endpoint name '': a name must not be empty"),
    (("allocate", "bad/name"), 2, "invalid endpoint name 'bad/name'"),
    (("allocate", "c1", "--network", "existing", "--ip", "198.51.100.9"), 1,
     "address 198.51.100.9 is outside network 'existing' (192.0.2.0/24)"),
    (("allocate", "c1", "--network", "existing", "--ip", "192.0.2.1"), 1, "address 192.0.2.1 is the gateway"),
    (("allocate", "c1", "--network", "existing", "--ip", "192.0.2.x"), 2, "invalid IPv4 address '192.0.2.x'"),
    (("allocate", "c1", "--network", "existing", "--netns", "x", "--ifname", "eth/0"), 2, "invalid interface name 'eth/0'"),
    (("allocate", "c1", "--network", "existing", "--ifname", "eth1"), 2, "--ifname eth1 needs --netns"),
    (("release", "bad/name"), 2, "invalid endpoint name 'bad/name'"),
]


@pytest.fixture(scope="module")
def shared_host(tmp_path_factory):
    """One managed namespace and database for every bad input, since none may change them."""
    if not can_make_netns():
        pytest.skip("requires root and iproute2 to create namespaces")
    name = f"nst{os.getpid() % 100000}-bad-input"
    subprocess.run(["ip", "netns", "add", name], check=True)
    db = tmp_path_factory.mktemp("bad-input") / "netstate.db"
    try:
        done = run_netstate("network", "create", "existing", "--subnet", "192.0.2.0/24", "--bridge", "br-existing", db=db, host_netns=name)
        assert done.returncode == 0, done.stderr
        yield name, db
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.parametrize(("args", "status", "text"), BAD_INPUTS, ids=[" ".join(a) for a, _s, _t in BAD_INPUTS])
def test_bad_input(shared_host, args, status, text):
    host_ns, db_path = shared_host
    before_events = event_types(db_path)
    before_kernel = kernel_snapshot(host_ns)

    result = run_netstate(*args, db=db_path, host_netns=host_ns)

    assert result.returncode == status
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("netstate: error: ")
    assert text in lines[0]
    assert event_types(db_path) == before_events == ["NetworkCreated"]
    assert kernel_snapshot(host_ns) == before_kernel
