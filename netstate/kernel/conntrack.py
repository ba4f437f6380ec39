"""Deleting stale UDP conntrack entries with the conntrack tool (conntrack-tools).

A UDP "connection" lives in conntrack for as long as datagrams keep flowing. When a UDP
mapping is removed or replaced, its entries would keep steering datagrams to the old
destination (or to none), so the entries whose original destination port is the host port are
deleted. A failure here is logged as a warning only: the mapping itself is already right.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterable

log = logging.getLogger(__name__)

CONNTRACK = "conntrack"
TIMEOUT_S = 30
# The first dport= of a line belongs to the original direction, which is what a client sent.
_ORIGINAL_DPORT = re.compile(r"\bdport=(\d+)")


class ConntrackTool:
    """Deletes UDP conntrack entries by original destination port in this namespace."""

    def __init__(self, command: str = CONNTRACK) -> None:
        self.command = command

    def flush_udp(self, ports: Iterable[int]) -> int:
        """Delete the UDP entries whose original destination port is one of `ports`.

        Lists the table once, then deletes only the ports that have entries, so the usual
        case costs one process. Returns how many ports had entries deleted.
        """
        requested = set(ports)
        if not requested:
            return 0
        listing = self._run("-L", "-p", "udp")
        if listing is None:
            return 0
        present = {int(m.group(1)) for line in listing.splitlines() if (m := _ORIGINAL_DPORT.search(line))}
        flushed = 0
        for port in sorted(requested & present):
            if self._run("-D", "-p", "udp", "--orig-port-dst", str(port)) is not None:
                flushed += 1
                log.info("conntrack entries for UDP port %d deleted", port)
        return flushed

    def _run(self, *args: str) -> str | None:
        command = [self.command, *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.warning("cannot run %s: %s", " ".join(command), err)
            return None
        # conntrack -D exits with 1 when no entry matched, which is not a failure here.
        if done.returncode != 0 and "0 flow entries" not in done.stderr:
            log.warning("%s failed (%d): %s", " ".join(command), done.returncode, done.stderr.strip())
            return None
        return done.stdout
