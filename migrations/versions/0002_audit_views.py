"""Create the audit views over the event log and the indexes they need.

The views are a documented interface (docs/audit.md lists every column): change them only by a
new migration that keeps the old columns. They read the JSON payload with SQLite's JSON
functions, so they are created for SQLite only.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# IMPORTANT: SQLite uses a partial index only when the query repeats the index's WHERE term
# exactly, and an expression index only when the query repeats its expression. The views below
# filter on `type = '...'` and read `json_extract(payload, '$.field')` in the same spelling as
# these indexes, so a filter on a view column reaches the index.
INDEXES = (
    # Pairs an allocation with its release and a mapping with its withdrawal.
    "CREATE INDEX events_pairing ON events (type, network, endpoint, seq)",
    # `address_leases WHERE address = ?`, used by `who ADDRESS` and `history --address`.
    "CREATE INDEX events_allocated_address ON events (json_extract(payload, '$.address'))"
    " WHERE type = 'AddressAllocated'",
    # `port_leases WHERE host_port = ?`, used by `who PORT/PROTO` and `history --port`.
    "CREATE INDEX events_mapped_port ON events (json_extract(payload, '$.host_port'))"
    " WHERE type = 'PortMapped'",
)

# One row per AddressAllocated, with the release that ended it. An endpoint holds at most one
# address per network at a time, so the release is the next AddressReleased of the same
# (network, endpoint).
ADDRESS_LEASES = """
CREATE VIEW address_leases AS
SELECT
    a.network AS network,
    json_extract(a.payload, '$.address') AS address,
    a.endpoint AS endpoint,
    json_extract(a.payload, '$.netns') AS netns,
    json_extract(a.payload, '$.ifname') AS ifname,
    json_extract(a.payload, '$.requested') AS requested,
    a.recorded_at AS allocated_at,
    a.actor_user AS allocated_by,
    r.recorded_at AS released_at,
    r.actor_user AS released_by,
    json_extract(r.payload, '$.reason') AS release_reason,
    round((julianday(r.recorded_at) - julianday(a.recorded_at)) * 86400, 3) AS held_seconds,
    a.seq AS alloc_seq,
    r.seq AS release_seq
FROM events AS a
LEFT JOIN events AS r ON r.seq = (
    SELECT n.seq FROM events AS n
    WHERE n.type = 'AddressReleased'
      AND n.network = a.network
      AND n.endpoint = a.endpoint
      AND n.seq > a.seq
    ORDER BY n.seq
    LIMIT 1
)
WHERE a.type = 'AddressAllocated'
"""

# One row per PortMapped, with the PortUnmapped that withdrew it: the next one of the same
# endpoint for the same protocol, host address and host port.
PORT_LEASES = """
CREATE VIEW port_leases AS
SELECT
    json_extract(m.payload, '$.protocol') AS protocol,
    json_extract(m.payload, '$.host_ip') AS host_ip,
    json_extract(m.payload, '$.host_port') AS host_port,
    m.endpoint AS endpoint,
    m.network AS network,
    json_extract(m.payload, '$.container_ip') AS container_ip,
    json_extract(m.payload, '$.container_port') AS container_port,
    json_extract(m.payload, '$.dynamic') AS dynamic,
    m.recorded_at AS mapped_at,
    m.actor_user AS mapped_by,
    u.recorded_at AS unmapped_at,
    u.actor_user AS unmapped_by,
    json_extract(u.payload, '$.reason') AS unmap_reason,
    round((julianday(u.recorded_at) - julianday(m.recorded_at)) * 86400, 3) AS held_seconds,
    m.seq AS map_seq,
    u.seq AS unmap_seq
FROM events AS m
LEFT JOIN events AS u ON u.seq = (
    SELECT n.seq FROM events AS n
    WHERE n.type = 'PortUnmapped'
      AND n.network = m.network
      AND n.endpoint = m.endpoint
      AND n.seq > m.seq
      AND json_extract(n.payload, '$.protocol') = json_extract(m.payload, '$.protocol')
      AND json_extract(n.payload, '$.host_ip') = json_extract(m.payload, '$.host_ip')
      AND json_extract(n.payload, '$.host_port') = json_extract(m.payload, '$.host_port')
    ORDER BY n.seq
    LIMIT 1
)
WHERE m.type = 'PortMapped'
"""

# One row per network creation, traffic switch and removal. A removal row repeats the subnet
# and bridge of the creation it ends.
NETWORK_HISTORY = """
CREATE VIEW network_history AS
SELECT
    e.seq AS seq,
    e.recorded_at AS recorded_at,
    e.network AS network,
    CASE e.type
        WHEN 'NetworkCreated' THEN 'created'
        WHEN 'IccChanged' THEN 'icc changed'
        WHEN 'NetworkRemoved' THEN 'removed'
    END AS change,
    coalesce(json_extract(e.payload, '$.subnet'), (
        SELECT json_extract(c.payload, '$.subnet') FROM events AS c
        WHERE c.type = 'NetworkCreated' AND c.network = e.network AND c.endpoint IS NULL
          AND c.seq < e.seq
        ORDER BY c.seq DESC
        LIMIT 1
    )) AS subnet,
    json_extract(e.payload, '$.gateway') AS gateway,
    coalesce(json_extract(e.payload, '$.bridge'), (
        SELECT json_extract(c.payload, '$.bridge') FROM events AS c
        WHERE c.type = 'NetworkCreated' AND c.network = e.network AND c.endpoint IS NULL
          AND c.seq < e.seq
        ORDER BY c.seq DESC
        LIMIT 1
    )) AS bridge,
    json_extract(e.payload, '$.icc') AS icc,
    json_extract(e.payload, '$.auto_subnet') AS auto_subnet,
    json_array_length(e.payload, '$.rejected') AS rejected_count,
    json_extract(e.payload, '$.rejected') AS rejected,
    json_extract(e.payload, '$.reason') AS reason,
    e.actor_user AS actor_user,
    e.actor_pid AS actor_pid,
    e.actor_command AS actor_command
FROM events AS e
WHERE e.type IN ('NetworkCreated', 'IccChanged', 'NetworkRemoved')
"""

# One row per candidate subnet that automatic selection skipped, with the reason.
SUBNET_REJECTIONS = """
CREATE VIEW subnet_rejections AS
SELECT
    e.seq AS seq,
    e.recorded_at AS recorded_at,
    e.network AS network,
    json_extract(e.payload, '$.subnet') AS chosen_subnet,
    candidate.key + 1 AS position,
    json_extract(candidate.value, '$.subnet') AS subnet,
    json_extract(candidate.value, '$.reason') AS reason
FROM events AS e, json_each(e.payload, '$.rejected') AS candidate
WHERE e.type = 'NetworkCreated'
"""

# Every event with a one-line summary and the actor who caused it.
CHANGES = """
CREATE VIEW changes AS
SELECT
    seq,
    recorded_at,
    type,
    schema_version,
    network,
    endpoint,
    CASE type
        WHEN 'NetworkCreated' THEN
            'created with subnet ' || json_extract(payload, '$.subnet')
            || ' on bridge ' || json_extract(payload, '$.bridge')
        WHEN 'NetworkRemoved' THEN 'removed: ' || json_extract(payload, '$.reason')
        WHEN 'IccChanged' THEN
            'inter-container traffic '
            || CASE json_extract(payload, '$.icc') WHEN 1 THEN 'on' ELSE 'off' END
        WHEN 'AddressAllocated' THEN 'allocated ' || json_extract(payload, '$.address')
        WHEN 'AddressReleased' THEN
            'released ' || json_extract(payload, '$.address')
            || ': ' || json_extract(payload, '$.reason')
        WHEN 'PortMapped' THEN
            'mapped ' || json_extract(payload, '$.host_ip')
            || ':' || json_extract(payload, '$.host_port')
            || '/' || json_extract(payload, '$.protocol')
            || ' to ' || json_extract(payload, '$.container_ip')
            || ':' || json_extract(payload, '$.container_port')
        WHEN 'PortUnmapped' THEN
            'unmapped ' || json_extract(payload, '$.host_ip')
            || ':' || json_extract(payload, '$.host_port')
            || '/' || json_extract(payload, '$.protocol')
            || ': ' || json_extract(payload, '$.reason')
        WHEN 'SettingChanged' THEN
            'set ' || json_extract(payload, '$.key') || ' = ' || json_extract(payload, '$.value')
    END AS summary,
    payload,
    actor_user,
    actor_pid,
    actor_command
FROM events
"""

VIEWS = {
    "address_leases": ADDRESS_LEASES,
    "port_leases": PORT_LEASES,
    "network_history": NETWORK_HISTORY,
    "subnet_rejections": SUBNET_REJECTIONS,
    "changes": CHANGES,
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect != "sqlite":
        # NOTE: a PostgreSQL store needs these views rewritten with its JSON operators.
        raise NotImplementedError(f"the audit views exist for SQLite only, not {dialect}")
    for statement in INDEXES:
        op.execute(statement)
    for statement in VIEWS.values():
        op.execute(statement)


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name in ("events_mapped_port", "events_allocated_address", "events_pairing"):
        op.execute(f"DROP INDEX IF EXISTS {name}")
