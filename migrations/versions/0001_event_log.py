"""Create the append-only event log, the projections and the checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recorded_at", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("network", sa.Text, nullable=False),
        sa.Column("endpoint", sa.Text),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("actor_user", sa.Text, nullable=False),
        sa.Column("actor_pid", sa.Integer, nullable=False),
        sa.Column("actor_command", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("events_network", "events", ["network", "seq"])
    op.create_index("events_endpoint", "events", ["endpoint", "seq"])
    op.create_index("events_recorded_at", "events", ["recorded_at"])
    if op.get_bind().dialect.name == "sqlite":
        # The log is append-only: corrections are new events, never edits.
        op.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            "BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE rejected'); END"
        )
        op.execute(
            "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
            "BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE rejected'); END"
        )

    op.create_table(
        "networks",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("subnet", sa.Text, nullable=False),
        sa.Column("gateway", sa.Text, nullable=False),
        sa.Column("bridge", sa.Text, nullable=False, unique=True),
        sa.Column("icc", sa.Boolean, nullable=False),
        sa.Column("last_address", sa.Text),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("network", sa.Text, primary_key=True),
        sa.Column("endpoint", sa.Text, primary_key=True),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("netns", sa.Text),
        sa.Column("ifname", sa.Text),
        sa.Column("host_ifname", sa.Text, unique=True),
        sa.Column("seq", sa.Integer, nullable=False),
        # Second line of defence behind the decision: one holder per address.
        sa.UniqueConstraint("network", "address", name="leases_one_holder"),
    )
    op.create_index("leases_endpoint", "leases", ["endpoint"])
    op.create_table(
        "bindings",
        sa.Column("protocol", sa.Text, primary_key=True),
        sa.Column("host_ip", sa.Text, primary_key=True),
        sa.Column("host_port", sa.Integer, primary_key=True),
        sa.Column("network", sa.Text, nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("container_ip", sa.Text, nullable=False),
        sa.Column("container_port", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_index("bindings_endpoint", "bindings", ["endpoint"])
    op.create_table(
        "port_cursors",
        sa.Column("protocol", sa.Text, primary_key=True),
        sa.Column("last_port", sa.Integer, nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("checkpoints", "settings", "port_cursors", "bindings", "leases", "networks"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_no_update")
        op.execute("DROP TRIGGER IF EXISTS events_no_delete")
    op.drop_table("events")
