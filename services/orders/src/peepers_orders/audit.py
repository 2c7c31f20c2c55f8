"""The orders' drift audit: random cached orders compared with ML, drift repaired.

Webhooks can be missed (ML gave up retrying, a change ML never notified), and a cached
order then stays behind ML with nothing to tell (the proof saw one cached ``confirmed``
while ML said ``payment_required``). One step (`OrdersAudit.step`, paced by
`peepers_common.audit.BudgetedSampler` at ``ORDERS_AUDIT__SHARE`` of the ML budget, on
one replica at a time): pick a connected seller at random (the roster: who
``peepers.sellers.v1`` leaves connected, read once a minute), sample up to ``batch`` of
its cached orders, read each from ML and apply it through `handlers.apply_order`, the
same path as a webhook (so a repair announces the transitions it records, and nothing
goes backwards). Orders ML changed within ``grace_s`` are left alone: their notification
is most likely on its way. Each summary field that differed is counted
(``peepers_orders_drift_total{field=...}``).
"""

from __future__ import annotations

import logging
import random
from typing import Final

from peepers_common.audit import Roster, drift_metrics, drifted_fields
from peepers_common.ml.ratelimit import bulk_lane
from peepers_orders import lifecycle
from peepers_orders.handlers import Orders, apply_order

log = logging.getLogger(__name__)

METRICS: Final = drift_metrics("orders")


class OrdersAudit:
    def __init__(
        self,
        orders: Orders,
        roster: Roster,
        *,
        batch: int = 5,
        grace_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._orders = orders
        self._roster = roster
        self._batch = batch
        self._grace_s = grace_s
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not secrets

    async def step(self) -> int:
        """Audit one sample; returns the ML calls made."""
        sellers = await self._roster.sellers()
        if not sellers:
            return 0
        seller_id = self._rng.choice(sellers)
        store = self._orders.store
        calls = 0
        with bulk_lane():  # behind webhook-driven fetches, at the limiter too
            for order_id in await store.sample_order_ids(seller_id, self._batch):
                calls += await self._audit(order_id, seller_id)
        return calls

    async def _audit(self, order_id: int, seller_id: int) -> int:
        """One order: compared, repaired and counted; returns the ML calls made."""
        store = self._orders.store
        before = (await store.load(order_id)).order
        if before is None:
            return 0  # left the cache meanwhile
        order = await self._orders.ml.get_order(order_id, seller_id=seller_id)
        changed = order.last_updated
        if changed is not None and changed.timestamp() > self._orders.clock() - self._grace_s:
            return 1  # changed just now: its notification is probably on its way
        outcome = await apply_order(order, "audit", self._orders)
        METRICS.audited.inc()
        after = (await store.load(order_id)).order
        fields = drifted_fields(before.summary, after.summary) if after else []
        for name in fields:
            METRICS.drift.labels(name).inc()
        if fields:
            log.warning("drift: order %d differed from ML in %s: %s", order_id, fields, outcome)
        # apply_order read the shipment too when the order needs it.
        return 2 if order.shipment_id is not None and lifecycle.needs_shipment(order) else 1
