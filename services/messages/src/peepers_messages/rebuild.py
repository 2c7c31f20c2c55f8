"""The messages service's rebuild after its mirror was lost (`peepers_common.rebuild`).

`CacheGuard` notices the loss (the epoch marker is gone) and calls `rebuild_messages`:

1. **Restore what Peepers owns**: the tickets and submissions views, from their
   changelogs (`Changelog.verify` restores a view whose marker is gone).
2. **Resync the mirror from ML**: the backfill of every connected seller, the same as on
   ``seller.connected``, with the run id ``rebuild-<epoch>`` (a retried or taken-over
   rebuild resumes each seller from its checkpoint), searching claims of every status
   (the mirror held the closed ones too). Questions and claims it meets are
   announced as ``question.snapshot`` / ``claim.snapshot``: whether they were announced
   before cannot be proven. The limiter's budget was lost with Redis while ML's count
   was not: the limiter itself holds every request back for that window
   (docs/ml-client.md, "A budget lost with Redis"), the rebuild's as any other's.

Which sellers: those connected per ``peepers.sellers.v1``, read from its start (a seller's
last connection event wins; disconnected sellers are left out), as any team would read it.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from dataclasses import replace
from typing import Final

from peepers_common.events import event_type_of
from peepers_common.kafka import batches_to, end_offsets
from peepers_common.rebuild import SELLER_GONE, Resync
from peepers_common.settings import KafkaSettings
from peepers_messages.backfill import BackfillOptions, RedisBackfillCheckpoints, backfill
from peepers_messages.handlers import Changelog, Messages

log = logging.getLogger(__name__)

_CONNECTED: Final = frozenset({"seller.connected", "seller.reconnected"})
_GONE: Final = frozenset({"seller.disconnected"})
# The seller can no longer be read: a retry would fail the same way.


async def connected_sellers(kafka: KafkaSettings, topic: str) -> list[int]:
    """Sellers whose last connection event on ``topic`` connected them."""
    state: dict[int, bool] = {}
    async with aclosing(batches_to(kafka, await end_offsets(kafka, [topic]))) as batches:
        async for batch in batches:
            for record in batch:
                kind = event_type_of(record.value or b"{}")
                if kind in _CONNECTED | _GONE and record.key and record.key.isdigit():
                    state[int(record.key)] = kind in _CONNECTED
    return sorted(seller for seller, connected in state.items() if connected)


async def rebuild_messages(
    epoch: str,
    deps: Messages,
    changelogs: tuple[Changelog, ...],
    sellers: list[int],
    checkpoints: RedisBackfillCheckpoints,
    options: BackfillOptions,
) -> Resync | None:
    """Phase one (owned state back); returns phase two (the sellers' backfills)."""
    for changelog in changelogs:
        await changelog.verify()
    if not sellers:
        return None
    log.warning("rebuilding the messages mirror (epoch %s): %d sellers", epoch, len(sellers))

    async def resync() -> None:
        # Every claim: the lost mirror held the closed ones too. Conversations: the packs
        # the index holds (restored above), not every order's.
        run = replace(options, run_id=f"rebuild-{epoch}", claims="every", from_index=True)
        for seller_id in sellers:
            try:
                state = await backfill(seller_id, deps, checkpoints, run)
            except SELLER_GONE as exc:
                log.error("rebuild: seller %d cannot be read, skipped: %r", seller_id, exc)
                continue
            log.info("rebuild: seller %d backfilled: %s", seller_id, state.counts)

    return resync
