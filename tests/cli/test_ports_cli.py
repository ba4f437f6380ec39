"""The port commands of the CLI, with the fake kernel adapters (no root needed)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import run_netstate

FAKE = {"NETSTATE_KERNEL": "fake"}


@pytest.fixture
def cli(db_path):
    def run(*args: str):
        return run_netstate(*args, db=db_path, env=FAKE)

    assert run("network", "create", "web", "--subnet", "10.44.0.0/24", "--bridge", "nsweb0").returncode == 0
    assert run("allocate", "c1", "--network", "web").returncode == 0
    return run


class TestHelp:
    @pytest.mark.parametrize("command", [["map"], ["unmap"], ["ports"], ["config", "get"], ["config", "set"]])
    def test_every_port_command_has_help_with_example(self, command):
        result = CliRunner().invoke(app, [*command, "--help"])

        assert result.exit_code == 0
        assert "Example: netstate " in result.output


class TestMapCommand:
    def test_map_prints_json_bindings(self, cli):
        result = cli("map", "c1", "8080:80", "127.0.0.1::53/udp", "--json")

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [
            {"endpoint": "c1", "network": "web", "protocol": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "container_ip": "10.44.0.2", "container_port": 80},
            {"endpoint": "c1", "network": "web", "protocol": "udp", "host_ip": "127.0.0.1", "host_port": 49153, "container_ip": "10.44.0.2", "container_port": 53},
        ]

    def test_bad_spec_exits_2_and_names_it(self, cli):
        result = cli("map", "c1", "8080:80", "70000")

        assert result.returncode == 2
        assert result.stderr.strip() == "netstate: error: invalid port spec '70000': container port '70000' is out of range 1-65535"
        assert json.loads(cli("ports", "--json").stdout) == []

    def test_conflict_exits_1_and_names_holder(self, cli):
        assert cli("allocate", "c2", "--network", "web").returncode == 0
        assert cli("map", "c1", "8080:80").returncode == 0

        result = cli("map", "c2", "8080:80")

        assert result.returncode == 1
        assert "held by endpoint 'c1'" in result.stderr


class TestPortsAndConfig:
    def test_ports_lists_table_after_unmap(self, cli):
        cli("map", "c1", "8080:80", "9090:90")

        unmapped = cli("unmap", "c1", "8080:80")
        listing = cli("ports")

        assert unmapped.stdout.strip() == "c1: unmapped 0.0.0.0:8080 -> 10.44.0.2:80/tcp"
        assert listing.stdout.splitlines() == [
            "ENDPOINT  NETWORK  PROTO  HOST          CONTAINER",
            "c1        web      tcp    0.0.0.0:9090  10.44.0.2:90",
        ]

    def test_config_set_and_get(self, cli):
        assert cli("config", "set", "userland-proxy", "off").stdout.strip() == "userland-proxy = false"
        assert cli("config", "get", "userland-proxy").stdout.strip() == "false"
        assert json.loads(cli("config", "get", "--json").stdout) == {"port-range": "49153-65535", "userland-proxy": "false"}

    def test_config_rejects_unknown_key(self, cli):
        result = cli("config", "set", "proxy", "on")

        assert result.returncode == 2
        assert "unknown setting 'proxy'" in result.stderr
