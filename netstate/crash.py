"""Crash injection for tests: SIGKILL this process at a named step.

Inert unless one of two environment variables is set:

- NETSTATE_CRASH_AT=STEP kills the process when it reaches STEP, as in
  NETSTATE_CRASH_AT=after-commit. STEP#N kills it at the Nth time it reaches STEP, for
  commands that pass the same step more than once (a release that removes two veths).
- NETSTATE_CRASH_TRACE=FILE appends every step the process reaches to FILE, one per line, in
  the STEP or STEP#N form that NETSTATE_CRASH_AT accepts.

The crash tests trace a command once to learn its steps, then run it again killed at each one
and check that `netstate restore` converges. Step names in use:

- before-commit, after-commit: around the commit of a command's events.
- compensate:before-commit, compensate:after-commit: around the commit of compensating events.
- before:ACTION, after:ACTION: around each kernel action, ACTION being its class name.
- bridge:created, bridge:marked, bridge:named, veth:created, veth:attached, peer:addressed:
  inside the link adapter, between the netlink calls of one action.
- proxy:started: the proxy process is up but not yet told to load its mappings.
- firewall:nat-committed, firewall:filter-committed: after each table's commit in a sync.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "NETSTATE_CRASH_AT"
TRACE_ENV = "NETSTATE_CRASH_TRACE"

_hits: Counter[str] = Counter()


def crashpoint(step: str) -> None:
    """Kill this process with SIGKILL if NETSTATE_CRASH_AT names this pass through `step`."""
    target = os.environ.get(ENV)
    trace = os.environ.get(TRACE_ENV)
    if not target and not trace:
        return
    _hits[step] += 1
    count = _hits[step]
    label = step if count == 1 else f"{step}#{count}"
    if trace:
        with open(trace, "a", encoding="utf-8") as file:
            file.write(label + "\n")
    if target == label or (target == f"{step}#1" and count == 1):
        os.kill(os.getpid(), signal.SIGKILL)
