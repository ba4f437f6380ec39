"""The event log: append inside a write transaction, read back in order."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from netstate.domain.events import Event, from_record, to_payload
from netstate.errors import StoreError
from netstate.store import projections
from netstate.store.prepared import Prepared, scalar
from netstate.store.schema import events as events_table


# The two statements of every command, run on the driver (see `netstate.store.prepared`).
_INSERT_EVENT = Prepared(insert(events_table))
_LAST_SEQ = Prepared(select(func.max(events_table.c.seq)))


@dataclass(frozen=True, slots=True)
class Actor:
    """The cause of an event: the OS user, the process id and its command line."""

    user: str
    pid: int
    command: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as stored, with its sequence number, UTC time and actor."""

    seq: int
    recorded_at: datetime
    event: Event
    actor: Actor


class EventStore:
    """The append-only log and the projections kept in step with it.

    Each thread keeps one connection open between transactions: checking a connection out of
    the pool and back costs about as much as the statements of a small command.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Open a transaction that holds SQLite's write lock from its first statement.

        Reading state, deciding and appending inside it is what keeps two processes from
        handing out the same address or port. It commits on a clean exit.
        """
        with _translated("write"), self._transaction("IMMEDIATE") as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Open a read transaction that sees one consistent snapshot."""
        with _translated("read"), self._transaction("DEFERRED") as connection:
            yield connection

    def close(self) -> None:
        """Close this thread's connection and every connection of the pool."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = None
            connection.close()
        self.engine.dispose()

    @contextmanager
    def _transaction(self, mode: str) -> Iterator[Connection]:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._local.connection = self.engine.connect()
        if connection.in_transaction():
            # A transaction opened inside another one gets a connection of its own.
            with self.engine.connect() as own:
                own.execution_options(sqlite_begin=mode)
                with own.begin():
                    yield own
            return
        connection.execution_options(sqlite_begin=mode)
        with connection.begin():
            yield connection


def append(
    connection: Connection, new_events: Iterable[Event], actor: Actor, now: datetime
) -> list[Recorded]:
    """Append events and update the projections, inside the caller's write transaction."""
    recorded: list[Recorded] = []
    stamp = now.isoformat(timespec="microseconds")
    for event in new_events:
        row = {
            "recorded_at": stamp,
            "type": event.type,
            "schema_version": event.schema_version,
            "network": event.network,
            "endpoint": event.endpoint,
            "payload": json.dumps(to_payload(event), separators=(",", ":")),
            "actor_user": actor.user,
            "actor_pid": actor.pid,
            "actor_command": actor.command,
        }
        # NOTE: lastrowid is SQLite's (and MySQL's); PostgreSQL needs INSERT ... RETURNING.
        cursor = _INSERT_EVENT.run(connection, row)
        seq = cursor.lastrowid
        cursor.close()
        entry = Recorded(seq=seq, recorded_at=now, event=event, actor=actor)
        projections.project(entry.event, connection, seq)
        recorded.append(entry)
    if recorded:
        projections.set_checkpoint(connection, recorded[-1].seq)
    return recorded


def read_events(
    connection: Connection, *, after: int = 0, until: str | None = None
) -> Iterator[Recorded]:
    """Yield stored events with seq > `after` in order, up to `until` (ISO time) if given."""
    query = select(events_table).where(events_table.c.seq > after).order_by(events_table.c.seq)
    if until is not None:
        query = query.where(events_table.c.recorded_at <= until)
    result = connection.execution_options(yield_per=2000).execute(query)
    for row in result:
        yield decode_row(row)


def decode_row(row) -> Recorded:
    """Turn one row of the events table into a Recorded event."""
    event = from_record(
        row.type, row.schema_version, row.network, row.endpoint, json.loads(row.payload)
    )
    actor = Actor(user=row.actor_user, pid=row.actor_pid, command=row.actor_command)
    when = datetime.fromisoformat(row.recorded_at)
    return Recorded(seq=row.seq, recorded_at=when, event=event, actor=actor)


def last_seq(connection: Connection) -> int:
    """Return the seq of the newest event, or 0 for an empty log."""
    return scalar(_LAST_SEQ.run(connection, {})) or 0


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as err:
        original = getattr(err, "orig", None) or err
        raise StoreError(f"database {what} failed: {original}") from err
    except sqlite3.Error as err:
        # Raised by statements sent to the driver directly, such as BEGIN.
        raise StoreError(f"database {what} failed: {err}") from err
