"""What the long-running services share as processes: GC tuning, a bounded stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from types import CoroutineType, GeneratorType
from typing import Any

__all__ = ["OVERSTAYED_EXIT_CODE", "StopDeadline", "run_until_signalled", "tune_gc"]

log = logging.getLogger(__name__)

# What a process that overstays its stop exits with (sysexits' EX_SOFTWARE): not 0, so a
# supervisor sees that the stop was not clean.
OVERSTAYED_EXIT_CODE = 70


def tune_gc() -> None:
    """Freeze what exists now out of the cyclic GC's scans; collect young objects rarely.

    Call it once the app is built. Every webhook or record allocates futures, tasks and
    dicts; with CPython's default threshold (700) the cyclic collector ran hundreds of
    times a second and took 10-20% of ingest's CPU at saturation (bench/ingest.py), and
    its full collections paused the catalog worker. Objects that live as long as the
    process (modules, the app) are frozen out of its scans, and collections of the young
    generation wait for 50,000 allocations: the garbage a service makes is almost all
    freed by reference counting, so this delays little memory.
    """
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


class StopDeadline:
    """Ends the process ``within_s`` after a stop was asked, whether the stop finished or not.

    A graceful stop can hang: Faust's, when it lands mid-rebalance or on a stuck agent;
    an aiokafka consumer's, whose ``stop()`` awaits its group coordination without a
    bound (the orders mailer outlived a ``make run``'s stop in CI, session 9).
    Kubernetes ends such a pod with SIGKILL after its grace period, but ``make run``
    relies on its children stopping on the SIGTERM the kernel sends them when the
    orchestrator dies (PR_SET_PDEATHSIG), and nothing follows that SIGTERM up.

    The deadline runs on a daemon thread, so a blocked event loop cannot hold it back.
    When it expires it logs, at ERROR, where each unfinished asyncio task of the loop
    that asked for the stop is suspended: the next hung stop names its cause. Records
    whose offsets were not committed are read again by the next consumer: at-least-once,
    as after any crash.
    """

    def __init__(self, within_s: float) -> None:
        self.within_s = within_s
        self._timer: threading.Timer | None = None

    def arm(self, reason: str) -> None:
        """Start the clock (once: a second signal does not extend it)."""
        if self._timer is not None:
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._timer = threading.Timer(self.within_s, self._expire, args=(reason, loop))
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        """The stop finished: the interpreter's own exit must not be cut short."""
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self, reason: str, loop: asyncio.AbstractEventLoop | None) -> None:
        log.error(
            "still stopping %.0f s after %s: exiting without finishing the stop "
            "(uncommitted records will be read again); waiting on: %s",
            self.within_s,
            reason,
            "; ".join(pending_tasks(loop)) if loop is not None else "(no event loop)",
        )
        logging.shutdown()
        os._exit(OVERSTAYED_EXIT_CODE)


def pending_tasks(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Each unfinished task of ``loop``: its name and the chain of awaits it is suspended in.

    Read from another thread while the loop is stuck: a best effort for a log line, so
    a task set that changes meanwhile gives what could be read.
    """
    try:
        tasks = asyncio.all_tasks(loop)
    except RuntimeError:  # the set kept changing under the read
        return ["(tasks changing)"]
    return sorted(f"{task.get_name()} at {awaits(task.get_coro())}" for task in tasks)


def awaits(coro: Any) -> str:
    """``file:line function`` of each coroutine in ``coro``'s await chain, outermost first."""
    steps: list[str] = []
    while isinstance(coro, CoroutineType | GeneratorType):
        frame = coro.cr_frame if isinstance(coro, CoroutineType) else coro.gi_frame
        if frame is None:  # finished
            coro = None
            break
        code = frame.f_code
        steps.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}")
        coro = coro.cr_await if isinstance(coro, CoroutineType) else coro.gi_yieldfrom
    if coro is not None:
        steps.append("(a future)")  # a Future's or a Task's iterator: where the chain ends
    return " > ".join(steps) or "(no frame)"


def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[None]], *, stop_within_s: float
) -> None:
    """``asyncio.run(main(stop))``; SIGTERM or SIGINT sets ``stop`` and arms a `StopDeadline`.

    For the services that run their own asyncio loop (not Faust's worker, not aiohttp's
    ``run_app``): ``main`` returns once it has stopped. If that, or asyncio's cancelling
    of what is left, takes longer than ``stop_within_s``, the process ends anyway.
    """
    deadline = StopDeadline(stop_within_s)

    async def signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: signal.Signals) -> None:
            deadline.arm(signum.name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await main(stop)

    try:
        asyncio.run(signalled())
    finally:
        deadline.cancel()
