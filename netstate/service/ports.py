"""Published ports: map, unmap and list bindings."""

from __future__ import annotations


class PortCommands:
    """Port publishing commands, mixed into Netstate."""
