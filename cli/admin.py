"""`netstate rebuild` and `netstate db upgrade`: maintenance of the record itself."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import service
from cli.output import emit_json

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Apply pending schema migrations (also done automatically on first use).

    Example: netstate db upgrade
    """
    from netstate.store.engine import schema_revision

    netstate = service(ctx)
    revision = schema_revision(netstate.store.engine)
    if json:
        emit_json({"revision": revision})
    else:
        typer.echo(f"database at schema revision {revision}")


def rebuild(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Recreate the current-state tables from the event log.

    Example: netstate rebuild
    """
    count = service(ctx).rebuild()
    if json:
        emit_json({"events": count})
    else:
        typer.echo(f"projections rebuilt from {count} events")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command("rebuild")(rebuild)
