"""Validation of the names users give to networks, endpoints and interfaces."""

from __future__ import annotations

import re

from netstate.errors import InvalidName

# Docker's rule for container names, so a container name or a 64-hex id is a valid endpoint.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_ENDPOINT_LENGTH = 253
MAX_NETWORK_LENGTH = 64
# IFNAMSIZ is 16 bytes with the terminating NUL.
MAX_IFNAME_LENGTH = 15


def check_endpoint(name: str) -> str:
    """Return `name` if it is a valid endpoint name, else raise InvalidName."""
    return _check_name(name, "endpoint", MAX_ENDPOINT_LENGTH)


def check_network_name(name: str) -> str:
    """Return `name` if it is a valid network name, else raise InvalidName."""
    return _check_name(name, "network", MAX_NETWORK_LENGTH)


def _check_name(name: str, kind: str, max_length: int) -> str:
    if not name:
        raise InvalidName(f"invalid {kind} name '': a name must not be empty")
    if len(name) > max_length:
        msg = f"invalid {kind} name {name!r}: {len(name)} characters, at most {max_length} allowed"
        raise InvalidName(msg)
    if not _NAME.fullmatch(name):
        msg = (
            f"invalid {kind} name {name!r}: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
        raise InvalidName(msg)
    return name


def check_ifname(name: str) -> str:
    """Return `name` if the kernel accepts it as an interface name, else raise InvalidName."""
    if not name:
        raise InvalidName("invalid interface name '': a name must not be empty")
    if len(name.encode()) > MAX_IFNAME_LENGTH:
        msg = (
            f"invalid interface name {name!r}: {len(name.encode())} bytes, "
            f"the kernel allows at most {MAX_IFNAME_LENGTH}"
        )
        raise InvalidName(msg)
    if name in (".", ".."):
        raise InvalidName(f"invalid interface name {name!r}: '.' and '..' are reserved")
    if any(ch in "/:" or ch.isspace() or not ch.isprintable() for ch in name):
        msg = f"invalid interface name {name!r}: '/', ':' and whitespace are not allowed"
        raise InvalidName(msg)
    return name
