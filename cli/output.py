"""Rendering of command results: aligned text tables or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

import typer


def emit_json(value) -> None:
    """Print `value` as JSON on one line."""
    typer.echo(json.dumps(value, sort_keys=False))


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows under headers with columns padded to their widest cell."""
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    for row in [list(headers), *text_rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
