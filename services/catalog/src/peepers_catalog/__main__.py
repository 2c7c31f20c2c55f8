"""``python -m peepers_catalog``: the worker, and a full sync for one seller from a shell."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import faust
import typer
import uvloop
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from peepers_catalog.app import create_app, open_wiring, sync_options
from peepers_catalog.ports import SyncState
from peepers_catalog.settings import Settings
from peepers_catalog.sync import full_sync
from peepers_common.error_tracking import ErrorTrackingSettings, init_error_tracking
from peepers_common.errors import PeepersError
from peepers_common.logs import configure_logging
from peepers_common.process import tune_gc

cli = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


class _Worker(faust.Worker):
    """Faust's worker, logging JSON lines like every other Peepers service."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        configure_logging("catalog", logging.getLevelName(level))
        init_error_tracking("catalog", ErrorTrackingSettings())


@cli.command()
def worker() -> None:
    """Consume item notifications and seller events; serve the read API."""
    settings = Settings()
    # libuv's loop, as ingest's: mode makes its loops through the policy. Under
    # bench.catalog_latency it cut the worker's CPU per record (docs/benchmarks.md).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = create_app(settings)
    runner = _Worker(app, loglevel=settings.log_level, redirect_stdouts=False)
    tune_gc()
    runner.execute_from_commandline()


@cli.command()
def sync(
    seller_id: Annotated[int, typer.Argument(help="the ML user id of a connected seller")],
    restart: Annotated[
        bool, typer.Option(help="start over instead of resuming an unfinished sync")
    ] = False,
) -> None:
    """Run (or resume) the full catalog sync of one seller, with a progress bar."""
    settings = Settings()
    configure_logging("catalog", "WARNING", json=False)
    try:
        state = asyncio.run(_sync(settings, seller_id, restart=restart))
    except PeepersError as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    counts = ", ".join(f"{name} {n}" for name, n in sorted(state.counts.items())) or "nothing"
    typer.echo(f"seller {seller_id}: {state.total} items; {counts}")


async def _sync(settings: Settings, seller_id: int, *, restart: bool) -> SyncState:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        scan = progress.add_task("scanning item ids", total=None)
        apply = progress.add_task("syncing items", total=None, visible=False)

        def show(state: SyncState) -> None:
            if state.phase == "scanning":
                progress.update(scan, completed=state.total)
                return
            progress.update(scan, completed=state.total, total=state.total)
            progress.update(apply, visible=True, total=state.total, completed=state.next_index)

        async with open_wiring(settings, worker=False) as wiring:
            await wiring.roster.keep(seller_id)  # a rebuild after a loss syncs it again
            return await full_sync(
                seller_id,
                wiring.catalog,
                wiring.checkpoints,
                options=sync_options(settings, restart=restart),
                progress=show,
            )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
