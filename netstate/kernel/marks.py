"""Ownership marks: how netstate recognises the links it created.

Reconciliation deletes only links that carry one of these marks, so they are a compatibility
contract. IMPORTANT: changing a prefix orphans the links of existing installations.

- A bridge or veth netstate created carries the interface alias "netstate:<owner>", where the
  owner is the network of a bridge and the endpoint of a veth.
- The host side of every veth is named "nsv" plus ten hex digits (`decide.veth_name`). The
  kernel ignores an alias in the message that creates a link, so a process killed between
  creating a veth and setting its alias leaves it unmarked. The reserved name still marks it.
- A bridge is created under a staging name, "nstmp" plus ten hex digits of its final name,
  marked, then renamed. A link still under a staging name was left by a process killed in
  between and is netstate's to delete. This keeps an adopted bridge (one that existed before
  netstate, never marked) apart from one netstate created.

This module does no I/O and imports no kernel library, so the pure reconciliation code can
use it.
"""

from __future__ import annotations

import hashlib
import re

from netstate.domain.decide import VETH_PREFIX

ALIAS_PREFIX = "netstate:"
STAGING_PREFIX = "nstmp"

_VETH_NAME = re.compile(rf"{VETH_PREFIX}[0-9a-f]{{10}}")
_STAGING_NAME = re.compile(rf"{STAGING_PREFIX}[0-9a-f]{{10}}")


def owner_alias(owner: str) -> str:
    """Return the alias that marks a link as created by netstate for `owner`."""
    return f"{ALIAS_PREFIX}{owner}"[:255]


def is_marked(alias: str | None) -> bool:
    """Return True when an interface alias is netstate's ownership mark."""
    return alias is not None and alias.startswith(ALIAS_PREFIX)


def is_veth_name(name: str) -> bool:
    """Return True when `name` has the form of a host-side veth netstate creates."""
    return _VETH_NAME.fullmatch(name) is not None


def staging_name(bridge: str) -> str:
    """Return the name a bridge is created under before it is marked and renamed."""
    return STAGING_PREFIX + hashlib.sha256(bridge.encode()).hexdigest()[:10]


def is_staging_name(name: str) -> bool:
    """Return True when `name` has the form of a bridge still under its staging name."""
    return _STAGING_NAME.fullmatch(name) is not None


def is_owned(name: str, kind: str, alias: str | None) -> bool:
    """Return True when a link with this name, kind and alias was created by netstate."""
    if kind == "veth":
        return is_marked(alias) or is_veth_name(name)
    if kind == "bridge":
        return is_marked(alias) or is_staging_name(name)
    return False
