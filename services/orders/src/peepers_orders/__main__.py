"""``python -m peepers_orders``: the worker, the mailer, a backfill, the analytics rebuild."""

from __future__ import annotations

import uuid
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from peepers_common.faust_worker import run_worker
from peepers_common.logs import configure_logging
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.process import run_until_signalled
from peepers_common.shell import counts_line, progress_bar, run_command
from peepers_common.topics import PEEPERS_ORDERS
from peepers_orders.adapters.redis_analytics import RedisAnalytics
from peepers_orders.app import backfill_options, create_app, open_wiring
from peepers_orders.backfill import backfill as run_backfill
from peepers_orders.mailer import run_mailer
from peepers_orders.ports import BackfillState
from peepers_orders.rebuild import replay_analytics
from peepers_orders.settings import Settings

cli = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)
analytics_cli = typer.Typer(help="Sales analytics.")
cli.add_typer(analytics_cli, name="analytics")


@cli.command()
def worker() -> None:
    """Consume order notifications and seller events; serve the read API."""
    settings = Settings()
    run_worker("orders", create_app(settings), settings)


@cli.command()
def mailer() -> None:
    """Mail sellers on each order transition (its own consumer group); stop on SIGTERM."""
    settings = Settings()
    configure_logging("orders", settings.log_level)
    run_until_signalled(
        lambda stop: run_mailer(settings, stop), stop_within_s=settings.stop_within_s
    )


@cli.command()
def backfill(
    seller_id: Annotated[int, typer.Argument(help="the ML user id of a connected seller")],
    restart: Annotated[
        bool, typer.Option(help="start over instead of resuming an unfinished backfill")
    ] = False,
) -> None:
    """Run (or resume) the backfill of one seller's recent orders, with a progress bar."""
    state = run_command("orders", _backfill(Settings(), seller_id, restart=restart))
    typer.echo(f"seller {seller_id}: {state.total} orders; {counts_line(state.counts)}")


async def _backfill(settings: Settings, seller_id: int, *, restart: bool) -> BackfillState:
    with progress_bar() as progress:
        task = progress.add_task("backfilling orders", total=None)

        def show(state: BackfillState) -> None:
            progress.update(task, completed=state.offset, total=state.total)

        async with open_wiring(settings) as wiring:
            return await run_backfill(
                seller_id,
                wiring.backfill_orders,
                wiring.sellers,
                options=backfill_options(settings, restart=restart),
                progress=show,
            )


@analytics_cli.command("rebuild")
def rebuild() -> None:
    """Replay peepers.orders.v1 from its start into new analytics, then switch to them."""
    generation, events = run_command("orders", _rebuild(Settings()))
    typer.echo(f"analytics generation {generation}: {events} events replayed")


async def _rebuild(settings: Settings) -> tuple[str, int]:
    generation = uuid.uuid4().hex[:12]
    redis = connect_redis(settings.redis)
    try:
        live = RedisAnalytics(redis, Namespace("orders", scope=settings.redis_scope))
        with progress_bar() as progress:
            task = progress.add_task("replaying order events", total=None)

            def show(replayed: int, total: int) -> None:
                progress.update(task, completed=replayed, total=total)

            replayed = await replay_analytics(
                settings.kafka,
                settings.topic_prefix + PEEPERS_ORDERS,
                live,
                live.pinned(generation),
                generation,
                ZoneInfo(settings.analytics_timezone),
                progress=show,
            )
        return generation, replayed
    finally:
        await redis.aclose()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
