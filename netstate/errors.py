"""Errors raised by netstate.

Every error that netstate raises on purpose is a NetstateError. The CLI prints its message on
one line and exits with `exit_code`: 2 for input that is invalid whatever the recorded state
(a malformed CIDR, a name that is too long), 1 for a valid request that the recorded state or
the kernel rejects (an unknown network, an address already held).
"""

from __future__ import annotations


class NetstateError(Exception):
    """Base of every error netstate raises on purpose."""

    exit_code = 1


class InvalidInput(NetstateError, ValueError):
    """A value is malformed or out of range, whatever the recorded state."""

    exit_code = 2


class InvalidName(InvalidInput):
    """A network, endpoint or interface name breaks the naming rules."""


class InvalidSubnet(InvalidInput):
    """A subnet or gateway cannot be used for a network."""


class InvalidAddress(InvalidInput):
    """An IPv4 address does not parse."""


class InvalidPortSpec(InvalidInput):
    """A port publishing spec does not parse or is out of range; `spec` is the text given."""

    def __init__(self, message: str, *, spec: str) -> None:
        super().__init__(message)
        self.spec = spec


class InvalidTime(InvalidInput):
    """A point in time does not parse."""


class InvalidQuery(InvalidInput):
    """A read-only SQL query does not compile or does not run."""


class QueryRejected(NetstateError):
    """A SQL query tried to change the database, or to do something else a reader may not."""


class NotFound(NetstateError, LookupError):
    """A named object is not in the record."""


class UnknownNetwork(NotFound):
    """No network of that name exists."""


class UnknownEndpoint(NotFound):
    """The endpoint holds no address (on the given network)."""


class Conflict(NetstateError):
    """The request is valid but clashes with what the record holds."""


class NetworkExists(Conflict):
    """A network of that name, or with that bridge, already exists."""


class NetworkInUse(Conflict):
    """The network still has addresses held on it."""


class SubnetOverlap(Conflict):
    """The requested subnet overlaps another netstate network."""


class NoFreeSubnet(Conflict):
    """Every candidate subnet overlaps a route, a nameserver or another network."""


class AddressNotInSubnet(Conflict):
    """A requested address lies outside the network's subnet."""


class AddressReserved(Conflict):
    """A requested address is the network, broadcast or gateway address."""


class AddressInUse(Conflict):
    """A requested address is held by another endpoint."""

    def __init__(self, message: str, *, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class AddressExhausted(Conflict):
    """Every usable address of the network is held."""


class PortInUse(Conflict):
    """A requested host port is held by another endpoint or another program."""

    def __init__(self, message: str, *, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class PortExhausted(Conflict):
    """Every port of the dynamic range is held for that protocol and host address."""


class AmbiguousNetwork(Conflict):
    """The endpoint holds addresses on several networks and none was named."""


class BridgeConflict(Conflict):
    """A link with the bridge's name exists but cannot be adopted as it is."""


class KernelError(NetstateError):
    """A kernel operation failed; the message names the object and the errno text."""


class StoreError(NetstateError):
    """The event store cannot be opened, migrated or written."""


class TeardownFailed(ExceptionGroup, KernelError):
    """Some steps of a teardown failed; every step was still attempted.

    The record already says the objects are gone, so what is left in the kernel is stale:
    `netstate check --repair` or `netstate restore` removes it. `exceptions` holds each failure.
    """

    def __new__(cls, message: str, errors):
        return super().__new__(cls, message, list(errors))

    def __str__(self) -> str:
        details = "; ".join(str(error) for error in self.exceptions)
        return f"{self.message}: {details}"
