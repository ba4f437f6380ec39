"""Table definitions used by queries. The schema itself is created only by the migrations."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Integer, MetaData, Table, Text

# The Alembic revision this code reads and writes. A test checks that it is the migrations'
# head; on open, a database at another revision is upgraded first.
SCHEMA_HEAD = "0002"

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    # ISO 8601 in UTC with microseconds and +00:00, so text order is time order.
    Column("recorded_at", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("network", Text, nullable=False),
    Column("endpoint", Text),
    Column("payload", Text, nullable=False),
    Column("actor_user", Text, nullable=False),
    Column("actor_pid", Integer, nullable=False),
    Column("actor_command", Text, nullable=False),
)

networks = Table(
    "networks",
    metadata,
    Column("name", Text, primary_key=True),
    Column("subnet", Text, nullable=False),
    Column("gateway", Text, nullable=False),
    Column("bridge", Text, nullable=False, unique=True),
    Column("icc", Boolean, nullable=False),
    Column("last_address", Text),
    Column("seq", Integer, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("network", Text, primary_key=True),
    Column("endpoint", Text, primary_key=True),
    Column("address", Text, nullable=False),
    Column("netns", Text),
    Column("ifname", Text),
    Column("host_ifname", Text, unique=True),
    Column("seq", Integer, nullable=False),
)

bindings = Table(
    "bindings",
    metadata,
    Column("protocol", Text, primary_key=True),
    Column("host_ip", Text, primary_key=True),
    Column("host_port", Integer, primary_key=True),
    Column("network", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("container_ip", Text, nullable=False),
    Column("container_port", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
)

port_cursors = Table(
    "port_cursors",
    metadata,
    Column("protocol", Text, primary_key=True),
    Column("last_port", Integer, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# How far each derived view is up to date, as the seq of the last event it reflects.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("seq", Integer, nullable=False),
)

PROJECTIONS_CHECKPOINT = "projections"
