"""The composition root: builds a Netstate from a database path and a namespace choice."""

from __future__ import annotations

import os
import pwd
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_DB = Path("/var/lib/netstate/netstate.db")
DB_ENV = "NETSTATE_DB"


def default_db_path(host_netns: str | None = None) -> Path:
    """Return the database path: NETSTATE_DB, else one per managed namespace under /var/lib."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV])
    if host_netns:
        # A namespace managed with --host-netns gets its own record, apart from the host's.
        return DEFAULT_DB.parent / "netns" / host_netns / DEFAULT_DB.name
    return DEFAULT_DB


def current_actor():
    """Return the actor recorded with each event: OS user, pid and command line."""
    from netstate.store.eventlog import Actor

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    return Actor(user=user, pid=os.getpid(), command=shlex.join(sys.argv))


def open_service(db: Path | None = None, *, host_netns: str | None = None, kernel: str = "real"):
    """Build a Netstate on the database at `db` (default: `default_db_path`).

    Args:
        db: path of the SQLite database; created and migrated on first use.
        host_netns: name of a namespace under /run/netns to manage instead of the host's own.
            The whole process enters it, so call this before starting threads.
        kernel: "real" for pyroute2, python-iptables and the proxy; "fake" for in-memory
            adapters that touch nothing.
    """
    from netstate.service import Kernel, Netstate
    from netstate.service.core import OWN_NETNS
    from netstate.store.engine import open_database
    from netstate.store.eventlog import EventStore

    # An empty name is an error, not "no namespace": `--host-netns "$UNSET"` must not manage
    # the host's own network.
    if host_netns is not None:
        from netstate.kernel.netns import enter_host_netns

        enter_host_netns(host_netns)
    path = Path(db) if db is not None else default_db_path(host_netns)
    store = EventStore(open_database(path))

    def build_kernel() -> Kernel:
        if kernel == "fake":
            from netstate.kernel.fake import FakeLinks, fake_forwarding

            return Kernel(FakeLinks(), host_netns, fake_forwarding)
        from netstate.kernel.forwarding import build_forwarding

        return Kernel(_BuiltOnFirstUse(_pyroute2_links), host_netns, lambda: build_forwarding(path), own_netns=OWN_NETNS)

    return Netstate(store, build_kernel, current_actor(), lambda: datetime.now(UTC))


def _pyroute2_links():
    from netstate.kernel.links import Pyroute2Links

    return Pyroute2Links()


class _BuiltOnFirstUse:
    """Stands in for an adapter and builds it on first use.

    A command that changes only ports or settings never touches links, so it never pays the
    0.3 s import of pyroute2 nor opens netlink.
    """

    def __init__(self, build) -> None:
        self._build = build
        self._built = None

    def __getattr__(self, name: str):
        if self._built is None:
            self._built = self._build()
        return getattr(self._built, name)

    def close(self) -> None:
        if self._built is not None:
            self._built.close()
