"""`netstate history`, `who`, `state`, `events` and `sql`: questions about the past."""

from __future__ import annotations

import json as jsonlib
import signal
import threading
from typing import Annotated, Optional

import typer

from cli.context import service
from cli.networks import network_dict
from cli.output import emit_json, emit_table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TIME_HELP = "ISO 8601 (local time when no zone is given), a duration ago (90s, 15m, 2h, 3d, 1w) or 'now'."


def history(
    ctx: typer.Context,
    endpoint: Annotated[Optional[str], typer.Option(help="Only events of this endpoint.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Only the leases of this container address and the ports mapped to it.")] = None,
    port: Annotated[Optional[str], typer.Option(help="Only the bindings of this host port: PORT, PORT/PROTO or HOST_IP:PORT/PROTO.")] = None,
    network: Annotated[Optional[str], typer.Option(help="Only events of this network.")] = None,
    since: Annotated[Optional[str], typer.Option(help=f"Only events recorded at or after this time: {TIME_HELP}")] = None,
    until: Annotated[Optional[str], typer.Option(help=f"Only events recorded at or before this time: {TIME_HELP}")] = None,
    json: JsonFlag = False,
) -> None:
    """List the recorded events that match every filter, oldest first.

    Example: netstate history --address 10.44.0.7 --since 3d
    """
    found = service(ctx).history(
        endpoint=endpoint, address=address, port=port, network=network, since=since, until=until
    )
    if json:
        emit_json([change.to_dict() for change in found])
        return
    emit_table(
        ["SEQ", "TIME", "TYPE", "NETWORK", "ENDPOINT", "SUMMARY", "USER"],
        [[c.seq, _shown(c.recorded_at), c.type, c.network, c.endpoint, c.summary, c.actor.user] for c in found],
    )


def who(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A container address, or a host port as PORT, PORT/PROTO or HOST_IP:PORT/PROTO.")],
    at: Annotated[str, typer.Option(help=f"The time to look at: {TIME_HELP}")] = "now",
    network: Annotated[Optional[str], typer.Option(help="Look only at this network.")] = None,
    json: JsonFlag = False,
) -> None:
    """Show which endpoint held an address or a host port at a time, with the lease's start and end.

    Exits with status 1 when nobody held it then.

    Example: netstate who 10.44.0.7 --at '2026-03-02 14:05'
    """
    answer = service(ctx).who(target, at=at, network=network)
    if json:
        emit_json(
            {
                "target": str(answer.target),
                "at": _stored(answer.at),
                "holders": [lease.to_dict() for lease in answer.holders],
                "previous": None if answer.previous is None else answer.previous.to_dict(),
            }
        )
    else:
        for lease in answer.holders:
            typer.echo(f"{lease.subject()}: {lease.endpoint} {_span(lease)}")
        if not answer.holders:
            typer.echo(_nobody(answer))
    if not answer.holders:
        raise typer.Exit(1)


def state(
    ctx: typer.Context,
    at: Annotated[str, typer.Option(help=f"The time to look at: {TIME_HELP}")] = "now",
    json: JsonFlag = False,
) -> None:
    """Show networks, addresses and published ports as they stood at a time, folded from the log.

    Example: netstate state --at 2h
    """
    from netstate.service import Attachment

    past = service(ctx).state_at(at)
    networks = sorted(past.state.networks.values(), key=lambda n: n.name)
    attachments = sorted(
        (Attachment(lease, past.state.networks[lease.network]) for lease in past.state.leases.values()),
        key=lambda a: (a.network.name, a.lease.address),
    )
    bindings = sorted(past.state.bindings.values(), key=lambda b: b.key)
    if json:
        emit_json(
            {
                "at": _stored(past.at),
                "seq": past.seq,
                "networks": [network_dict(n) for n in networks],
                "endpoints": [a.to_dict() for a in attachments],
                "ports": [_binding_dict(b) for b in bindings],
                "settings": dict(sorted(past.state.settings.items())),
            }
        )
        return

    typer.echo(f"state at {_shown(past.at)}, after event {past.seq}")
    _section("NETWORKS", ["NAME", "SUBNET", "GATEWAY", "BRIDGE", "ICC"], [[n.name, n.subnet, n.gateway, n.bridge, n.icc] for n in networks])
    _section(
        "ENDPOINTS",
        ["ENDPOINT", "NETWORK", "ADDRESS", "NETNS", "IFNAME"],
        [[a.lease.endpoint, a.network.name, f"{a.lease.address}/{a.network.subnet.prefixlen}", a.lease.netns, a.lease.ifname] for a in attachments],
    )
    _section(
        "PORTS",
        ["PROTO", "HOST_IP", "HOST_PORT", "ENDPOINT", "NETWORK", "CONTAINER"],
        [[b.key.protocol.value, b.key.host_ip, b.key.host_port, b.endpoint, b.network, f"{b.container_ip}:{b.container_port}"] for b in bindings],
    )


def events(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events as they are appended, until SIGINT or SIGTERM.")] = False,
    after: Annotated[int, typer.Option(min=0, help="Start after this sequence number.")] = 0,
    since: Annotated[Optional[str], typer.Option(help=f"Only events recorded at or after this time: {TIME_HELP}")] = None,
    interval: Annotated[float, typer.Option(min=0.01, max=60.0, help="With --follow, seconds between polls of the log.")] = 0.5,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")] = False,
) -> None:
    """Print the raw event log, one event per line, oldest first.

    Example: netstate events --follow --json
    """
    netstate = service(ctx)
    if not follow:
        for change in netstate.events(after=after, since=since):
            _print_event(change, json)
        return

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    try:
        for change in netstate.follow_events(stop, after=after, since=since, interval=interval):
            _print_event(change, json)
    except BrokenPipeError:
        # The reader went away, as `netstate events -f | head` does; that ends the follow.
        raise typer.Exit(0) from None


def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="One SQL statement that only reads, such as a SELECT over the audit views.")],
    json: Annotated[bool, typer.Option("--json", help="Print a JSON array of objects keyed by column name.")] = False,
) -> None:
    """Run one read-only SQL query on the database and print its rows.

    The database is opened read-only; a statement that would change it is rejected with
    status 1. docs/audit.md documents the views and contains a cookbook of queries.

    Example: netstate sql "SELECT endpoint, allocated_at FROM address_leases WHERE address = '10.44.0.7'"
    """
    from netstate.store.readonly import run_readonly_query
    from netstate.bootstrap import default_db_path
    from netstate.errors import InvalidQuery

    options = ctx.find_root().obj
    path = options.db if options.db is not None else default_db_path(options.host_netns)
    result = run_readonly_query(path, query)
    if json:
        duplicates = sorted({name for name in result.columns if result.columns.count(name) > 1})
        if duplicates:
            raise InvalidQuery(f"column {duplicates[0]!r} appears twice; name each column with AS for --json")
        emit_json([dict(zip(result.columns, (_json_value(v) for v in row))) for row in result.rows])
        return
    emit_table(result.columns, [["NULL" if v is None else _json_value(v) for v in row] for row in result.rows])


def _print_event(change, as_json: bool) -> None:
    if as_json:
        typer.echo(jsonlib.dumps(change.to_dict()))
        return
    payload = jsonlib.dumps(change.payload, separators=(",", ":"))
    endpoint = change.endpoint if change.endpoint is not None else "-"
    typer.echo(f"{change.seq} {_stored(change.recorded_at)} {change.type} {change.network or '-'} {endpoint} {change.actor.user} {payload}")


def _section(title: str, headers: list[str], rows: list[list]) -> None:
    typer.echo("")
    typer.echo(title)
    if rows:
        emit_table(headers, rows)
    else:
        typer.echo("(none)")


def _binding_dict(binding) -> dict:
    return {
        "protocol": binding.key.protocol.value,
        "host_ip": str(binding.key.host_ip),
        "host_port": binding.key.host_port,
        "network": binding.network,
        "endpoint": binding.endpoint,
        "container_ip": str(binding.container_ip),
        "container_port": binding.container_port,
    }


def _span(lease) -> str:
    started = f"from {_shown(lease.started_at)}"
    if lease.ended_at is None:
        return f"{started}, still held"
    return f"{started} to {_shown(lease.ended_at)}"


def _nobody(answer) -> str:
    text = f"nobody held {answer.target} at {_shown(answer.at)}"
    previous = answer.previous
    if previous is None:
        return f"{text}, nor at any time before"
    return f"{text}; the last holder was {previous.endpoint} ({previous.subject()}) until {_shown(previous.ended_at)}"


def _json_value(value):
    if isinstance(value, bytes):
        return value.hex()
    return value


def _shown(moment) -> str:
    from netstate.audit.times import shown_form

    return shown_form(moment)


def _stored(moment) -> str:
    from netstate.audit.times import stored_form

    return stored_form(moment)


def register(app: typer.Typer) -> None:
    """Add the audit commands to the app."""
    app.command("history")(history)
    app.command("who")(who)
    app.command("state")(state)
    app.command("events")(events)
    app.command("sql")(sql)
