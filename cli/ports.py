"""`netstate map`, `unmap`, `ports` and `config`: published ports and host settings."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli.context import service
from cli.output import emit_json, emit_table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NetworkOption = Annotated[
    Optional[str], typer.Option(help="Network of the address the ports lead to; required when the endpoint has addresses on several networks.")
]
Specs = Annotated[
    list[str],
    typer.Argument(help="Port specs: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp|sctp]."),
]

config_app = typer.Typer(help="Show and change host settings.", no_args_is_help=True)


def binding_dict(binding) -> dict:
    """Return the JSON form of a binding."""
    key = binding.key
    return {
        "endpoint": binding.endpoint,
        "network": binding.network,
        "protocol": key.protocol.value,
        "host_ip": str(key.host_ip),
        "host_port": key.host_port,
        "container_ip": str(binding.container_ip),
        "container_port": binding.container_port,
    }


def describe(binding) -> str:
    key = binding.key
    return f"{key.host_ip}:{key.host_port} -> {binding.container_ip}:{binding.container_port}/{key.protocol.value}"


def emit_bindings(bindings, json: bool, prefix: str) -> None:
    """Print bindings as a JSON list, or one line each with `prefix` before the mapping."""
    if json:
        emit_json([binding_dict(b) for b in bindings])
        return
    for binding in bindings:
        typer.echo(f"{binding.endpoint}: {prefix}{describe(binding)}")


def map_ports(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    specs: Specs,
    network: NetworkOption = None,
    json: JsonFlag = False,
) -> None:
    """Publish host ports for an endpoint: all of the specs or none of them.

    An empty or absent host port is chosen from the dynamic range.

    Example: netstate map c1 8080:80 127.0.0.1::53/udp 9000-9005:9000-9005
    """
    bindings = service(ctx).map_ports(endpoint, specs, network=network)
    emit_bindings(bindings, json, prefix="")


def unmap_ports(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    specs: Specs,
    network: NetworkOption = None,
    json: JsonFlag = False,
) -> None:
    """Withdraw published ports of an endpoint: all the specs name, or none if one names nothing.

    A spec without a host address or host port matches every one.

    Example: netstate unmap c1 8080:80
    """
    removed = service(ctx).unmap_ports(endpoint, specs, network=network)
    emit_bindings(removed, json, prefix="unmapped ")


def list_ports(
    ctx: typer.Context,
    endpoint: Annotated[Optional[str], typer.Option(help="Only this endpoint's ports.")] = None,
    json: JsonFlag = False,
) -> None:
    """List the published ports: host address and port to container address and port.

    Example: netstate ports --json
    """
    found = service(ctx).bindings(endpoint)
    if json:
        emit_json([binding_dict(b) for b in found])
        return
    emit_table(
        ["ENDPOINT", "NETWORK", "PROTO", "HOST", "CONTAINER"],
        [
            [b.endpoint, b.network, b.key.protocol.value, f"{b.key.host_ip}:{b.key.host_port}", f"{b.container_ip}:{b.container_port}"]
            for b in found
        ],
    )


@config_app.command("get")
def get_setting(
    ctx: typer.Context,
    key: Annotated[Optional[str], typer.Argument(help="Setting name; all settings when absent.")] = None,
    json: JsonFlag = False,
) -> None:
    """Show host settings: port-range and userland-proxy.

    Example: netstate config get userland-proxy
    """
    from netstate.domain.ports import SETTINGS

    values = service(ctx).settings()
    if key is not None and key not in values:
        raise typer.BadParameter(f"unknown setting {key!r}; known settings: {', '.join(values)}", param_hint="KEY")
    selected = {key: values[key]} if key is not None else values
    if json:
        emit_json(selected)
        return
    if key is not None:
        typer.echo(values[key])
        return
    emit_table(["KEY", "VALUE", "DESCRIPTION"], [[k, v, SETTINGS[k].description] for k, v in selected.items()])


@config_app.command("set")
def set_setting(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Setting name: port-range or userland-proxy.")],
    value: Annotated[str, typer.Argument(help="New value, such as 49153-65535 or false.")],
    json: JsonFlag = False,
) -> None:
    """Change a host setting and apply it to the firewall and the proxy at once.

    Example: netstate config set userland-proxy false
    """
    now = service(ctx).set_setting(key, value)
    if json:
        emit_json({key: now})
    else:
        typer.echo(f"{key} = {now}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("map")(map_ports)
    app.command("unmap")(unmap_ports)
    app.command("ports")(list_ports)
    app.add_typer(config_app, name="config")
