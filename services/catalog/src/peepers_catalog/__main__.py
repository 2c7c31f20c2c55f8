"""``python -m peepers_catalog``: the worker, and a full sync for one seller from a shell."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvloop

from peepers_catalog.app import create_app, open_wiring, sync_options
from peepers_catalog.ports import SyncState
from peepers_catalog.settings import Settings
from peepers_catalog.sync import full_sync
from peepers_common.faust_worker import run_worker
from peepers_common.shell import counts_line, progress_bar, run_command

cli = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


@cli.command()
def worker() -> None:
    """Consume item notifications and seller events; serve the read API."""
    settings = Settings()
    # libuv's loop, as ingest's: mode makes its loops through the policy. Under
    # bench.catalog_latency it cut the worker's CPU per record (docs/benchmarks.md).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run_worker("catalog", create_app(settings), settings)


@cli.command()
def sync(
    seller_id: Annotated[int, typer.Argument(help="the ML user id of a connected seller")],
    restart: Annotated[
        bool, typer.Option(help="start over instead of resuming an unfinished sync")
    ] = False,
) -> None:
    """Run (or resume) the full catalog sync of one seller, with a progress bar."""
    state = run_command("catalog", _sync(Settings(), seller_id, restart=restart))
    typer.echo(f"seller {seller_id}: {state.total} items; {counts_line(state.counts)}")


async def _sync(settings: Settings, seller_id: int, *, restart: bool) -> SyncState:
    with progress_bar() as progress:
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
