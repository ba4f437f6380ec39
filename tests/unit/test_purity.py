"""The domain core performs no I/O: importing it loads no database, kernel or process module."""

import json
import subprocess
import sys

from tests.conftest import REPO

FORBIDDEN = ("sqlalchemy", "alembic", "pyroute2", "iptc", "subprocess", "socket", "typer", "netstate.store", "netstate.kernel")

# Runs in a fresh interpreter, so modules pytest itself loaded do not count.
PROBE = """
import importlib, json, pkgutil, sys
import netstate.domain
for module in pkgutil.iter_modules(netstate.domain.__path__):
    importlib.import_module(f"netstate.domain.{module.name}")
print(json.dumps(sorted(sys.modules)))
"""


def test_domain_imports_nothing_that_does_io():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    loaded = json.loads(done.stdout)
    assert "netstate.domain.decide" in loaded
    offending = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN))
    assert offending == []
