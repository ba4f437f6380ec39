"""Reconciliation: compare what the record implies with what the kernel holds, and plan repairs.

`netstate check` and `netstate restore` run every resource kind that `default_kinds` returns
through three steps:

1. `desired(state)`: pure. What the kernel must hold for a State folded from the log.
2. `observe(kernel, desired)`: reads the kernel through the adapters of `netstate.kernel`,
   changing nothing. It may use `desired` to limit what it reads (the namespaces of recorded
   endpoints, say), but it must also return the objects that carry netstate's ownership mark
   and that `desired` does not name, so that stale ones are found.
3. `diff(desired, observed)`: pure. Returns `Findings`: one `Drift` per object that differs,
   each with the frozen actions (from `netstate.actions`) that repair it, and `Notice`s for
   facts worth reporting that are not drift.

`check --repair` and `restore` then apply the repair actions of every drift through the
`Executor`, in kind order, then within a kind in the order the diff returned them, each action
once.

## Adding a resource kind

A new kind (firewall rules, the userland proxy, sysctls) plugs in without changes here:

1. Write a class with a `name` and the three methods above, in a module of this package. Keep
   `desired` and `diff` free of I/O, so that unit tests can drive them with plain values. Put
   the reading in an adapter method of `netstate.kernel` that `observe` calls, with a fake of
   that method in `netstate/kernel/fake.py`.
2. Only objects with netstate's ownership mark (a rule comment, a chain of its own, a recorded
   pid) may appear in a repair that removes something.
3. Repairs are actions. Add each new action record to `netstate/actions.py` and its
   interpreter to `Executor.run`. An action may stand for a whole batch: a firewall kind can
   answer any number of rule drifts with one `SyncRules(desired)` action whose interpreter
   calls the firewall adapter's sync once; `plan_repair` keeps one copy of an action that
   several drifts share.
4. Add an instance to the tuple `default_kinds` returns, after the kinds whose objects it depends on (rules after
   links, the proxy after rules).
5. Give the kind a line in the crash tests' table of commands and in the external-fault tests.

The kernel adapters an `observe` method needs are attributes of `Kernel` in
`netstate.service.core`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import singledispatch
from typing import Any, Protocol

from netstate.actions import (
    Action,
    EnsureBridge,
    EnsureSysctl,
    EnsureVeth,
    RemoveBridge,
    RemoveStaleLink,
    RemoveVeth,
    SyncFirewall,
    SyncProxy,
)
from netstate.domain.state import State


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference between the record and the kernel."""

    # The kind of object: "bridge", "veth", "projections", "sysctl", "proxy", "chain", "rule".
    kind: str
    # The object's name in the kernel (a link name) or in the store (a table).
    object: str
    # A short tag such as "missing", "down", "address", "stale".
    problem: str
    expected: str
    found: str
    # One line for people, naming the object and what to do when it cannot be repaired.
    message: str
    # The actions that make the kernel match the record; empty when netstate cannot repair it.
    repair: tuple[Action, ...] = ()

    def to_dict(self) -> dict:
        """Return the JSON form that `netstate check --json` prints."""
        return {
            "kind": self.kind,
            "object": self.object,
            "problem": self.problem,
            "expected": self.expected,
            "found": self.found,
            "message": self.message,
            "repairable": bool(self.repair),
        }


@dataclass(frozen=True, slots=True)
class Notice:
    """A fact worth reporting that is not drift, such as a lease whose namespace is gone."""

    kind: str
    object: str
    message: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "object": self.object, "message": self.message}


@dataclass(slots=True)
class Findings:
    """The outcome of a diff: drift to repair and notices to report."""

    drifts: list[Drift] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    # How many objects of each kind were compared, as {"bridge": 2, "veth": 5}.
    checked: dict[str, int] = field(default_factory=dict)

    def extend(self, other: Findings) -> None:
        self.drifts.extend(other.drifts)
        self.notices.extend(other.notices)
        for kind, count in other.checked.items():
            self.checked[kind] = self.checked.get(kind, 0) + count


class ResourceKind(Protocol):
    """A kind of kernel object that check and restore compare with the record."""

    name: str

    def desired(self, state: State) -> Any: ...
    def observe(self, kernel: Any, desired: Any) -> Any: ...
    def diff(self, desired: Any, observed: Any) -> Findings: ...


def default_kinds() -> tuple[ResourceKind, ...]:
    """Return the resource kinds in the order their repairs must run."""
    from netstate.reconcile.forwarding import FirewallKind, ProxyKind, SysctlsKind
    from netstate.reconcile.links import LinksKind

    # Sysctls name bridges; the proxy comes before the rules, as in `plan_forwarding`.
    return (LinksKind(), SysctlsKind(), ProxyKind(), FirewallKind())


def scan(state: State, kernel: Any, kinds: tuple[ResourceKind, ...] | None = None) -> Findings:
    """Compare `state` with the kernel for every kind; change nothing."""
    findings = Findings()
    for kind in kinds if kinds is not None else default_kinds():
        desired = kind.desired(state)
        findings.extend(kind.diff(desired, kind.observe(kernel, desired)))
    return findings


def plan_repair(drifts: list[Drift]) -> list[Action]:
    """Return the repair actions of `drifts` in order, each distinct action once."""
    # Many drifts share one repair object (a single firewall sync repairs every rule), and
    # hashing an action hashes its whole rule set, so drop repeats by identity first.
    seen: set[int] = set()
    unique = []
    for drift in drifts:
        for action in drift.repair:
            if id(action) not in seen:
                seen.add(id(action))
                unique.append(action)
    return list(dict.fromkeys(unique))


@singledispatch
def describe(action) -> str:
    """Return one line saying what a repair action did, for reports."""
    values = ", ".join(f"{f.name}={getattr(action, f.name)}" for f in fields(action))
    return f"{type(action).__name__}({values})"


@describe.register
def _(action: EnsureBridge) -> str:
    return f"bridge {action.name} of network {action.network} ensured with {action.address}"


@describe.register
def _(action: EnsureVeth) -> str:
    return f"veth {action.host_ifname} of endpoint {action.endpoint} ensured as {action.ifname} in {action.netns}"


@describe.register
def _(action: RemoveBridge) -> str:
    return f"bridge {action.name} of network {action.network} removed"


@describe.register
def _(action: RemoveVeth) -> str:
    return f"veth {action.host_ifname} of endpoint {action.endpoint} removed"


@describe.register
def _(action: RemoveStaleLink) -> str:
    return f"stale {action.kind} {action.name} removed"


@describe.register
def _(action: EnsureSysctl) -> str:
    return f"sysctl {action.key} set to {action.value}"


@describe.register
def _(action: SyncProxy) -> str:
    if not action.bindings:
        return "userland proxy stopped"
    return f"userland proxy serving {len(action.bindings)} mapping(s)"


@describe.register
def _(action: SyncFirewall) -> str:
    return f"netstate firewall rules synced ({len(action.ruleset.rules)} rule(s) in {len(action.ruleset.chains)} chain(s))"
