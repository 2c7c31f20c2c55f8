"""The catalog's rebuild after its cache was lost: every kept seller's full sync, again.

`peepers_common.rebuild.CacheGuard` notices the loss and calls `rebuild_catalog` with
the new epoch. The catalog owns no state of its own (everything in ``catalog:*`` mirrors
ML), so there is nothing to restore first: it resyncs each seller of the `SellerRoster`,
one after the other, through the same `full_sync` as on ``seller.connected``. (The
roster itself is the one thing the catalog owns; it lives in Kafka, and reading it is
the rebuild's restore phase.) Items it
meets are announced as ``item.snapshot`` (the guard says ``rebuilding``), never again as
``item.created``.

Every sync of one rebuild has the run id ``rebuild-<epoch>``, so a rebuild retried after a
failure, or taken over by another replica, resumes each seller from its checkpoint and
skips the sellers already done. A seller whose sync another worker holds (its
``seller.connected`` being handled) is tried again after the others; a seller that can
no longer be synced (`peepers_common.rebuild.SELLER_GONE`: its authorization revoked or
refused) is logged and skipped: its next login syncs it. Any other error fails the
attempt, and the guard retries it.
"""

from __future__ import annotations

import logging
from typing import Final

from prometheus_client import Counter, Gauge

from peepers_catalog.handlers import Catalog
from peepers_catalog.ports import SellerRoster, SyncCheckpoints
from peepers_catalog.sync import SyncOptions, full_sync
from peepers_common.errors import ResourceBusy
from peepers_common.rebuild import SELLER_GONE, Resync

log = logging.getLogger(__name__)

SELLERS: Final = Counter(
    "peepers_catalog_rebuild_sellers_total",
    "Sellers a rebuild has resynced, by outcome (synced, skipped, busy)",
    ["outcome"],
)
EXPECTED: Final = Gauge(
    "peepers_catalog_rebuild_sellers_expected", "Sellers the running rebuild resyncs"
)
# The seller can no longer be read: a retry would fail the same way.


async def rebuild_catalog(
    epoch: str,
    roster: SellerRoster,
    catalog: Catalog,
    checkpoints: SyncCheckpoints,
    options: SyncOptions,
) -> Resync | None:
    """The rebuild's first phase: the roster; returns the resync of its sellers, if any.

    A new namespace (a fresh deployment, a fresh ``make run``) has no kept sellers: it
    was never lost, and its first syncs come from ``seller.connected`` as ``created``.
    """
    sellers = await roster.sellers()
    EXPECTED.set(len(sellers))
    if not sellers:
        return None
    log.warning("rebuilding the catalog (epoch %s): %d sellers to resync", epoch, len(sellers))

    async def resync() -> None:
        await _resync(epoch, sellers, catalog, checkpoints, options)

    return resync


async def _resync(
    epoch: str,
    sellers: list[int],
    catalog: Catalog,
    checkpoints: SyncCheckpoints,
    options: SyncOptions,
) -> None:
    """Every kept seller's full sync; raises `ResourceBusy` if one stayed busy (retried)."""
    opts = SyncOptions(
        chunk=options.chunk,
        apply_concurrency=options.apply_concurrency,
        run_id=f"rebuild-{epoch}",
    )
    busy: list[int] = []
    for done, seller_id in enumerate(sellers, start=1):
        try:
            state = await full_sync(seller_id, catalog, checkpoints, options=opts)
        except ResourceBusy as exc:
            SELLERS.labels("busy").inc()
            log.warning("rebuild: seller %d is being synced elsewhere (%s)", seller_id, exc)
            busy.append(seller_id)
            continue
        except SELLER_GONE as exc:
            SELLERS.labels("skipped").inc()
            log.error("rebuild: seller %d cannot be synced, skipped: %r", seller_id, exc)
            continue
        SELLERS.labels("synced").inc()
        log.info(
            "rebuild: seller %d resynced (%d of %d): %s",
            seller_id,
            done,
            len(sellers),
            state.counts,
        )
    if busy:
        msg = f"sellers {busy} were being synced elsewhere during the rebuild"
        raise ResourceBusy(msg)
