"""`netstate restore` and `netstate check`: converging the kernel on the record."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from cli.context import service
from cli.output import emit_json, emit_table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DeepFlag = Annotated[
    bool,
    typer.Option("--deep", help="Also compare the projections with a fold of the whole log (reads every event)."),
]


class StderrProgress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.drawn = False
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < total and now - self._last < 0.1):
            return
        self._last = now
        width = 30
        filled = width * done // total if total else width
        sys.stderr.write(f"\r{phase} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def check(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Repair the drift found, then check again.")] = False,
    deep: DeepFlag = False,
    json: JsonFlag = False,
) -> None:
    """List drift between the record and the kernel; exit status 1 when there is any.

    Links and rules that netstate did not create are never reported or touched.

    Example: netstate check --repair
    """
    progress = StderrProgress()
    try:
        report = service(ctx).check(repair=repair, deep=deep, progress=progress)
    finally:
        progress.close()
    if json:
        emit_json(report.to_dict())
    else:
        _print_drift(report.drifts)
        _print_notices(report.notices)
        if repair:
            _print_changes(report)
            if report.remaining:
                typer.echo("drift left after the repair:")
                _print_drift(report.remaining)
        if not repair:
            bad = f"{len(report.drifts)} drift(s) found; `netstate check --repair` repairs them"
            typer.echo(_summary(report, "in sync", bad))
        else:
            bad = f"{len(report.remaining or [])} drift(s) left, {len(report.errors)} repair(s) failed"
            typer.echo(_summary(report, "in sync after the repair", bad))
    if not report.in_sync:
        raise typer.Exit(1)


def restore(ctx: typer.Context, deep: DeepFlag = False, json: JsonFlag = False) -> None:
    """Bring the kernel to the recorded state, rebuilding the projections first if needed.

    Creates missing bridges, addresses and the veths of endpoints whose namespace still exists,
    and removes stale links netstate created. A second run changes nothing. Run at boot by
    contrib/netstate-restore.service.

    Example: netstate restore
    """
    progress = StderrProgress()
    try:
        report = service(ctx).restore(deep=deep, progress=progress)
    finally:
        progress.close()
    if json:
        emit_json(report.to_dict())
    else:
        _print_notices(report.notices)
        _print_changes(report)
        for drift in report.drifts:
            if not drift.repair:
                typer.echo(f"cannot repair: {drift.message}", err=True)
        unrepairable = sum(1 for drift in report.drifts if not drift.repair)
        bad = f"{len(report.errors)} repair(s) failed, {unrepairable} drift(s) cannot be repaired automatically"
        if report.changes or report.rebuilt is not None:
            typer.echo(_summary(report, f"{len(report.changes)} change(s), kernel matches the record", bad))
        else:
            typer.echo(_summary(report, "nothing to change, kernel matches the record", bad))
    if not report.in_sync:
        raise typer.Exit(1)


def _print_drift(drifts) -> None:
    if drifts:
        emit_table(
            ["KIND", "OBJECT", "PROBLEM", "EXPECTED", "FOUND"],
            [[d.kind, d.object, d.problem, d.expected, d.found] for d in drifts],
        )


def _print_notices(notices) -> None:
    for notice in notices:
        typer.echo(f"notice: {notice.message}")


def _print_changes(report) -> None:
    from netstate.reconcile import describe

    if report.rebuilt is not None:
        typer.echo(f"projections rebuilt from {report.rebuilt} events")
    for action in report.changes:
        typer.echo(describe(action))
    for error in report.errors:
        typer.echo(f"failed: {error}", err=True)


def _summary(report, good: str, bad: str) -> str:
    counted = ", ".join(f"{count} {kind}(s)" for kind, count in report.checked.items())
    if report.in_sync:
        return f"{good} ({counted})" if counted else good
    return bad


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("check")(check)
    app.command("restore")(restore)
