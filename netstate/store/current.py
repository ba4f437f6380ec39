"""The current state, kept in memory between the commands of one process.

Reading every projection row for each command makes a command cost grow with the number of
leases. A long-lived caller of the Python API instead keeps the State it folded last and, inside
each new transaction, folds only the events appended since, by this or any other process. The
result is the same State that `projections.read_state` returns, because a fold of the log equals
the projections (a property test checks this).
"""

from __future__ import annotations

from sqlalchemy import Connection

from netstate.domain.state import State
from netstate.store import projections
from netstate.store.eventlog import last_seq, read_events

# Beyond this many new events, reading the projection tables is cheaper than decoding events.
CATCH_UP_LIMIT = 500


class CurrentState:
    """The State at the newest event, folded forward from the last one this process saw.

    NOTE: not thread-safe; one Netstate serves one thread.
    """

    def __init__(self) -> None:
        self._state: State | None = None
        self._seq = 0

    def read(self, connection: Connection) -> State:
        """Return the state as of `connection`'s snapshot.

        The returned State is the cached one: callers may fold events into it only through
        `advance`, and must not change it otherwise.
        """
        newest = last_seq(connection)
        if self._state is None or not 0 <= newest - self._seq <= CATCH_UP_LIMIT:
            self._state = projections.read_state(connection)
        elif newest != self._seq:
            for recorded in read_events(connection, after=self._seq):
                self._state.apply(recorded.event)
        self._seq = newest
        return self._state

    def latest(self) -> State:
        """Return the cached State as of the last read or advance, without reading."""
        if self._state is None:
            raise RuntimeError("no state read yet")
        return self._state

    def advance(self, seq: int) -> None:
        """Record that the cached State now reflects the log up to `seq`."""
        self._seq = seq

    def forget(self) -> None:
        """Drop the cached State, so that the next read loads the projections."""
        self._state = None
        self._seq = 0


def copy_of(state: State) -> State:
    """Return a State whose maps can be changed without touching `state`."""
    return State(
        networks=dict(state.networks),
        leases=state.leases.copy(),
        bindings=dict(state.bindings),
        port_cursors=dict(state.port_cursors),
        settings=dict(state.settings),
    )
