"""``python -m peepers_devstack``: what ``make run`` starts once Kafka and Redis are up.

SIGINT (Ctrl-C) or SIGTERM stops every child, newest first, and waits for each; a second
one kills what is left at once. Exit status: 0 after a clean stop, 1 when a step failed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from peepers_devstack.display import RunConsole
from peepers_devstack.errors import ChildFailed, DevstackError
from peepers_devstack.orchestrator import Options, Orchestrator
from peepers_devstack.settings import Settings

REPEAT_WINDOW_S = 1.0


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="peepers-devstack", description=__doc__)
    add = parser.add_argument
    add(
        "--port-base",
        type=int,
        default=18080,
        help="ingest on it, auth +1, catalog +3, sandbox +10; 0 picks free ports (18080)",
    )
    add("--items", type=int, default=2000, help="items of the sandbox's demo seller (2000)")
    add(
        "--activity-rate",
        type=float,
        default=20.0,
        help="sandbox changes per second once synced (20)",
    )
    add("--refresh", type=float, default=1.0, help="seconds between summary frames (1)")
    add("--ready-timeout", type=float, default=90.0, help="seconds a child may take to be ready")
    add("--sync-timeout", type=float, default=600.0, help="seconds the full sync may take")
    add(
        "--exit-after",
        type=float,
        default=None,
        help="stop this many seconds after the summary starts (tests, demos)",
    )
    add(
        "--isolate",
        action="store_true",
        help="accepted for older scripts: every run now has its own catalog state",
    )
    add(
        "--ml-requests-per-minute",
        type=int,
        default=6000,
        help="the catalog's outbound limit towards the sandbox (6000)",
    )
    add("--log-dir", type=Path, default=None, help="children's logs (<stack dir>/logs)")
    add("--work-dir", type=Path, default=None,
        help="children's working directory, spool and pid file (<stack dir>/run)")  # fmt: skip
    args = parser.parse_args(argv)
    return Options(
        port_base=args.port_base,
        items=args.items,
        activity_rate=args.activity_rate,
        refresh_s=args.refresh,
        ready_timeout_s=args.ready_timeout,
        sync_timeout_s=args.sync_timeout,
        exit_after_s=args.exit_after,
        ml_requests_per_minute=args.ml_requests_per_minute,
        log_dir=args.log_dir,
        work_dir=args.work_dir,
    )


async def run(options: Options, console: Console) -> int:
    orchestrator = Orchestrator(options, Settings(), console)
    task = asyncio.create_task(orchestrator.run())
    received: list[signal.Signals] = []
    first_at = [0.0]

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        if len(received) == 1:
            first_at[0] = time.monotonic()
            task.cancel()
        elif time.monotonic() - first_at[0] < REPEAT_WINDOW_S:
            # One Ctrl-C can arrive twice: from the terminal and forwarded by a wrapper
            # such as `uv run`, which shares the foreground process group.
            return
        else:
            orchestrator.say(f"{sig.name} again: killing what is left")
            # Keep a reference until it ran (the loop holds tasks only weakly).
            killer = asyncio.ensure_future(orchestrator.supervisor.kill_all())
            killers.add(killer)
            killer.add_done_callback(killers.discard)

    killers: set[asyncio.Future[None]] = set()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    status = 0
    try:
        await task
    except asyncio.CancelledError:
        if not received:
            raise
        orchestrator.say(f"{received[0].name} received")
    except ChildFailed as exc:
        console.print(f"[bold red]error:[/] {exc} (log {exc.log}); its last lines:")
        console.print(exc.tail, markup=False, highlight=False)
        status = 1
    except DevstackError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        status = 1
    finally:
        await orchestrator.shutdown()
    orchestrator.say(
        "everything this run started has stopped; Kafka and Redis stay up "
        "(scripts/stack down stops them)"
    )
    return status


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv)
    console = RunConsole()
    # Piped output (logs, tests) keeps each line whole; a terminal wraps inside the panel.
    console.soft_wrap = not console.is_terminal
    sys.exit(asyncio.run(run(options, console)))


if __name__ == "__main__":
    main()
