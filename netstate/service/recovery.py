"""Restore, check and repair: converging the kernel on the record.

`restore` and `check(repair=True)` run the same sequence:

1. Check the projections against the log (`netstate.store.rebuild`) and rebuild them from the
   log when they disagree: behind or ahead of it, unreadable, or holding the wrong number of
   rows (with `deep`, any difference from a fold of the log).
2. Holding the write lock, read the state from the projections, compare it with the kernel for
   every resource kind of `netstate.reconcile`, and apply the repair of every drift. Holding
   the lock keeps other commands from committing meanwhile, so a link they are about to create
   is never taken for stale.

`check(repair=True)` then compares again and reports the drift left. `restore` does not
compare again, so a restore onto an empty namespace makes one pass, and reports the changes
and the errors.

`check()` alone takes no lock and changes nothing. When the projections disagree with the log
it compares the kernel with a fold of the log instead. A command running meanwhile can show as
drift that is gone a moment later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from netstate.actions import Action
from netstate.reconcile import Drift, Notice, describe, plan_repair, scan
from netstate.store import projections

# Called as progress(phase, done, total), as in progress("repairing", 3, 10).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class RebuildProjections:
    """The repair of a projection drift. The service runs it itself, before any kernel work."""


@dataclass(slots=True)
class RecoveryReport:
    """The outcome of a check or a restore: the drift found, the repairs made, the errors."""

    drifts: list[Drift]
    notices: list[Notice]
    # True when the kernel and the projections match the record at the end.
    in_sync: bool
    # How many objects of each kind were compared, as {"bridge": 2, "veth": 5}.
    checked: dict[str, int] = field(default_factory=dict)
    # Repair actions that changed the kernel.
    changes: list[Action] = field(default_factory=list)
    # Repair actions that failed, as messages.
    errors: list[str] = field(default_factory=list)
    # Drift found again after a repair; None when the repair was not checked again.
    remaining: list[Drift] | None = None
    # Events folded when the projections were rebuilt; None when they were not.
    rebuilt: int | None = None

    def to_dict(self) -> dict:
        """Return the JSON form that `netstate check --json` and `restore --json` print."""
        return {
            "in_sync": self.in_sync,
            "checked": self.checked,
            "drift": [d.to_dict() for d in self.drifts],
            "notices": [n.to_dict() for n in self.notices],
            "rebuilt_from_events": self.rebuilt,
            "changes": [{"action": type(a).__name__, "description": describe(a)} for a in self.changes],
            "errors": self.errors,
            "remaining": None if self.remaining is None else [d.to_dict() for d in self.remaining],
        }


class Recovery:
    """Restore and drift checks, mixed into Netstate."""

    def check(self, *, repair: bool = False, deep: bool = False, progress: Progress | None = None) -> RecoveryReport:
        """Compare the kernel and the projections with the record; repair them on request.

        Args:
            repair: apply the repair of every drift, then compare again.
            deep: compare the projections with a fold of the whole log, which reads every event.
            progress: called as progress(phase, done, total) during long work.
        """
        from netstate.store.rebuild import check_projections, fold_log

        if repair:
            return self._converge(deep=deep, verify=True, progress=progress)
        with self.store.read() as connection:
            problems = check_projections(connection, deep=deep)
            if problems:
                state = fold_log(connection, _phase(progress, "folding the log"))[0]
            else:
                state = projections.read_state(connection)
        findings = scan(state, self.kernel)
        drifts = [*(_projection_drift(p) for p in problems), *findings.drifts]
        return RecoveryReport(drifts=drifts, notices=findings.notices, in_sync=not drifts, checked=findings.checked)

    def restore(self, *, deep: bool = False, progress: Progress | None = None) -> RecoveryReport:
        """Bring the projections and the kernel to the recorded state; safe to run again.

        Rebuilds the projections when they disagree with the log, then creates what is missing
        (bridges, their addresses, the veths of endpoints whose namespace still exists) and
        removes stale links netstate created. Links netstate did not create are left alone.
        """
        return self._converge(deep=deep, verify=False, progress=progress)

    def _converge(self, *, deep: bool, verify: bool, progress: Progress | None) -> RecoveryReport:
        from netstate.store.rebuild import check_projections, rebuild

        rebuilt = None
        with self.store.write() as connection:
            problems = check_projections(connection, deep=deep)
            if problems:
                rebuilt = rebuild(connection, _phase(progress, "rebuilding projections"))

        # The sync lock too, as in `Core._sync_forwarding`: a command that committed before
        # this write lock was taken may still be syncing its rules and proxy.
        with self.store.write() as connection, self.kernel.forwarding.locked():
            state = projections.read_state(connection)
            findings = scan(state, self.kernel)
            actions = plan_repair(findings.drifts)
            step = _phase(progress, "repairing")
            changed, errors = self.executor.apply_all(
                actions, None if step is None else lambda done: step(done, len(actions))
            )
            remaining = None
            if verify:
                remaining = scan(state, self.kernel).drifts if actions else [d for d in findings.drifts if not d.repair]

        if remaining is not None:
            in_sync = not errors and not remaining
        else:
            in_sync = not errors and all(d.repair for d in findings.drifts)
        return RecoveryReport(
            drifts=[*(_projection_drift(p) for p in problems), *findings.drifts],
            notices=findings.notices,
            in_sync=in_sync,
            checked=findings.checked,
            changes=changed,
            errors=[str(error) for error in errors],
            remaining=remaining,
            rebuilt=rebuilt,
        )


def _projection_drift(problem) -> Drift:
    return Drift(
        kind="projections",
        object=problem.table,
        problem=problem.problem,
        expected=problem.expected,
        found=problem.found,
        message=problem.message,
        repair=(RebuildProjections(),),
    )


def _phase(progress: Progress | None, phase: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(phase, done, total)
