"""Checking the projections against the log, and rebuilding them from it.

The projections are updated in the transaction that appends each event, so a crash cannot
leave them behind the log. They can still fall behind or go wrong when a database is copied
while written, edited by hand, or written by a netstate that had a bug. These checks find that:

- always: the checkpoint equals the newest seq, every projection table can be read, and each
  table holds as many rows as the log implies (created minus removed networks, allocated minus
  released addresses, mapped minus unmapped ports);
- with `deep`: the projections equal a fold of the whole log, which reads every event.

Only the deep check detects a row whose values were changed in place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from netstate.domain.events import from_record
from netstate.domain.state import State
from netstate.store import projections
from netstate.store.eventlog import last_seq
from netstate.store.schema import bindings, events, leases, metadata, networks

log = logging.getLogger(__name__)

# Called as progress(done, total) while events are folded.
Progress = Callable[[int, int], None]

# Each counted projection table, with the event types that add and remove one of its rows.
_COUNTED = (
    (networks, "NetworkCreated", "NetworkRemoved"),
    (leases, "AddressAllocated", "AddressReleased"),
    (bindings, "PortMapped", "PortUnmapped"),
)
_PROGRESS_EVERY = 20_000


@dataclass(frozen=True, slots=True)
class ProjectionProblem:
    """One way in which the projections disagree with the log."""

    # "behind", "ahead", "unreadable", "count" or "differs".
    problem: str
    table: str
    expected: str
    found: str
    message: str


def check_projections(connection: Connection, *, deep: bool = False) -> list[ProjectionProblem]:
    """Return how the projections disagree with the log; empty when they agree."""
    last = last_seq(connection)
    try:
        checkpoint = projections.checkpoint(connection)
        current = projections.read_state(connection)
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err)
        msg = f"the projection tables cannot be read ({reason}); `netstate restore` rebuilds them"
        return [ProjectionProblem("unreadable", "projections", "readable tables", reason, msg)]

    if checkpoint != last:
        problem = "behind" if checkpoint < last else "ahead"
        msg = f"the projections reflect the log up to seq {checkpoint}, but the log ends at seq {last}"
        return [ProjectionProblem(problem, "checkpoints", str(last), str(checkpoint), msg)]

    found = []
    counts = _event_counts(connection)
    for table, added, removed in _COUNTED:
        expected = counts.get(added, 0) - counts.get(removed, 0)
        rows = connection.execute(select(func.count()).select_from(table)).scalar_one()
        if rows != expected:
            msg = f"table {table.name} holds {rows} rows, but the log implies {expected}"
            found.append(ProjectionProblem("count", table.name, str(expected), str(rows), msg))
    if deep and not found:
        folded, _count, _last = fold_log(connection)
        if folded != current:
            msg = "the projections differ from a fold of the whole log"
            found.append(ProjectionProblem("differs", "projections", "fold of the log", "other rows", msg))
    return found


def fold_log(connection: Connection, progress: Progress | None = None) -> tuple[State, int, int]:
    """Fold every event of the log; return the state, the number of events and the last seq."""
    total = last_seq(connection)
    query = select(
        events.c.seq, events.c.type, events.c.schema_version, events.c.network,
        events.c.endpoint, events.c.payload,
    ).order_by(events.c.seq)
    state = State()
    # Binding `apply` once matters: each attribute lookup of a singledispatchmethod builds a
    # new wrapper, a third of the fold's time on Python 3.11.
    apply = state.apply
    count = 0
    last = 0
    for seq, type_name, version, network, endpoint, payload in connection.execution_options(yield_per=5000).execute(query):
        apply(from_record(type_name, version, network, endpoint, json.loads(payload)))
        count += 1
        last = seq
        if progress is not None and count % _PROGRESS_EVERY == 0:
            progress(last, total)
    if progress is not None:
        progress(total, total)
    return state, count, last


def rebuild(connection: Connection, progress: Progress | None = None) -> int:
    """Replace the projections with a fold of the whole log; return the number of events."""
    # NOTE: a projection table dropped by hand is recreated from the table definitions in
    # schema.py, which lack the migration's secondary indexes and its one-holder constraint.
    metadata.create_all(connection, tables=[t for t in metadata.sorted_tables if t is not events], checkfirst=True)
    state, count, last = fold_log(connection, progress)
    projections.write_state(connection, state, last)
    log.info("projections rebuilt from %d events", count)
    return count


def _event_counts(connection: Connection) -> dict[str, int]:
    query = select(events.c.type, func.count()).group_by(events.c.type)
    return {type_name: count for type_name, count in connection.execute(query)}
