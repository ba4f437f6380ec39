"""The `netstate` command: global options, command registration and error reporting."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli import admin, audit, endpoints, networks, ports, recovery
from cli.context import Options

app = typer.Typer(
    name="netstate",
    help="Host-side container networking, recorded as events in SQLite.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def main(
    ctx: typer.Context,
    db: Annotated[
        Optional[Path],
        typer.Option(
            "--db",
            envvar="NETSTATE_DB",
            help="SQLite database file. Default: /var/lib/netstate/netstate.db, or "
            "/var/lib/netstate/netns/NAME/netstate.db with --host-netns NAME.",
        ),
    ] = None,
    host_netns: Annotated[
        Optional[str],
        typer.Option(
            "--host-netns",
            envvar="NETSTATE_HOST_NETNS",
            help="Manage the named namespace (under /run/netns) instead of the host's own.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each kernel change.")] = False,
) -> None:
    """Host-side container networking, recorded as events in SQLite."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="netstate: %(levelname)s: %(message)s",
    )
    ctx.obj = Options(db=db, host_netns=host_netns, kernel=os.environ.get("NETSTATE_KERNEL", "real"))


networks.register(app)
endpoints.register(app)
admin.register(app)
ports.register(app)
recovery.register(app)
audit.register(app)


def run() -> None:
    """Entry point of the console script: runs the app and reports netstate errors on one line."""
    from netstate.errors import NetstateError

    try:
        app()
    except NetstateError as err:
        typer.echo(f"netstate: error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
