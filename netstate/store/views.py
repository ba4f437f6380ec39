"""Column lists of the audit views, so that queries over them are built with SQLAlchemy Core.

The views themselves are created by the migration that introduced them (revision 0002), and
docs/audit.md documents every column. These tables live in a MetaData of their own that nothing
ever creates.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, Table, Text

view_metadata = MetaData()

address_leases = Table(
    "address_leases",
    view_metadata,
    Column("network", Text),
    Column("address", Text),
    Column("endpoint", Text),
    Column("netns", Text),
    Column("ifname", Text),
    Column("requested", Integer),
    Column("allocated_at", Text),
    Column("allocated_by", Text),
    Column("released_at", Text),
    Column("released_by", Text),
    Column("release_reason", Text),
    Column("held_seconds", Float),
    Column("alloc_seq", Integer),
    Column("release_seq", Integer),
)

port_leases = Table(
    "port_leases",
    view_metadata,
    Column("protocol", Text),
    Column("host_ip", Text),
    Column("host_port", Integer),
    Column("endpoint", Text),
    Column("network", Text),
    Column("container_ip", Text),
    Column("container_port", Integer),
    Column("dynamic", Integer),
    Column("mapped_at", Text),
    Column("mapped_by", Text),
    Column("unmapped_at", Text),
    Column("unmapped_by", Text),
    Column("unmap_reason", Text),
    Column("held_seconds", Float),
    Column("map_seq", Integer),
    Column("unmap_seq", Integer),
)

changes = Table(
    "changes",
    view_metadata,
    Column("seq", Integer),
    Column("recorded_at", Text),
    Column("type", Text),
    Column("schema_version", Integer),
    Column("network", Text),
    Column("endpoint", Text),
    Column("summary", Text),
    Column("payload", Text),
    Column("actor_user", Text),
    Column("actor_pid", Integer),
    Column("actor_command", Text),
)
