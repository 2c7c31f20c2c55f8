"""What a service's shell commands share (``python -m peepers_<service> sync|backfill``).

A shell command logs plain WARNING lines (its progress bar is the output), runs one
coroutine, and turns a `PeepersError` into a one-line error and exit status 1;
`progress_bar` is the rich bar every long command shows, `counts_line` its summary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from peepers_common.errors import PeepersError
from peepers_common.logs import configure_logging

T = TypeVar("T")


def run_command(service: str, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` for a shell; a `PeepersError` ends the command with status 1."""
    configure_logging(service, "WARNING", json=False)
    try:
        return asyncio.run(work)
    except PeepersError as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def counts_line(counts: Mapping[str, int]) -> str:
    """``"created 3, unchanged 12"`` (by name), or ``"nothing"``."""
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "nothing"
