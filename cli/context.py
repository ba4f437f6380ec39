"""Global options and the lazily opened service they configure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer


@dataclass
class Options:
    """Options given before the command name."""

    db: Path | None = None
    host_netns: str | None = None
    kernel: str = "real"
    _service: object = field(default=None, repr=False)


def service(ctx: typer.Context):
    """Return the Netstate for this invocation, opening it on first use."""
    options: Options = ctx.find_root().obj
    if options._service is None:
        from netstate.bootstrap import open_service

        options._service = open_service(options.db, host_netns=options.host_netns, kernel=options.kernel)
        ctx.find_root().call_on_close(options._service.close)
    return options._service
