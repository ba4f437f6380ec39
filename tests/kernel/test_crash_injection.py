"""Kill netstate with SIGKILL at every step of a command, then check that restore converges.

For each command of the table, a first run with NETSTATE_CRASH_TRACE lists the steps the
command passes (see netstate/crash.py). Then, for each step, a fresh managed namespace and a
fresh database are set up, the command is killed at that step, `netstate restore` runs twice,
and the test checks:

- the log is intact: the events before the command are unchanged, and the command's own events
  are either all there or none;
- the projections equal a fold of the log, and no address is held twice;
- the kernel, read with `ip -j`, contains exactly what the record implies, with no bridge or veth
  left over;
- netstate's rules (read with `iptables-legacy-save`) and the proxy's listeners (read with `ss`)
  are those of the uninterrupted run when the command's events are there. When they are not,
  they are those before the command;
- no host port has two DNAT rules or two listeners;
- the second restore changes nothing.

Commands with many steps kill at a deterministic sample of them that still includes every
distinct step name (`Command.sample`).

A new command joins with one line in COMMANDS.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, requires_root, run_netstate
from tests.kernel.kernel_view import assert_converged, read_record
from tests.kernel.portnet import kill_proxy, marked_rules

pytestmark = [pytest.mark.root, requires_root]

WEB = ("network", "create", "web", "--subnet", "10.44.0.0/24", "--bridge", "nsweb0")
DB_NET = ("network", "create", "db", "--subnet", "10.45.0.0/24", "--bridge", "nsdb0")
PLUMB_C1 = ("allocate", "c1", "--network", "web", "--netns", "{c1}")
MAP_C1 = ("map", "c1", "8080:80", "5353:53/udp")


def occupy_eth0(containers: dict[str, str]) -> None:
    """Occupy eth0 in c1, so that plumbing a veth there fails and the allocation is undone."""
    subprocess.run(["ip", "-n", containers["c1"], "link", "add", "eth0", "type", "bridge"], check=True)


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]
    setup: tuple[tuple[str, ...], ...] = ()
    containers: tuple[str, ...] = ("c1",)
    # Changes the namespaces before the setup commands run.
    prepare: Callable[[dict[str, str]], None] | None = None
    # Kill only at this step and the ones after it.
    steps_from: str | None = None
    succeeds: bool = True
    # Kill at no more than this many steps, chosen by `sample_steps`; None kills at every one.
    sample: int | None = None


COMMANDS = [
    Command("network-create", WEB),
    Command("network-rm", ("network", "rm", "web"), setup=(WEB,)),
    Command("allocate", ("allocate", "c1", "--network", "web"), setup=(WEB,)),
    Command("allocate-netns", PLUMB_C1, setup=(WEB,)),
    Command("allocate-default-network", ("allocate", "c1", "--netns", "{c1}")),
    Command("release", ("release", "c1"), setup=(WEB, PLUMB_C1)),
    Command(
        "release-two-networks",
        ("release", "c1"),
        setup=(WEB, DB_NET, PLUMB_C1, ("allocate", "c1", "--network", "db", "--netns", "{c1}", "--ifname", "eth1")),
    ),
    # A kill before the compensating commit leaves a lease whose veth cannot be created. The
    # record is right to keep it and restore reports the error, so only later steps are killed.
    Command(
        "allocate-compensated",
        PLUMB_C1,
        setup=(WEB,),
        prepare=occupy_eth0,
        steps_from="compensate:after-commit",
        succeeds=False,
    ),
    Command("map", MAP_C1, setup=(WEB, PLUMB_C1), sample=12),
    Command("map-more", ("map", "c1", "8081:80"), setup=(WEB, PLUMB_C1, MAP_C1), sample=8),
    Command("unmap-one", ("unmap", "c1", "8080:80"), setup=(WEB, PLUMB_C1, MAP_C1), sample=8),
    Command("unmap-last", ("unmap", "c1", "8080:80", "5353:53/udp"), setup=(WEB, PLUMB_C1, MAP_C1), sample=10),
    Command("release-mapped", ("release", "c1"), setup=(WEB, PLUMB_C1, MAP_C1), sample=12),
]


def sample_steps(steps: list[str], limit: int | None) -> list[str]:
    """Return a deterministic sample of `steps`, in order.

    The sample holds the first pass through every distinct step name, even when that exceeds
    `limit`, then other steps spread evenly until it holds `limit`.
    """
    if limit is None or len(steps) <= limit:
        return steps
    chosen, names = set(), set()
    for index, step in enumerate(steps):
        name = step.split("#")[0]
        if name not in names:
            names.add(name)
            chosen.add(index)
    rest = [index for index in range(len(steps)) if index not in chosen]
    spare = limit - len(chosen)
    if spare > 0 and rest:
        chosen.update(rest[round(k * len(rest) / spare)] for k in range(min(spare, len(rest))))
    return [steps[index] for index in sorted(chosen)]


@dataclass(frozen=True)
class Forwarding:
    """netstate's rules by chain and the proxy's listeners, as read from the kernel."""

    rules: dict
    listeners: tuple[str, ...]


def listeners(netns: str) -> tuple[str, ...]:
    """Return the sockets listening in `netns` as "proto address:port", sorted."""
    done = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltun"], capture_output=True, text=True, check=True)
    return tuple(sorted(f"{line.split()[0]} {line.split()[4]}" for line in done.stdout.splitlines() if line.strip()))


def read_forwarding(netns: str) -> Forwarding:
    found = Forwarding(marked_rules(netns), listeners(netns))
    assert len(set(found.listeners)) == len(found.listeners), f"a port is listened on twice: {found.listeners}"
    dnat = [t.split(" -j ")[0] for texts in found.rules.values() for t in texts if "-j DNAT" in t]
    assert len(set(dnat)) == len(dnat), f"a host port has two DNAT rules: {dnat}"
    return found


class Scenario:
    """One fresh managed namespace, its containers and database, with the setup applied."""

    def __init__(self, command: Command, make_netns, db: Path) -> None:
        self.command = command
        self.db = db
        self.host = make_netns("host")
        self.containers = {name: make_netns(name) for name in command.containers}
        if command.prepare is not None:
            command.prepare(self.containers)
        if command.setup:
            self.multi([list(self.fill(argv)) for argv in command.setup], expect=0)
        self.before = read_record(db).events if command.setup else []
        self.forwarding_before = read_forwarding(self.host)

    def fill(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(arg.format(**self.containers) for arg in argv)

    def multi(self, commands: list[list[str]], expect: int | None = None) -> list[str]:
        """Run commands in one process; return the output of each."""
        done = subprocess.run(
            ["python3", "-m", "tests.kernel.multi", str(self.db), self.host, json.dumps(commands)],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )
        if expect is not None:
            assert done.returncode == expect, f"{commands} failed: {done.stderr}"
        outputs = []
        current: list[str] = []
        for line in done.stdout.splitlines():
            if line.startswith("### "):
                outputs.append("\n".join(current))
                current = []
            else:
                current.append(line)
        return outputs

    def run(self, env: dict[str, str]):
        return run_netstate(*self.fill(self.command.argv), db=self.db, host_netns=self.host, env=env)

    def new_event_types(self) -> list[str]:
        events = read_record(self.db).events
        old = [(r.seq, r.event) for r in self.before]
        assert [(r.seq, r.event) for r in events[: len(old)]] == old, "events before the command changed"
        return [r.event.type for r in events[len(old):]]

    def restore_twice_and_verify(self) -> Forwarding:
        first, second = (json.loads(out) for out in self.multi([["restore", "--json"], ["restore", "--json"]]))
        assert first["in_sync"], f"restore failed: {first['errors']} {first['drift']}"
        assert second["changes"] == [], f"second restore changed {second['changes']}"
        assert second["drift"] == [], f"second restore found {second['drift']}"
        assert_converged(self.db, self.host, list(self.containers.values()))
        return read_forwarding(self.host)


def traced_steps(command: Command, make_netns, tmp_path: Path) -> tuple[list[str], list[str], Forwarding, Forwarding]:
    """Run the command once uninterrupted; return the steps it passed, its event types, and the
    forwarding state before and after it."""
    scenario = Scenario(command, make_netns, tmp_path / "trace.db")
    trace = tmp_path / "trace.txt"
    try:
        result = scenario.run({"NETSTATE_CRASH_TRACE": str(trace)})
        assert (result.returncode == 0) == command.succeeds, result.stderr
        types = scenario.new_event_types()
        after = scenario.restore_twice_and_verify()
    finally:
        kill_proxy(scenario.db)
    steps = trace.read_text().split()
    if command.steps_from is not None:
        steps = steps[steps.index(command.steps_from):]
    return steps, types, scenario.forwarding_before, after


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_crash_at_every_step_then_restore(command, make_netns, tmp_path):
    steps, types, before, after = traced_steps(command, make_netns, tmp_path)
    assert {"before-commit", "after-commit"} <= set(steps) or command.steps_from, steps
    steps = sample_steps(steps, command.sample)

    failures = {}
    for number, step in enumerate(steps):
        scenario = Scenario(command, make_netns, tmp_path / f"step{number}.db")
        try:
            result = scenario.run({"NETSTATE_CRASH_AT": step})
            assert result.returncode == -9, f"not killed (status {result.returncode}): {result.stderr}"
            new = scenario.new_event_types()
            assert new in ([], types), f"the command's events are {new}, expected none or {types}"
            forwarding = scenario.restore_twice_and_verify()
            expected = after if new else before
            assert forwarding.listeners == expected.listeners, f"proxy listeners are {forwarding.listeners}"
            wrong = {c: r for c, r in forwarding.rules.items() if r != expected.rules.get(c)}
            assert forwarding.rules == expected.rules, f"netstate rules differ in {sorted(wrong)}"
        except AssertionError as err:
            failures[step] = str(err).splitlines()[0]
        finally:
            kill_proxy(scenario.db)
    assert not failures, f"{len(failures)} of {len(steps)} steps failed: {failures}"


def test_sample_covers_every_step_name():
    steps = ["a", "b", "b#2", "c", "b#3", "d", "e", "f", "g"]
    picked = sample_steps(steps, 6)
    assert {step.split("#")[0] for step in picked} == set("abcdefg")
    assert picked == [s for s in steps if s in picked]
    assert sample_steps(steps, None) == steps
