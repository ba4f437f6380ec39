"""`netstate allocate`, `release` and `ls`: addresses held by endpoints."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli.context import service
from cli.output import emit_json, emit_table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def allocate(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name, such as a container name or id.")],
    network: Annotated[Optional[str], typer.Option(help="Network name. Default: 'default', created on first use.")] = None,
    ip: Annotated[Optional[str], typer.Option("--ip", help="Request this IPv4 address.")] = None,
    netns: Annotated[Optional[str], typer.Option(help="Container namespace (name under /run/netns or path) to plumb a veth into.")] = None,
    ifname: Annotated[Optional[str], typer.Option(help="Interface name inside --netns. Default: eth0.")] = None,
    json: JsonFlag = False,
) -> None:
    """Give an endpoint an address, and a veth when --netns is given.

    Example: netstate allocate c2 --network web --ip 10.44.0.9
    """
    attachment = service(ctx).allocate(endpoint, network=network, address=ip, netns=netns, ifname=ifname)
    if json:
        emit_json(attachment.to_dict())
        return
    lease, net = attachment.lease, attachment.network
    where = f" in {lease.netns} as {lease.ifname}" if lease.netns else ""
    typer.echo(f"{lease.endpoint}: {lease.address}/{net.subnet.prefixlen} on {net.name} (gateway {net.gateway}){where}")


def release(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    network: Annotated[Optional[str], typer.Option(help="Release only the address on this network.")] = None,
    json: JsonFlag = False,
) -> None:
    """Unmap the endpoint's ports, return its addresses and remove its veths.

    Example: netstate release c1
    """
    released = service(ctx).release(endpoint, network=network)
    if json:
        emit_json([{"endpoint": e.endpoint, "network": e.network, "address": str(e.address)} for e in released])
        return
    for event in released:
        typer.echo(f"{event.endpoint}: released {event.address} on {event.network}")


def list_endpoints(ctx: typer.Context, json: JsonFlag = False) -> None:
    """List the addresses held by endpoints.

    Example: netstate ls --json
    """
    found = service(ctx).attachments()
    if json:
        emit_json([a.to_dict() for a in found])
        return
    emit_table(
        ["ENDPOINT", "NETWORK", "ADDRESS", "NETNS", "IFNAME"],
        [[a.lease.endpoint, a.network.name, f"{a.lease.address}/{a.network.subnet.prefixlen}", a.lease.netns, a.lease.ifname] for a in found],
    )


def register(app: typer.Typer) -> None:
    app.command("allocate")(allocate)
    app.command("release")(release)
    app.command("ls")(list_endpoints)
