"""Kernel effects planned as data.

Each action is a frozen record that an executor interprets. Every action is idempotent: it
states what must be true ("ensure") or absent ("remove"), so replaying it after a crash is
harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only annotations use these; importing the rule builders here would put them on the path
    # of every command, including the ones that never touch the firewall.
    from netstate.domain.events import Protocol
    from netstate.domain.state import Binding, BindingKey
    from netstate.firewall.rules import Ruleset


@dataclass(frozen=True, slots=True)
class EnsureBridge:
    """A bridge named `name` exists, is up and carries exactly `address`."""

    network: str
    name: str
    address: IPv4Interface


@dataclass(frozen=True, slots=True)
class RemoveBridge:
    """The bridge is gone, if netstate created it; an adopted bridge is left alone."""

    network: str
    name: str


@dataclass(frozen=True, slots=True)
class EnsureVeth:
    """A veth joins `bridge` to `netns`, where it is `ifname` with `address`, up, routed."""

    endpoint: str
    host_ifname: str
    bridge: str
    netns: str
    ifname: str
    address: IPv4Interface
    gateway: IPv4Address


@dataclass(frozen=True, slots=True)
class RemoveVeth:
    """The host side of an endpoint's veth is gone, which removes its peer too."""

    endpoint: str
    host_ifname: str


@dataclass(frozen=True, slots=True)
class RemoveStaleLink:
    """A link that netstate created but the record no longer holds is gone.

    Reconciliation plans this for a bridge or veth marked as netstate's (its alias, or a name
    under a prefix netstate reserves) that no recorded network or lease needs. The adapter
    checks the mark again before it deletes anything.
    """

    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class EnsureSysctl:
    """The sysctl at `key`, a path under /proc/sys such as "net/ipv4/ip_forward", is `value`."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class SyncProxy:
    """The userland proxy serves exactly `bindings`, and does not run when there are none.

    A binding the proxy cannot listen on fails the action if its key is in `required`, or
    whatever its key when `required` is None. Any other such failure is logged as a warning.
    """

    bindings: tuple[Binding, ...]
    required: frozenset[BindingKey] | None = None


@dataclass(frozen=True, slots=True)
class SyncFirewall:
    """netstate's chains and rules are exactly `ruleset`; rules without the mark stay as they are."""

    ruleset: Ruleset


@dataclass(frozen=True, slots=True)
class FlushConntrack:
    """No conntrack entry of `protocol` is left for the host `ports` (original destination)."""

    protocol: Protocol
    ports: tuple[int, ...]


Action = (
    EnsureBridge | RemoveBridge | EnsureVeth | RemoveVeth | RemoveStaleLink
    | EnsureSysctl | SyncProxy | SyncFirewall | FlushConntrack
)
