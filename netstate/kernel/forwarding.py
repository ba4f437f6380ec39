"""The adapters that make traffic flow: firewall, userland proxy, sysctls and conntrack.

They are built only when a command changes networks, ports or settings, so that a plain
`netstate allocate` never imports python-iptables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netstate.kernel.locking import exclusive_lock


class Forwarding:
    """The forwarding adapters of one managed namespace, and the lock that orders their syncs.

    The lock (a file next to the database) is held from reading the recorded state to the last
    effect of a sync. Two commands that commit one after the other then apply their syncs in the
    same order, and the later one always works from the newer state.
    """

    def __init__(self, firewall, proxy, sysctl, conntrack, lock_path: Path | None = None) -> None:
        self.firewall = firewall
        self.proxy = proxy
        self.sysctl = sysctl
        self.conntrack = conntrack
        self.lock_path = lock_path

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sync lock for the duration of the block."""
        if self.lock_path is None:
            yield
            return
        with exclusive_lock(self.lock_path, "sync lock"):
            yield


def state_prefix(db_path: Path) -> Path:
    """Return the path prefix of the files kept next to a database (the name without suffix)."""
    return db_path.with_suffix("")


def build_forwarding(db_path: Path) -> Forwarding:
    """Build the real adapters for the namespace this process runs in."""
    from netstate.kernel.conntrack import ConntrackTool
    from netstate.kernel.iptables import IptablesFirewall
    from netstate.kernel.proxy import ProxySupervisor
    from netstate.kernel.sysctl import ProcSysctl

    prefix = state_prefix(db_path)
    return Forwarding(
        firewall=IptablesFirewall(),
        proxy=ProxySupervisor(prefix),
        sysctl=ProcSysctl(),
        conntrack=ConntrackTool(),
        lock_path=Path(f"{prefix}.sync.lock"),
    )
