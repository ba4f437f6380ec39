"""Names of networks, endpoints and interfaces are checked before anything is written."""

import pytest

from netstate.domain.names import check_endpoint, check_ifname, check_network_name
from netstate.errors import InvalidName


@pytest.mark.parametrize("name", ["c1", "web-3", "a.b_c", "0", "f" * 64, "x" * 253])
def test_endpoint_name_accepted(name):
    assert check_endpoint(name) == name


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "must not be empty"),
        ("-c1", "starting with a letter or digit"),
        (".c1", "starting with a letter or digit"),
        ("c 1", "use letters, digits"),
        ("c/1", "use letters, digits"),
        ("c:1", "use letters, digits"),
        ("é1", "use letters, digits"),
        ("x" * 254, "254 characters, at most 253"),
    ],
)
def test_endpoint_name_rejected(name, match):
    with pytest.raises(InvalidName, match=match) as caught:
        check_endpoint(name)
    assert repr(name) in str(caught.value)
    assert caught.value.exit_code == 2


def test_network_name_limit():
    assert check_network_name("n" * 64) == "n" * 64
    with pytest.raises(InvalidName, match="65 characters, at most 64"):
        check_network_name("n" * 65)


@pytest.mark.parametrize("name", ["br0", "nsweb0", "a" * 15, "eth0.5", "x-y_z"])
def test_ifname_accepted(name):
    assert check_ifname(name) == name


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "must not be empty"),
        ("a" * 16, "16 bytes, the kernel allows at most 15"),
        ("ü" * 8, "16 bytes"),
        ("br/0", "'/', ':' and whitespace"),
        ("br:0", "'/', ':' and whitespace"),
        ("br 0", "'/', ':' and whitespace"),
        ("br\t0", "'/', ':' and whitespace"),
        (".", "reserved"),
        ("..", "reserved"),
    ],
)
def test_ifname_rejected(name, match):
    with pytest.raises(InvalidName, match=match):
        check_ifname(name)
