"""`netstate network ...`: create, list, remove networks and switch inter-container traffic."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli.context import service
from cli.output import emit_json, emit_table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

network_app = typer.Typer(help="Create, list and remove networks.", no_args_is_help=True)


def network_dict(network) -> dict:
    return {
        "name": network.name,
        "subnet": str(network.subnet),
        "gateway": str(network.gateway),
        "bridge": network.bridge,
        "icc": network.icc,
    }


@network_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Network name.")],
    subnet: Annotated[Optional[str], typer.Option(help="IPv4 CIDR; host bits name the gateway. Default: first free candidate.")] = None,
    gateway: Annotated[Optional[str], typer.Option(help="Gateway address inside --subnet. Default: first usable address.")] = None,
    bridge: Annotated[Optional[str], typer.Option(help="Bridge name, 1 to 15 characters. Default: ns-NAME.")] = None,
    icc: Annotated[bool, typer.Option("--icc/--no-icc", help="Allow traffic between containers of the network.")] = True,
    json: JsonFlag = False,
) -> None:
    """Record a network and create its bridge.

    Example: netstate network create web --subnet 10.44.0.0/24 --bridge nsweb0
    """
    network = service(ctx).create_network(name, subnet=subnet, gateway=gateway, bridge=bridge, icc=icc)
    if json:
        emit_json(network_dict(network))
    else:
        typer.echo(f"network {network.name}: {network.subnet} gateway {network.gateway} bridge {network.bridge}")


@network_app.command("ls")
def list_networks(ctx: typer.Context, json: JsonFlag = False) -> None:
    """List networks.

    Example: netstate network ls --json
    """
    found = service(ctx).networks()
    if json:
        emit_json([network_dict(n) for n in found])
        return
    emit_table(
        ["NAME", "SUBNET", "GATEWAY", "BRIDGE", "ICC"],
        [[n.name, n.subnet, n.gateway, n.bridge, n.icc] for n in found],
    )


@network_app.command("rm")
def remove(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Network name.")], json: JsonFlag = False) -> None:
    """Remove a network that holds no address, and its bridge if netstate created it.

    Example: netstate network rm web
    """
    service(ctx).remove_network(name)
    if json:
        emit_json({"removed": name})
    else:
        typer.echo(f"network {name} removed")


@network_app.command("icc")
def switch_icc(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Network name.")],
    enabled: Annotated[Optional[bool], typer.Option("--on/--off", help="Allow or drop traffic between containers.")] = None,
    json: JsonFlag = False,
) -> None:
    """Switch traffic between containers of a network on or off.

    Example: netstate network icc web --off
    """
    if enabled is None:
        # Typer would report only "Missing option '--on'", as if --off did not exist.
        from netstate.errors import InvalidInput

        raise InvalidInput(f"network icc {name} needs --on or --off")
    network = service(ctx).set_icc(name, enabled)
    if json:
        emit_json(network_dict(network))
    else:
        typer.echo(f"network {name}: inter-container traffic {'on' if network.icc else 'off'}")


def register(app: typer.Typer) -> None:
    app.add_typer(network_app, name="network")
