"""The background task that empties the spool into Kafka, at startup and whenever it fills."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from peepers_common.errors import PublishError
from peepers_ingest.handlers import Intake

__all__ = ["drain_forever"]

log = logging.getLogger(__name__)


async def drain_forever(
    intake: Intake, *, retry_initial_s: float = 0.1, retry_max_s: float = 5.0
) -> None:
    """Drain whenever woken; on failure retry with capped exponential backoff.

    The wakeup is cleared *before* a round, so a record spooled during the round wakes
    the next one and is never left behind.
    """
    delay = retry_initial_s
    while True:
        await intake.spool_wakeup.wait()
        intake.spool_wakeup.clear()
        try:
            drained = await intake.drain_once()
        except PublishError as exc:
            log.warning("spool drain failed, retrying in %.1f s: %s", delay, exc)
            intake.spool_wakeup.set()
            # Sleep, but wake early on shutdown only (cancellation), not on new records:
            # a down Kafka must not be hammered once per incoming notification.
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_s)
            continue
        delay = retry_initial_s
        if drained:
            log.info("drained %d spooled notifications into Kafka", drained)


async def stop_draining(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
