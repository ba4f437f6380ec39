"""Crash injection for tests: SIGKILL this process at a named step.

Inert unless NETSTATE_CRASH_AT names a step, as in NETSTATE_CRASH_AT=after-commit. The crash
tests set it to every step name in turn and check that `netstate restore` converges.
"""

from __future__ import annotations

import os
import signal

ENV = "NETSTATE_CRASH_AT"


def crashpoint(step: str) -> None:
    """Kill this process with SIGKILL if NETSTATE_CRASH_AT equals `step`."""
    if os.environ.get(ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
