"""``python -m peepers_messages``: the worker, and a backfill for one seller from a shell."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from peepers_common.errors import PeepersError
from peepers_common.faust_worker import run_worker
from peepers_common.logs import configure_logging
from peepers_messages.app import backfill_options, create_app, open_wiring
from peepers_messages.backfill import BackfillState, backfill
from peepers_messages.settings import Settings

cli = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


@cli.command()
def worker() -> None:
    """Consume questions, messages, claims, order and seller events; serve the API."""
    settings = Settings()
    run_worker("messages", create_app(settings), settings)


@cli.command(name="backfill")
def backfill_command(
    seller_id: Annotated[int, typer.Argument(help="the ML user id of a connected seller")],
    run_id: Annotated[
        str | None, typer.Option(help="resume the run with this id (default: a new run)")
    ] = None,
) -> None:
    """Mirror a seller's unanswered questions, open claims and conversations (progress bar)."""
    settings = Settings()
    configure_logging("messages", "WARNING", json=False)
    try:
        state = asyncio.run(_backfill(settings, seller_id, run_id or uuid.uuid4().hex))
    except PeepersError as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    counts = ", ".join(f"{name} {n}" for name, n in sorted(state.counts.items())) or "nothing"
    typer.echo(f"seller {seller_id} (run {state.run_id}): {counts}")


async def _backfill(settings: Settings, seller_id: int, run_id: str) -> BackfillState:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        questions = progress.add_task("unanswered questions", total=None)
        claims = progress.add_task("open claims", total=None, visible=False)
        conversations = progress.add_task("conversations", total=None, visible=False)

        def show(state: BackfillState) -> None:
            applied = sum(n for k, n in state.counts.items() if k.startswith("questions_"))
            progress.update(questions, completed=applied, total=state.total_questions or None)
            if state.phase not in ("questions", "item_questions"):
                done = sum(n for k, n in state.counts.items() if k.startswith("claims_"))
                progress.update(claims, visible=True, completed=done, total=state.total_claims)
            if state.phase in ("conversations", "done"):
                progress.update(
                    conversations,
                    visible=True,
                    completed=state.offset,
                    total=state.conversations_total,
                )

        async with open_wiring(settings) as wiring:
            return await backfill(
                seller_id,
                wiring.deps,
                wiring.checkpoints,
                backfill_options(settings, run_id=run_id),
                progress=show,
            )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
