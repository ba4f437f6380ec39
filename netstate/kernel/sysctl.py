"""Network sysctls of the namespace this process runs in, through /proc/sys.

Network sysctls are per namespace: /proc/sys/net shows the namespace of the process that opens
it, so with `--host-netns` these writes stay inside the managed namespace.
"""

from __future__ import annotations

import logging
from pathlib import Path

from netstate.errors import KernelError

log = logging.getLogger(__name__)

PROC_SYS = Path("/proc/sys")


class ProcSysctl:
    """Reads and writes sysctls given as paths under /proc/sys, such as "net/ipv4/ip_forward"."""

    def __init__(self, root: Path = PROC_SYS) -> None:
        self.root = root

    def read(self, key: str) -> str | None:
        """Return the value of a sysctl, or None when it does not exist."""
        try:
            return (self.root / key).read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise KernelError(f"cannot read sysctl {key}: {err.strerror}") from err

    def ensure(self, key: str, value: str) -> bool:
        """Set a sysctl to `value` unless it already has it; return True when it changed."""
        current = self.read(key)
        if current is None:
            raise KernelError(f"sysctl {key} not found under {self.root}")
        if current == value:
            return False
        try:
            (self.root / key).write_text(f"{value}\n")
        except OSError as err:
            raise KernelError(f"cannot set sysctl {key} to {value}: {err.strerror}") from err
        log.info("sysctl %s set to %s (was %s)", key, value, current)
        return True
