"""The catalog's drift audit: random cached items compared with ML, drift repaired.

One step (`CatalogAudit.step`, paced by `peepers_common.audit.BudgetedSampler` at the
configured share of the ML budget): pick a kept seller at random, sample up to 20 of its
cached items (HRANDFIELD), read them from ML in one multiget, and compare. Items ML
changed within the last ``grace_s`` (30 s) are left alone: their notification is most
likely on its way, and the audit would only race the webhook that brings it (drift is a
change no notification brought). An item whose content differs is counted per field
(``peepers_catalog_drift_total{field=...}``) and applied through `apply_item`, the same
compare-and-set path as a webhook, so the repair announces the change it makes
(``item.price_changed``, ...) exactly as a notification would have. An item ML no longer
has is marked gone (``field="gone"``). A difference under the same ``last_updated``
cannot win the compare-and-set (the cache never goes back in time); it is logged and
counted, and the item's next change repairs it.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Final

from peepers_catalog.domain import snapshot
from peepers_catalog.handlers import Catalog, Outcome, apply_item
from peepers_catalog.ports import SellerRoster
from peepers_common.audit import drift_metrics, drifted_fields

log = logging.getLogger(__name__)

METRICS: Final = drift_metrics("catalog")
# The version stamp differs whenever anything does; it is no drift of its own.
_NOT_DRIFT: Final = frozenset({"last_updated"})


class CatalogAudit:
    def __init__(
        self,
        catalog: Catalog,
        roster: SellerRoster,
        *,
        batch: int = 20,
        grace_s: float = 30.0,
        roster_every_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._catalog = catalog
        self._roster = roster
        self._batch = batch
        self._grace_s = grace_s
        self._roster_every_s = roster_every_s
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not secrets
        self._sellers: list[int] = []
        self._sellers_at = float("-inf")

    async def step(self) -> int:
        """Audit one sample; returns the ML calls made (0 or 1)."""
        sellers = await self._kept_sellers()
        if not sellers:
            return 0
        seller_id = self._rng.choice(sellers)
        store = self._catalog.store
        ids = await store.sample_item_ids(seller_id, self._batch)
        if not ids:
            return 0
        result = await self._catalog.ml.multiget_items(ids, seller_id=seller_id)
        cached = await store.get_many(ids)
        settled = self._catalog.clock() - self._grace_s
        for item in result.items:
            old = cached.get(item.id)
            if old is None or item.last_updated < old.last_updated:
                continue  # left the cache, or a webhook wrote a newer version meanwhile
            if item.last_updated.timestamp() > settled:
                continue  # changed just now: its notification is probably on its way
            METRICS.audited.inc()
            fields = drifted_fields(old, snapshot(item), ignore=_NOT_DRIFT)
            if not fields:
                continue
            for name in fields:
                METRICS.drift.labels(name).inc()
            outcome = await apply_item(item, self._catalog)
            level = logging.ERROR if outcome is Outcome.STALE else logging.WARNING
            log.log(level, "drift: item %s differed from ML in %s: %s", item.id, fields, outcome)
        if result.missing:
            gone = await store.mark_gone(seller_id, result.missing)
            METRICS.drift.labels("gone").inc(gone)
        return 1

    async def _kept_sellers(self) -> list[int]:
        # The roster is read from Kafka: once a minute, not every step; while it is empty
        # (a worker started before its first seller connected), at every step.
        now = time.monotonic()
        if not self._sellers or now - self._sellers_at >= self._roster_every_s:
            self._sellers = await self._roster.sellers()
            self._sellers_at = now
        return self._sellers
