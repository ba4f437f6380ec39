"""Run several `netstate` commands in one process, to save a process start per command.

Usage: python3 -m tests.kernel.multi DB HOST_NETNS '[["network", "create", "web"], ["ls"]]'

Each command's output follows a line "### <exit status>" printed after it ends, so that a test
can split the output and check each status.
"""

from __future__ import annotations

import json
import sys

from cli.main import app
from netstate.errors import NetstateError


def main() -> int:
    db, host_netns, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    worst = 0
    for argv in commands:
        try:
            status = app(["--db", db, "--host-netns", host_netns, *argv], standalone_mode=False) or 0
        except NetstateError as err:
            print(f"netstate: error: {err}", file=sys.stderr)
            status = err.exit_code
        print(f"### {status}", flush=True)
        worst = max(worst, status)
    return worst


if __name__ == "__main__":
    sys.exit(main())
