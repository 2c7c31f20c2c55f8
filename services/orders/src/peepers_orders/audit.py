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
import time
from collections.abc import Awaitable, Callable
from typing import Final

from peepers_common.audit import drift_metrics, drifted_fields
from peepers_orders import lifecycle
from peepers_orders.handlers import Orders, apply_order

log = logging.getLogger(__name__)

METRICS: Final = drift_metrics("orders")


class OrdersAudit:
    def __init__(
        self,
        orders: Orders,
        roster: Callable[[], Awaitable[list[int]]],
        *,
        batch: int = 5,
        grace_s: float = 30.0,
        roster_every_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._orders = orders
        self._roster = roster
        self._batch = batch
        self._grace_s = grace_s
        self._roster_every_s = roster_every_s
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not secrets
        self._sellers: list[int] = []
        self._sellers_at = float("-inf")

    async def step(self) -> int:
        """Audit one sample; returns the ML calls made."""
        sellers = await self._connected()
        if not sellers:
            return 0
        seller_id = self._rng.choice(sellers)
        store = self._orders.store
        calls = 0
        for order_id in await store.sample_order_ids(seller_id, self._batch):
            before = (await store.load(order_id)).order
            if before is None:
                continue  # left the cache meanwhile
            order = await self._orders.ml.get_order(order_id, seller_id=seller_id)
            calls += 1
            changed = order.last_updated
            if changed is not None and changed.timestamp() > self._orders.clock() - self._grace_s:
                continue  # changed just now: its notification is probably on its way
            if order.shipment_id is not None and lifecycle.needs_shipment(order):
                calls += 1  # apply_order reads the shipment too
            outcome = await apply_order(order, "audit", self._orders)
            METRICS.audited.inc()
            after = (await store.load(order_id)).order
            fields = drifted_fields(before.summary, after.summary) if after else []
            for name in fields:
                METRICS.drift.labels(name).inc()
            if fields:
                log.warning("drift: order %d differed from ML in %s: %s", order_id, fields, outcome)
        return calls

    async def _connected(self) -> list[int]:
        # Read from Kafka once a minute, not every step; while empty, at every step.
        now = time.monotonic()
        if not self._sellers or now - self._sellers_at >= self._roster_every_s:
            self._sellers = await self._roster()
            self._sellers_at = now
        return self._sellers
